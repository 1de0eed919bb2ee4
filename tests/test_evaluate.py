"""The evaluate command end to end, on a tiny random-weights checkpoint and a tiny synthetic split."""
import json

import numpy as np
import pytest
import torch

from model.classifier import ClassifierConfig, Classifiers
from model.config import ModelConfig, TrainConfig
from model.data import load_polymnist
from model.evaluate import eval_indices, main, save_dump, subset_key, subsets
from model.networks import MultimodalEBMVAE

M = 5
FAST = ["--n-cond", "4", "--n-joint", "20", "--n-fid", "20", "--n-curve", "10", "--curve-steps", "0,2",
        "--latent-steps", "2", "--data-steps", "2", "--ebm-latent-steps", "2", "--ebm-latent-cond-steps", "2",
        "--batch", "8", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)

    def digits(n):  # bright random strokes on black, MNIST-shaped
        x = np.zeros((n, 28, 28), np.uint8)
        for i in range(n):
            r, c = rng.integers(4, 20, 2)
            x[i, r:r + 8, c:c + 3] = 255
            x[i, r:r + 3, c:c + 8] = 255
        return x

    np.savez(tmp / "mnist.npz", x_train=digits(20), y_train=np.arange(20) % 10,
             x_test=digits(40), y_test=np.arange(40) % 10)
    torch.manual_seed(0)
    MultimodalEBMVAE(ModelConfig(width=8, ebm_width=8, latent_dim=4)).save_pretrained(tmp / "ckpt")
    TrainConfig(variant="full").to_json(tmp / "ckpt" / "train_config.json")
    Classifiers(ClassifierConfig(M)).save_pretrained(tmp / "clf")
    common = ["--mnist", str(tmp / "mnist.npz"), "--cache-dir", str(tmp / "cache"), "--classifier", str(tmp / "clf")]
    return tmp, common


@pytest.fixture(scope="module")
def ckpt_run(setup):
    tmp, common = setup
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "out"), *common, *FAST])
    return json.loads((tmp / "out" / "metrics.json").read_text())


def test_evaluate_checkpoint_end_to_end(setup, ckpt_run):
    tmp, common = setup
    r = ckpt_run
    assert r["stages"] == ["proposal", "latent", "ebm_latent", "data"]
    assert r["settings"]["feature_space"].startswith("digit-classifier") and r["settings"]["n_cond"] == 4
    for stage in r["stages"]:
        c = r["conditional"][stage]
        assert len(c["by_subset"]) == 2 ** M - 2 and set(c["by_size"]) == {"1", "2", "3", "4"}
        assert all(0 <= v <= 1 for v in c["by_subset"].values())
    for stage in ("proposal", "ebm_latent", "data"):
        p = r["prior"][stage]
        assert 0 <= p["joint_coherence"] <= 1 and len(p["fd"]) == M and all(f >= 0 for f in p["fd"])
        assert 0 <= p["coherent_digit_entropy"] <= 1 and sum(p["coherent_digit_counts"]) == round(
            p["joint_coherence"] * 20)
    cv = r["curve"]
    assert cv["steps"] == [0, 2] and len(cv["noise"]["fd_mean"]) == 2
    # a random generator is nearer the real images than uniform noise is
    assert cv["generator"]["fd_mean"][0] != cv["noise"]["fd_mean"][0]
    assert r["summary"]["revised"]["stage"] == "data"
    for f in ("metrics.md", "curve.png", "samples.png"):
        assert (tmp / "out" / f).stat().st_size > 0
    assert "| proposal |" in (tmp / "out" / "metrics.md").read_text()

    # fixed seeds: the same command gives the same numbers
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "out2"), *common, *FAST, "--curve-steps", ""])
    r2 = json.loads((tmp / "out2" / "metrics.json").read_text())
    assert r2["conditional"] == r["conditional"] and r2["prior"] == r["prior"] and r2["curve"] is None


def test_noise_init_variant_starts_data_chains_from_noise(setup, ckpt_run):
    tmp, common = setup
    assert ckpt_run["settings"]["chains"]["data_init"] == "generator"
    main(["--checkpoint", str(tmp / "ckpt"), "--variant", "noise_init", "--out", str(tmp / "noise"), *common, *FAST,
          "--curve-steps", ""])
    r = json.loads((tmp / "noise" / "metrics.json").read_text())
    assert r["settings"]["chains"]["data_init"] == "noise"
    # same proposals (same seeds), different data-stage samples
    assert r["prior"]["proposal"] == ckpt_run["prior"]["proposal"]
    assert r["prior"]["data"]["fd"] != ckpt_run["prior"]["data"]["fd"]
    assert "| EBM chain from noise (observed clamped) |" in (tmp / "noise" / "metrics.md").read_text()


