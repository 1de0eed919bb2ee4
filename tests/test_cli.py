"""The commands' flags come from the config dataclasses: every field has help text and a default in --help,
training-time and test-time chains are separate groups, bad values end in one line, devices resolve."""
import dataclasses
import subprocess
import sys

import pytest
import torch

from model.cli import field_docs
from model.config import ModelConfig, TrainConfig
from model.device import DeviceError, resolve_device
from model.train import build_parser, parse_args


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig])
def test_every_config_field_has_help(cls):
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, {}).get("help")]
    assert not missing, f"fields without a '# help' comment in model/config.py: {missing}"


def test_help_lists_every_flag_with_help_and_default():
    text = build_parser().format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model":
            assert "--" + f.name.replace("_", "-") in text, f.name
    for f in dataclasses.fields(ModelConfig):
        assert "--model." + f.name.replace("_", "-") in text, f.name
    help_of = {a.dest: a.help for a in build_parser()._actions}
    assert "warm-up" in help_of["warmup_iters"] and "(default: 3000)" in help_of["warmup_iters"]
    assert help_of["model.data_steps"].endswith("(default: 30)") and "test time" in help_of["model.data_steps"]
    assert "0 = revision losses alone" in help_of["elbo_weight"]   # a continued comment is kept whole


def test_training_and_test_time_chains_are_separate_groups():
    groups = {g.title: [a.dest for a in g._group_actions] for g in build_parser()._action_groups}
    train_chain = next(t for t in groups if t.startswith("training-time chains"))
    test_chain = next(t for t in groups if t.startswith("test-time chains"))
    assert set(groups[train_chain]) == {"data_steps", "data_step_size", "data_noise", "latent_steps",
                                        "latent_step_size", "latent_noise", "ebm_negatives", "ebm_latent_steps",
                                        "ebm_latent_step_size", "ebm_latent_noise"}
    assert set(groups[test_chain]) == {"model.latent_steps", "model.latent_step_size", "model.latent_noise",
                                       "model.data_steps", "model.data_step_size", "model.data_noise",
                                       "model.ebm_latent_steps", "model.ebm_latent_step_size",
                                       "model.ebm_latent_noise", "model.ebm_latent_cond_steps",
                                       "model.ebm_latent_cond_step_size", "model.ebm_latent_cond_noise"}


def test_bad_values_are_one_line_errors(capsys):
    for argv in (["--variant", "bogus"], ["--iters", "many"], ["--amp", "maybe"], ["--dataset", "cifar"]):
        with pytest.raises(SystemExit) as e:
            parse_args(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err and "usage" not in err, err


def test_variant_bogus_from_the_shell_has_no_traceback():
    r = subprocess.run([sys.executable, "-m", "model.train", "--variant", "bogus"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'bogus'" in r.stderr


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize("module", ["model.evaluate", "model.classifier", "model.publish"])
def test_other_commands_document_every_flag(module, monkeypatch):
    import argparse
    import importlib

    mod = importlib.import_module(module)
    parsers = []

    def capture(self, *a, **kw):  # stop at parsing: the parser is what is checked
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        (mod.parse_args if hasattr(mod, "parse_args") else mod.main)([])
    undocumented = [a.option_strings for a in parsers[0]._actions if a.option_strings and not a.help]
    assert not undocumented
    assert "(default:" in parsers[0].format_help()
