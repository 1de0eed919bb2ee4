"""python -m model.publish --dry-run: the Hub folder holds loadable weights, the config, and a model card with
that checkpoint's metrics table, the training and evaluation commands, the data recipe and the licence; the
ex-post prior when the checkpoint has one."""
import json
from pathlib import Path

import pytest
import torch

from model.classifier import ClassifierConfig, Classifiers
from model.config import TrainConfig
from model.evaluate import main as evaluate_main
from model.networks import MultimodalEBMVAE
from model.prior import PRIOR_FILE, GaussianMixture
from model.publish import main as publish_main
from model.publish import train_command
from model.train import train

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "mebm"


@pytest.mark.slow
def test_dry_run_folder_loads_and_card_has_the_metrics(tmp_path, mnist_file, tiny_config, capsys):
    cfg = TrainConfig(model=tiny_config, out_dir=str(tmp_path / "run"), mnist=str(mnist_file),
                      cache_dir=str(tmp_path / "cache"), iters=2, batch_size=4, warmup_iters=1, data_steps=1,
                      latent_steps=1, log_every=1, sample_every=100, ckpt_every=100, eval_every=0, classifier=None,
                      teach_weight=0.2)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoint"
    Classifiers(ClassifierConfig(tiny_config.n_modalities)).save_pretrained(tmp_path / "clf")
    evaluate_main(["--checkpoint", str(ckpt), "--mnist", str(mnist_file), "--cache-dir", str(tmp_path / "cache"),
                   "--classifier", str(tmp_path / "clf"), "--n-cond", "4", "--n-joint", "8", "--n-fid", "8",
                   "--curve-steps", "", "--latent-steps", "1", "--data-steps", "1", "--batch", "8", "--quiet"])
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())   # the default --out
    capsys.readouterr()

    publish_main(["--checkpoint", str(ckpt), "--repo-id", "someone/tiny-mebm", "--out", str(tmp_path / "hub"),
                  "--dry-run"])
    assert "dry run: nothing uploaded" in capsys.readouterr().out
    hub = tmp_path / "hub"
    assert {p.name for p in hub.iterdir()} >= {"model.safetensors", "config.json", "train_config.json",
                                               "metrics.json", "README.md"}
    loaded = MultimodalEBMVAE.from_pretrained(str(hub), strict=True)
    original = MultimodalEBMVAE.from_pretrained(str(ckpt), strict=True)
    assert loaded.config == tiny_config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), original.state_dict().values()))

    card = (hub / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n") and "## Licence" in card and "MIT" in card
    fd = metrics["prior"]["data"]["fd_mean"]
    joint = metrics["prior"]["proposal"]["joint_coherence"]
    cond = metrics["conditional"]["data"]["mean"]
    row = next(line for line in card.splitlines() if line.startswith("| EBM data revision"))
    assert f"{fd:.2f}" in row and f"{100 * cond:.1f}" in row
    assert f"{100 * joint:.1f}" in next(line for line in card.splitlines() if line.startswith("| proposal"))
    assert train_command(cfg) in card and "--teach-weight 0.2" in card and "--iters 2" in card
    assert "python -m model.evaluate --checkpoint" in card and "--n-cond 4" in card and "--n-joint 8" in card
    assert "PolyMNIST-style set" in card and "data seed 0" in card


def test_bad_input_is_one_line(tmp_path, capsys):
    for argv, code in ((["--checkpoint", str(tmp_path / "none"), "--repo-id", "a/b", "--dry-run"], 1),
                       (["--checkpoint", str(BUNDLED), "--repo-id", "nameonly", "--dry-run"], 2)):
        with pytest.raises(SystemExit) as e:
            publish_main(argv)
        assert e.value.code == code
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error:")


def test_the_bundled_checkpoint_publishes_its_own_card(tmp_path, capsys):
    """The shipped checkpoint's card (its README.md: metrics, recipe) is what goes up, whole; loading is quiet."""
    publish_main(["--checkpoint", str(BUNDLED), "--repo-id", "org/mebm", "--out", str(tmp_path / "h"), "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("wrote ") and out[1] == "dry run: nothing uploaded"
    card = (tmp_path / "h" / "README.md").read_text()
    assert card == (BUNDLED / "README.md").read_text() and "No evaluation was found" not in card
    assert card.startswith("---\nlicense: mit\n") and "coherence" in card.lower()
    MultimodalEBMVAE.from_pretrained(str(tmp_path / "h"), strict=True)
    assert (tmp_path / "h" / "prior.json").is_file()                         # the ex-post prior goes up with it
    assert GaussianMixture.load(tmp_path / "h" / PRIOR_FILE).n_components == 20
    assert (tmp_path / "h" / "energy_check.json").read_bytes() == (BUNDLED / "energy_check.json").read_bytes()


def test_a_run_without_a_card_gets_one_from_its_record(tmp_path, capsys):
    """A checkpoint with only huggingface_hub's placeholder README: the card is made from train_config.json, and a
    run started from another run's weights says so in words, not as a bare command."""
    ckpt = tmp_path / "ckpt"
    MultimodalEBMVAE.from_pretrained(str(BUNDLED), strict=True).save_pretrained(ckpt)
    assert "[More Information Needed]" in (ckpt / "README.md").read_text()
    cfg = TrainConfig.from_json(BUNDLED / "train_config.json")
    cfg.init_skip, cfg.max_cpu_minutes = "energy", 20.0     # a budgeted run: the card gives its budget
    cfg.to_json(ckpt / "train_config.json")
    publish_main(["--checkpoint", str(ckpt), "--repo-id", "org/mebm", "--out", str(tmp_path / "h"), "--dry-run"])
    card = (tmp_path / "h" / "README.md").read_text()
    assert "[More Information Needed]" not in card and train_command(cfg) in card and "--max-cpu-minutes" in card
    assert f"started from the weights of another run, `{cfg.init_from}`" in card and "not taken from it: energy" in card
    assert "No evaluation was found" in card                                   # nothing to show: it says so