def test_vae_variant_has_no_data_stage(setup):
    tmp, common = setup
    main(["--checkpoint", str(tmp / "ckpt"), "--variant", "vae", "--out", str(tmp / "vae"), *common, *FAST])
    r = json.loads((tmp / "vae" / "metrics.json").read_text())
    assert r["stages"] == ["proposal", "latent"] and "data" not in r["prior"] and r["curve"] is None


def test_oracle_dump_scores_as_real_data_and_compare(setup, ckpt_run):
    """A dump holding the real test tuples: FD 0, coherence = the classifiers' own accuracy."""
    tmp, common = setup
    test = load_polymnist("test", M, 0, str(tmp / "mnist.npz"), tmp / "cache")
    n = len(test)
    cond_idx = eval_indices(n, 4, 0)
    x, y = test.batch(torch.as_tensor(cond_idx))
    conds = {s: {"proposal": x[:, [m for m in range(M) if m not in s]]} for s in subsets(M)}
    fid_idx = eval_indices(n, 20, 1)
    save_dump(tmp / "oracle.npz", conds, cond_idx, {"proposal": test.batch(torch.as_tensor(fid_idx))[0]},
              {"name": "oracle", "n_modalities": M, "data_seed": 0})
    main(["--samples", str(tmp / "oracle.npz"), "--out", str(tmp / "oracle"), *common, *FAST])
    r = json.loads((tmp / "oracle" / "metrics.json").read_text())
    assert r["name"] == "oracle" and r["stages"] == ["proposal"]
    assert r["prior"]["proposal"]["fd"] == pytest.approx([0.0] * M, abs=1e-6)
    assert r["prior"]["proposal"]["joint_coherence"] == pytest.approx(r["reference"]["joint_coherence_real"])
    clf = Classifiers.from_pretrained(str(tmp / "clf"))
    acc = (clf.predict(x)[0] == y[:, None]).float().mean(0)
    s = (0, 2)
    expected = acc[[m for m in range(M) if m not in s]].mean().item()
    assert r["conditional"]["proposal"]["by_subset"][subset_key(s)] == pytest.approx(expected)

    main(["compare", str(tmp / "out" / "metrics.json"), str(tmp / "oracle" / "metrics.json"),
          "--out", str(tmp / "cmp"), "--names", "a,b"])
    md = (tmp / "cmp" / "comparison.md").read_text()
    assert md.count("| a |") == 4 and md.count("| b |") == 1   # a: proposal, latent, ebm_latent, data
    assert (tmp / "cmp" / "headline.png").stat().st_size > 0
    main(["compare", str(tmp / "out" / "metrics.json"), str(tmp / "oracle" / "metrics.json"),
          "--out", str(tmp / "trend"), "--x", "10,30"])
    assert (tmp / "trend" / "trend.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="--x has 1 numbers for 2"):
        main(["compare", str(tmp / "out" / "metrics.json"), str(tmp / "oracle" / "metrics.json"),
              "--out", str(tmp / "trend"), "--x", "10"])


def test_clear_errors(setup, capsys):
    tmp, common = setup
    with pytest.raises(SystemExit, match="no model checkpoint"):
        main(["--checkpoint", str(tmp / "nowhere"), *common, *FAST])
    with pytest.raises(SystemExit, match="no classifier"):
        main(["--checkpoint", str(tmp / "ckpt"), *common, "--classifier", str(tmp / "noclf"), *FAST])
    with pytest.raises(SystemExit, match="MNIST file not found"):
        main(["--checkpoint", str(tmp / "ckpt"), "--classifier", str(tmp / "clf"), "--mnist", str(tmp / "no.npz"),
              "--cache-dir", str(tmp / "cache2"), *FAST])
    with pytest.raises(SystemExit, match="sample dump not found"):
        main(["--samples", str(tmp / "no.npz"), *common, *FAST])


def test_bad_inception_file_is_a_clear_error(setup):
    tmp, common = setup
    with pytest.raises(SystemExit, match="Inception weights file not found"):
        main(["--checkpoint", str(tmp / "ckpt"), *common, *FAST, "--inception", str(tmp / "none.pth")])
    torch.save({"conv.weight": torch.zeros(1)}, tmp / "bad.pth")
    with pytest.raises(SystemExit, match="not a torchvision inception_v3"):
        main(["--checkpoint", str(tmp / "ckpt"), *common, *FAST, "--inception", str(tmp / "bad.pth")])


def test_without_the_ebm_latent_stage_and_with_an_ex_post_prior(setup, ckpt_run):
    from model.prior import GaussianMixture

    tmp, common = setup
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "noebm"), *common, *FAST, "--ebm-latent-steps", "0",
          "--ebm-latent-cond-steps", "0",
          "--curve-steps", ""])
    r = json.loads((tmp / "noebm" / "metrics.json").read_text())
    assert r["stages"] == ["proposal", "latent", "data"] and r["settings"]["chains"]["ebm_latent_steps"] == 0
    assert r["conditional"]["latent"] == ckpt_run["conditional"]["latent"]    # same seeds up to that stage
    far = GaussianMixture(torch.tensor([1.0]), torch.full((1, 4), 3.0), torch.eye(4)[None] * 0.01)
    far.save(tmp / "prior.safetensors")
    main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "gmm"), *common, *FAST, "--curve-steps", "",
          "--prior", str(tmp / "prior.safetensors")])
    g = json.loads((tmp / "gmm" / "metrics.json").read_text())
    assert g["settings"]["chains"]["prior"].endswith("prior.safetensors")
    assert g["prior"]["proposal"]["fd"] != ckpt_run["prior"]["proposal"]["fd"]
    assert g["conditional"] == ckpt_run["conditional"]                        # conditionals keep N(0, I)
    with pytest.raises(SystemExit, match="ex-post prior file not found"):
        main(["--checkpoint", str(tmp / "ckpt"), "--out", str(tmp / "x"), *common, *FAST, "--prior", "nope.st"])


