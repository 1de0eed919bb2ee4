"""The commands' flags come from the config dataclasses: every field has help text and a default in --help,
training-time and test-time chains are separate groups, bad values end in one line, devices resolve."""
import dataclasses
import subprocess
import sys

import pytest
import torch

from model.cli import field_docs
from model.config import Chain, Chains, ModelConfig, TrainConfig
from model.device import DeviceError, resolve_device
from model.train import build_parser, parse_args


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig, Chain, Chains])
def test_every_config_field_has_help(cls):
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, {}).get("help")]
    assert not missing, f"fields without a '# help' comment in model/config.py: {missing}"


def test_help_lists_every_flag_with_help_and_default():
    text = build_parser().format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name != "model":
            assert "--" + f.name.replace("_", "-") in text, f.name
    assert "--out " in text or "--out," in text
    for f in dataclasses.fields(ModelConfig):
        if f.name not in ("chains", "text"):   # the caption modality (a nested optional part): config.json only
            assert "--model." + f.name.replace("_", "-") in text, f.name
    for name in Chains().flat():   # the chains keep their flat flags: --model.latent-steps, ...
        assert "--model." + name.replace("_", "-") in text, name
    help_of = {a.dest: a.help for a in build_parser()._actions}
    assert "warm-up" in help_of["warmup_iters"] and "(default: 3000)" in help_of["warmup_iters"]
    assert help_of["model.data_steps"].endswith("(default: 30)") and "data revision" in help_of["model.data_steps"]
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


COMMANDS = ["model.train", "model.evaluate", "model.sample", "model.prior", "model.classifier", "model.publish",
            "model.energy_check"]


def command_parser(module, monkeypatch, argv=()):
    """The ArgumentParser a command builds (its parse_args stopped before parsing)."""
    import argparse
    import importlib

    mod = importlib.import_module(module)
    parsers = []

    def capture(self, *a, **kw):
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        mod.main(list(argv))
    monkeypatch.undo()
    return parsers[0]


@pytest.mark.parametrize("module,argv", [(m, ()) for m in COMMANDS] + [("model.evaluate", ("compare",))])
def test_help_shows_every_default(module, argv, monkeypatch):
    """Every flag of every command says what it does and its default (or that it is required)."""
    p = command_parser(module, monkeypatch, argv)
    fmt = p.formatter_class(p.prog)
    missing = [a.option_strings for a in p._actions if a.option_strings and a.dest != "help" and not a.required
               and "(default:" not in fmt._get_help_string(a)]
    assert not missing, f"{module}: flags whose --help shows no default: {missing}"
    assert not [a.option_strings for a in p._actions if a.option_strings and not a.help]


def test_the_same_flags_across_commands(monkeypatch):
    """--out in every command that writes, --device defaulting to auto, the same data flags where data are read."""
    parsers = {m: command_parser(m, monkeypatch) for m in COMMANDS}
    flags = {m: {o: a for a in p._actions for o in a.option_strings} for m, p in parsers.items()}
    for m in COMMANDS:
        assert "--out" in flags[m], m
        if "--device" in flags[m]:
            dev = flags[m]["--device"]
            assert dev.default == "auto" or "(default: auto)" in dev.help, m
    for m in ("model.train", "model.evaluate", "model.sample", "model.prior", "model.classifier",
              "model.energy_check"):
        assert {"--mnist", "--dataset", "--data-dir", "--cache-dir"} <= set(flags[m]), m
    assert flags["model.train"]["--out-dir"] is flags["model.train"]["--out"]   # one flag, two names
    assert flags["model.classifier"]["--out"].default.startswith("runs/")   # never the shipped judges by default


def test_out_dir_is_an_alias_and_old_train_configs_read(tmp_path):
    cfg, _ = parse_args(["--out-dir", str(tmp_path / "a")])
    assert cfg.out_dir == str(tmp_path / "a") and parse_args(["--out", "b"])[0].out_dir == "b"
    old = tmp_path / "train_config.json"
    old.write_text('{"out_dir": "runs/old", "model": {"latent_steps": 7, "width": 8}, "data_steps": 5}')
    cfg = TrainConfig.from_json(old)
    assert cfg.out_dir == "runs/old" and cfg.data_steps == 5
    assert cfg.model.chains.latent.steps == 7 and cfg.model.width == 8


def test_model_chain_flags_set_the_nested_chains():
    cfg, _ = parse_args(["--model.latent-steps", "7", "--model.ebm-latent-cond-noise", "0.5", "--data-steps", "4"])
    assert cfg.model.chains.latent.steps == 7 and cfg.model.chains.ebm_latent_cond.noise == 0.5
    assert cfg.data_steps == 4 and cfg.model.chains.data.steps == 30      # training's chain apart from test time's


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


def test_the_published_training_command_parses_back(tmp_path):
    """model.publish's recipe of a run whose test-time chains differ from the defaults: flat --model.* flags."""
    import shlex

    from model.publish import train_command

    cfg, _ = parse_args(["--model.latent-steps", "3", "--model.ebm-latent-cond-steps", "0", "--model.width", "8",
                         "--out", str(tmp_path / "r"), "--teach-weight", "0.2"])
    command = train_command(cfg)
    assert "--model.latent-steps 3" in command and "--model.chains" not in command
    assert parse_args(shlex.split(command)[3:])[0] == cfg
