"""python -m model.sample: every stage, the dump that model.evaluate --samples scores, seeds, errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from model.config import ModelConfig, TrainConfig
from model.networks import MultimodalEBMVAE
from model.sample import diversity, main, mean_pairwise_distance

M = 5
FAST = ["--n-cond", "4", "--n-joint", "8", "--n-diverse", "2", "--repeats", "3", "--latent-steps", "2",
        "--ebm-latent-steps", "2", "--ebm-latent-cond-steps", "2", "--data-steps", "2", "--batch", "4", "--quiet",
        "--threads", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.conftest import fake_mnist

    tmp = tmp_path_factory.mktemp("sample")
    x_tr, y_tr, x_te, y_te = fake_mnist()
    np.savez(tmp / "mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    torch.manual_seed(0)
    MultimodalEBMVAE(ModelConfig(width=8, ebm_width=8, latent_dim=4)).save_pretrained(tmp / "ckpt")
    TrainConfig(variant="full").to_json(tmp / "ckpt" / "train_config.json")
    return tmp, ["--mnist", str(tmp / "mnist.npz"), "--cache-dir", str(tmp / "cache")]


def test_dump_holds_every_stage_and_is_scored_by_evaluate(setup):
    from model.classifier import ClassifierConfig, Classifiers
    from model.evaluate import main as evaluate

    tmp, common = setup
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "d.npz"), *common, *FAST,
          "--image", str(tmp / "four.png")])
    f = np.load(tmp / "d.npz")
    meta = json.loads(str(f["meta"]))
    assert meta["stages"] == ["proposal", "latent", "ebm_latent", "data"]
    for m in range(M):
        for stage in meta["stages"]:
            assert f[f"cond/{m}/{stage}"].shape == (4, M - 1, 3, 28, 28) and f[f"cond/{m}/{stage}"].dtype == np.uint8
            assert f[f"diverse/{m}/{stage}"].shape == (2, 3, M, 3, 28, 28)
    assert [k for k in f.keys() if k.startswith("joint/")] == ["joint/proposal", "joint/ebm_latent", "joint/data"]
    assert f["joint/data"].shape == (8, M, 3, 28, 28)
    assert set(meta["diversity"]) == set(meta["stages"]) and all(v >= 0 for v in meta["diversity"].values())
    assert meta["diversity"]["data"] > 0                                     # the chains are random
    assert (tmp / "four.png").stat().st_size > 0
    # the observed modality is shown as given in the diversity samples
    assert (f["diverse/0/data"][:, :, 0] == f["diverse/0/data"][:, :1, 0]).all()

    Classifiers(ClassifierConfig(M)).save_pretrained(tmp / "clf")
    evaluate(["--samples", str(tmp / "d.npz"), "--out", str(tmp / "ev"), *common, "--classifier", str(tmp / "clf"),
              "--n-cond", "4", "--n-joint", "8", "--n-fid", "8", "--quiet", "--threads", "1"])
    r = json.loads((tmp / "ev" / "metrics.json").read_text())
    assert r["stages"] == ["proposal", "latent", "ebm_latent", "data"]
    assert set(r["conditional"]["data"]["by_size"]) == {"1"} and len(r["conditional"]["data"]["by_subset"]) == M
    assert r["summary"]["revised"]["stage"] == "data"

    # seeded: the same command gives the same images; the sampler matches model.evaluate's own
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "d2.npz"), *common, *FAST])
    g = np.load(tmp / "d2.npz")
    assert all(np.array_equal(f[k], g[k]) for k in f.keys() if k != "meta")


def test_options_skip_stages_and_all_subsets(setup):
    tmp, common = setup
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "e.npz"), *common, *FAST, "--ebm-latent-steps", "0",
          "--ebm-latent-cond-steps", "0", "--subsets", "all", "--n-diverse", "0"])
    f = np.load(tmp / "e.npz")
    assert json.loads(str(f["meta"]))["stages"] == ["proposal", "latent", "data"]
    assert len({k.split("/")[1] for k in f.keys() if k.startswith("cond/")}) == 2 ** M - 2
    assert not [k for k in f.keys() if k.startswith("diverse/")]
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "v.npz"), *common, *FAST, "--variant", "vae"])
    assert json.loads(str(np.load(tmp / "v.npz")["meta"]))["stages"] == ["proposal", "latent"]


def test_diversity_figure():
    x = torch.zeros(3, 2, 1, 1, 4)                           # 3 samples, 2 modalities
    x[1, 1] = 1.0                                             # one sample differs by RMS 1 in modality 1
    assert mean_pairwise_distance(x[:, 1]) == pytest.approx(2 / 3)    # pairs (0,1), (1,2) differ, (0,2) not
    assert mean_pairwise_distance(x[:, 0]) == 0
    obs = torch.tensor([True, False])
    assert diversity(x[None], obs) == pytest.approx(2 / 3)


def test_help_documents_the_keys_and_errors_are_one_line(setup, capsys):
    tmp, common = setup
    out = subprocess.run([sys.executable, "-m", "model.sample", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "cond/<S>/<stage>" in out.stdout and "joint/<stage>" in out.stdout
    for argv, msg in [(["--checkpoint", str(tmp / "nowhere"), "--out", str(tmp / "x.npz")], "no model checkpoint"),
                      (["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "x.npz"), "--mnist", str(tmp / "no.npz"),
                        "--cache-dir", str(tmp / "c3")], "MNIST file not found"),
                      (["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "x.npz"), *common, "--prior", "nope"],
                       "ex-post prior file not found"),
                      (["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "x.npz"), "--device", "nodevice"],
                       "unknown device 'nodevice'")]:
        with pytest.raises(SystemExit, match=msg):
            main(argv)
    for argv in (["--checkpoint", "c", "--out", "x.txt"], ["--checkpoint", "c", "--out", "x.npz", "--n-cond", "-1"],
                 ["--checkpoint", "c", "--out", "x.npz", "--batch", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--out must end in .npz" in err
    r = subprocess.run([sys.executable, "-m", "model.sample", "--checkpoint", str(tmp / "nowhere"), "--out", "x.npz"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ")


def test_output_folders_are_made_and_a_failed_start_leaves_none(setup, tmp_path, monkeypatch):
    """From a fresh folder (no runs/): --out runs/x/y.npz works; a start that fails leaves no empty folder."""
    tmp, common = setup
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="MNIST file not found"):
        main(["--checkpoint", str(tmp / "ckpt"), "--out", "runs/bad/y.npz", "--mnist", str(tmp / "no.npz"),
              "--cache-dir", str(tmp / "c4"), *FAST])
    assert not (tmp_path / "runs").exists()
    main(["--checkpoint", str(tmp / "ckpt"), "--out", "runs/x/y.npz", *common, *FAST, "--n-diverse", "1",
          "--n-cond", "1", "--image", "runs/pics/one.png"])
    assert (tmp_path / "runs" / "x" / "y.npz").is_file() and (tmp_path / "runs" / "pics" / "one.png").is_file()


def test_prior_choices(setup, tmp_path):
    """--prior normal (N(0, I)), ex-post (the one beside the weights; an error where there is none) or a file."""
    from model.prior import PRIOR_FILE, GaussianMixture

    tmp, common = setup
    fast = [*common, *FAST, "--n-cond", "0", "--n-diverse", "0", "--ebm-latent-steps", "0", "--data-steps", "0"]
    with pytest.raises(SystemExit, match="no usable ex-post prior"):
        main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp_path / "e.npz"), *fast, "--prior", "ex-post"])
    far = GaussianMixture(torch.ones(1), torch.full((1, 4), 3.0), torch.eye(4)[None] * 0.01)
    far.save(tmp_path / PRIOR_FILE)
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp_path / "n.npz"), *fast])
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp_path / "f.npz"), *fast, "--prior",
          str(tmp_path / PRIOR_FILE)])
    normal, fitted = np.load(tmp_path / "n.npz")["joint/proposal"], np.load(tmp_path / "f.npz")["joint/proposal"]
    assert not np.array_equal(normal, fitted)