def test_a_dump_of_conditionals_only(setup, ckpt_run):
    """A dump without prior samples (model.sample --n-joint 0) scores its conditionals; nothing at all is one line."""
    tmp, common = setup
    test = load_polymnist("test", M, 0, str(tmp / "mnist.npz"), tmp / "cache")
    cond_idx = eval_indices(len(test), 4, 0)
    x, _ = test.batch(torch.as_tensor(cond_idx))
    conds = {(m,): {"proposal": x[:, [k for k in range(M) if k != m]]} for m in range(M)}
    save_dump(tmp / "condonly.npz", conds, cond_idx, {}, {"name": "condonly", "n_modalities": M, "data_seed": 0})
    main(["--samples", str(tmp / "condonly.npz"), "--out", str(tmp / "condonly"), *common, *FAST, "--n-joint", "0",
          "--n-fid", "0"])
    r = json.loads((tmp / "condonly" / "metrics.json").read_text())
    assert r["prior"] == {} and set(r["conditional"]["proposal"]["by_size"]) == {"1"}
    with pytest.raises(SystemExit, match="nothing to score"):
        main(["--samples", str(tmp / "condonly.npz"), "--out", str(tmp / "x"), *common, *FAST, "--n-cond", "0",
              "--n-joint", "0", "--n-fid", "0"])


def test_conditional_and_prior_samples_may_run_different_stages(setup):
    """A checkpoint whose conditional sampler skips the EBM latent chain (ebm_latent_cond_steps = 0) but whose
    prior samples run it: stages in the chain's order, each scored where it ran."""
    from dataclasses import replace

    tmp, common = setup
    trained = MultimodalEBMVAE.from_pretrained(str(tmp / "ckpt"))
    model = MultimodalEBMVAE(replace(trained.config, chains=trained.config.chains.replace(ebm_latent_cond_steps=0)))
    model.load_state_dict(trained.state_dict())
    model.save_pretrained(tmp / "ckpt_nocond")
    TrainConfig(variant="full").to_json(tmp / "ckpt_nocond" / "train_config.json")
    i = FAST.index("--ebm-latent-steps")
    fast = FAST[:i] + FAST[i + 4:]   # the checkpoint's own EBM latent steps
    main(["--checkpoint", str(tmp / "ckpt_nocond"), "--out", str(tmp / "nocond"), *common, *fast, "--curve-steps", ""])
    r = json.loads((tmp / "nocond" / "metrics.json").read_text())
    assert r["stages"] == ["proposal", "latent", "ebm_latent", "data"]
    assert set(r["conditional"]) == {"proposal", "latent", "data"}
    assert set(r["prior"]) == {"proposal", "ebm_latent", "data"}
    assert r["settings"]["chains"]["ebm_latent_cond_steps"] == 0 and r["settings"]["chains"]["ebm_latent_steps"] > 0
    assert r["summary"]["revised"]["stage"] == "data"


def test_the_bundled_judges_are_found_from_any_folder(setup, tmp_path, monkeypatch):
    """`mebm-evaluate --samples ...` without --classifier, run outside the repository: the bundled judge A."""
    tmp, common = setup
    test = load_polymnist("test", M, 0, str(tmp / "mnist.npz"), tmp / "cache")
    cond_idx = eval_indices(len(test), 4, 0)
    x, _ = test.batch(torch.as_tensor(cond_idx))
    save_dump(tmp_path / "real.npz", {(0,): {"proposal": x[:, 1:]}}, cond_idx, {}, {"name": "real", "n_modalities": M})
    assert [p.name for p in tmp_path.iterdir()] == ["real.npz"]   # written whole, by a rename: no temporary left
    monkeypatch.chdir(tmp_path)
    main(["--samples", "real.npz", "--out", "runs/ev", "--mnist", str(tmp / "mnist.npz"), "--cache-dir",
          str(tmp / "cache"), "--n-cond", "4", "--n-joint", "0", "--n-fid", "0", "--quiet"])
    r = json.loads((tmp_path / "runs" / "ev" / "metrics.json").read_text())
    assert r["settings"]["classifier"] == "checkpoints/classifier" and 0 <= r["conditional"]["proposal"]["mean"] <= 1


def test_old_metrics_files_are_read_by_the_report(ckpt_run, tmp_path):
    """metrics.json keeps one key per metric (joint_coherence); files of earlier versions (coherence_joint) read."""
    from model.report import compare

    assert "coherence_joint" not in json.dumps(ckpt_run) and "joint_coherence" in ckpt_run["summary"]["revised"]
    old = json.loads(json.dumps(ckpt_run))
    for s in old["summary"].values():
        s["coherence_joint"] = s.pop("joint_coherence")
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(ckpt_run))
    compare([tmp_path / "old.json", tmp_path / "new.json"], tmp_path / "cmp", names=["old", "new"])
    both = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert both["old"]["revised"]["joint_coherence"] == both["new"]["revised"]["joint_coherence"]


class _Digits:
    """A judge that reads the digit written into an image's first pixel ((digit + 0.5) / 10)."""

    def predict(self, x):
        digit = (x[:, :, 0, 0, 0] * 10).floor().long().clamp(0, 9)
        return digit, torch.ones(digit.shape)


class _Split:
    def __init__(self, y, M):
        self.y, self.x = y, torch.zeros(len(y), M, 3, 28, 28)

    def batch(self, idx):
        return self.x[idx], self.y[idx]


class _KnownSampler:
    """Generated modalities of tuple j: right at the proposal when j is even; at the final stage when j % 4 == 1
    (fixed) or j is even but not a multiple of 8 (j = 0 broken)."""
    subsets = {(0,), (1,), (2,)}

    def conditional(self, idx, x, observed, g):
        j = torch.as_tensor(idx)
        y = j % 10
        wrong = (y + 1) % 10

        def images(right):
            digit = torch.where(right, y, wrong).float()
            out = x.clone()
            out[:, ~observed] = ((digit + 0.5) / 10).view(-1, 1, 1, 1, 1)
            return out
        return {"proposal": images(j % 2 == 0), "data": images((j % 4 == 1) | ((j % 2 == 0) & (j % 8 != 0)))}


def test_fix_and_break_rates_on_a_known_case():
    from model.evaluate import conditional_coherence

    n, M = 8, 3
    test = _Split(torch.arange(n) % 10, M)
    r = conditional_coherence(_KnownSampler(), _Digits(), test, np.arange(n), progress=False)
    p, d = r["proposal"], r["data"]
    # 3 subsets x 2 generated modalities x 4 tuples wrong (odd j) and 4 right (even j) at the proposal
    assert (p["n_wrong"], p["n_right"], p["fix_rate"], p["break_rate"]) == (24, 24, 0.0, 0.0)
    assert (d["n_wrong"], d["n_right"]) == (24, 24)
    assert d["fix_rate"] == pytest.approx(0.5)        # j = 1, 5 of 1, 3, 5, 7
    assert d["break_rate"] == pytest.approx(0.25)     # j = 0 of 0, 2, 4, 6
    assert p["mean"] == pytest.approx(0.5) and d["mean"] == pytest.approx(5 / 8)
    assert set(d["one_to_one"]) == {"0>1", "0>2", "1>0", "1>2", "2>0", "2>1"}
    assert all(v == pytest.approx(5 / 8) for v in d["one_to_one"].values())
    assert d["one_to_one_mean"] == pytest.approx(d["by_size"]["1"])


def test_report_shows_fix_break_and_one_to_one(setup, ckpt_run):
    from model.report import markdown

    md = markdown(ckpt_run)
    assert "| stage | fix rate % |" in md and "| EBM data revision |" in md.split("fix rate %")[1]
    assert "0 → 1" in md
    c = ckpt_run["conditional"]["data"]
    assert c["n_wrong"] + c["n_right"] == 4 * sum(M - len(s) for s in subsets(M))
