"""The analysis scripts: paired stage gains with bootstrap intervals, and the validation-split chain tuner."""
import json

import numpy as np
import pytest
import torch

from model.classifier import ClassifierConfig, Classifiers
from model.config import ModelConfig, TextConfig, TrainConfig
from model.data import load_polymnist
from model.evaluate import eval_indices, save_dump
from model.networks import MultimodalEBMVAE
from scripts import agreement_probe, stage_gains, tune_caption_weight, tune_chains

M = 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mnist_file):
    tmp = tmp_path_factory.mktemp("scripts")
    torch.manual_seed(0)
    MultimodalEBMVAE(ModelConfig(width=8, ebm_width=8, latent_dim=4)).save_pretrained(tmp / "ckpt")
    TrainConfig(variant="full").to_json(tmp / "ckpt" / "train_config.json")
    Classifiers(ClassifierConfig(M)).save_pretrained(tmp / "clf")
    common = ["--mnist", str(mnist_file), "--cache-dir", str(tmp / "cache")]
    return tmp, common


def test_bootstrap_interval():
    lo, hi = stage_gains.bootstrap(np.full(50, 0.25), 200, 0)
    assert lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    d = np.random.default_rng(1).normal(0.1, 1.0, 400)
    lo, hi = stage_gains.bootstrap(d, 500, 0)
    assert lo < d.mean() < hi and 0.1 < hi - lo < 0.3   # about 2 * 1.96 / sqrt(400) = 0.196 wide


def test_stage_gains_pairs_the_stages_sample_by_sample(setup, tmp_path):
    """Stage 'proposal' = the real tuples, stage 'data' = the tuples of other digits: the table's numbers are
    the judge's hit rates on each, and the change is their paired difference."""
    tmp, common = setup
    test = load_polymnist("test", M, 0, common[1], tmp / "cache")
    idx = eval_indices(len(test), 20, 0)
    x, y = test.batch(torch.as_tensor(idx))
    shifted = x.roll(1, dims=0)             # another tuple's images: mostly another digit
    conds = {(m,): {"proposal": x[:, [k for k in range(M) if k != m]],
                    "data": shifted[:, [k for k in range(M) if k != m]]} for m in range(M)}
    save_dump(tmp_path / "d.npz", conds, idx, {}, {"name": "d", "n_modalities": M, "data_seed": 0})
    out = tmp_path / "gains.md"
    stage_gains.main([str(tmp_path / "d.npz"), *common, "--classifier", str(tmp / "clf"), "--names", "A",
                      "--boot", "100", "--out", str(out)])
    clf = Classifiers.from_pretrained(str(tmp / "clf"))
    hit = lambda imgs: (clf.predict(imgs)[0] == y[:, None]).float().mean().item()
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| A |")]
    assert [r[2].strip() for r in rows] == ["d: proposal", "d: data"]
    assert float(rows[0][3]) == pytest.approx(100 * hit(x), abs=0.05)
    assert float(rows[1][3]) == pytest.approx(100 * hit(shifted), abs=0.05)
    assert float(rows[1][4]) == pytest.approx(100 * (hit(shifted) - hit(x)), abs=0.005)
    lo, hi = (float(v) for v in rows[1][5].strip(" []").split(","))
    assert lo <= float(rows[1][4]) <= hi

    # --versus: another dump's proposal against this one's last stage, on the same tuples
    stage_gains.main([str(tmp_path / "d.npz"), *common, "--classifier", str(tmp / "clf"), "--names", "A",
                      "--versus", str(tmp_path / "d.npz"), "--boot", "100", "--out", str(out)])
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| A |")]
    assert [r[2].strip() for r in rows] == ["d: proposal", "d: data"]

    # --stage: this dump's proposal against the other's proposal (the same images: no change), and a missing stage
    stage_gains.main([str(tmp_path / "d.npz"), *common, "--classifier", str(tmp / "clf"), "--names", "A",
                      "--versus", str(tmp_path / "d.npz"), "--stage", "proposal", "--boot", "100", "--out", str(out)])
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| A |")]
    assert [r[2].strip() for r in rows] == ["d: proposal", "d: proposal"]
    assert float(rows[1][4]) == 0.0
    with pytest.raises(SystemExit, match="^error: .*has no stage 'ebm_latent'"):
        stage_gains.main([str(tmp_path / "d.npz"), *common, "--classifier", str(tmp / "clf"), "--names", "A",
                          "--versus", str(tmp_path / "d.npz"), "--stage", "ebm_latent"])


def test_stage_gains_errors_are_one_line(setup, tmp_path):
    tmp, common = setup
    with pytest.raises(SystemExit, match="^error: sample dump not found"):
        stage_gains.main([str(tmp_path / "missing.npz"), *common])


def test_tune_chains_scores_every_setting_on_training_tuples(setup, tmp_path):
    tmp, common = setup
    out = tmp_path / "tune.json"
    tune_chains.main(["--checkpoint", str(tmp / "ckpt"), *common, "--classifier", str(tmp / "clf"), "--n", "4",
                      "--n-diverse", "2", "--repeats", "2", "--latent", "2:0.03:0.03,0:0.1:0.1",
                      "--ebm-latent", "2:0.03:0.01", "--data-steps", "1", "--threads", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["latent"] for r in rows] == [[2, 0.03, 0.03], [0, 0.1, 0.1]]
    assert list(rows[0]["coherence"]) == ["proposal", "latent", "ebm_latent", "data", "final"]
    assert "latent" not in rows[1]["coherence"]          # a stage with 0 steps is skipped
    assert all(0 <= c <= 1 for r in rows for c in r["coherence"].values()) and rows[0]["diversity"] >= 0
    with pytest.raises(SystemExit):
        tune_chains.main(["--checkpoint", str(tmp / "ckpt"), "--latent", "2:0.03"])
    with pytest.raises(SystemExit, match="^error: no model checkpoint"):
        tune_chains.main(["--checkpoint", str(tmp_path / "nope"), *common])


def test_stage_gains_joint_mode(setup, tmp_path):
    """--joint: the prior samples' stages, a sample counting when all its modalities read as one digit."""
    tmp, common = setup
    test = load_polymnist("test", M, 0, common[1], tmp / "cache")
    x, _ = test.batch(torch.arange(30))
    save_dump(tmp_path / "j.npz", {}, np.zeros(0, np.int64), {"proposal": x.roll(1, dims=1), "data": x},
              {"name": "j", "n_modalities": M, "data_seed": 0})
    out = tmp_path / "joint.md"
    stage_gains.main([str(tmp_path / "j.npz"), *common, "--classifier", str(tmp / "clf"), "--names", "A",
                      "--joint", "--boot", "100", "--out", str(out)])
    clf = Classifiers.from_pretrained(str(tmp / "clf"))
    agree = lambda imgs: (lambda d: (d == d[:, :1]).all(1).float().mean().item())(clf.predict(imgs)[0])
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| A |")]
    assert out.read_text().startswith("Joint coherence of 30 prior samples")
    assert float(rows[1][4]) == pytest.approx(100 * (agree(x) - agree(x.roll(1, dims=1))), abs=0.005)


def test_results_table_rows_from_both_judges(tmp_path):
    """scripts.results_table: one row per model and stage, judge A and B side by side, stage names as everywhere."""
    from scripts import results_table

    def metrics(joint):
        stage = {"joint_coherence": joint, "coherent_digit_entropy": 0.9, "fd_mean": 12.0}
        cond = {"by_size": {"1": 0.5}, "mean": 0.5, "by_subset": {}}
        return {"stages": ["proposal", "data"], "settings": {"n_joint": 2000, "n_cond": 200},
                "conditional": {"proposal": cond, "data": cond}, "prior": {"proposal": stage, "data": stage}}

    for judge, joint in (("A", 0.25), ("B", 0.75)):
        (tmp_path / "eval" / f"m_{judge}").mkdir(parents=True)
        (tmp_path / "eval" / f"m_{judge}" / "metrics.json").write_text(json.dumps(metrics(joint)))
    results_table.main(["m", "missing", "--eval-dir", str(tmp_path / "eval"), "--dump-dir", str(tmp_path),
                        "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "results.md").read_text()
    row = next(line for line in md.splitlines() if "EBM data revision" in line)
    assert row.startswith("| m | N(0, I) |") and "| 25.0 | 75.0 |" in row
    assert (tmp_path / "out" / "plane.png").stat().st_size > 0


def test_peer_state_round_trips_without_unpickling(tmp_path):
    """The peer script's resume state loads with weights_only=True and restores every RNG exactly; a pickle
    that would run code is refused with one line and never runs."""
    import os

    from scripts.peer_mmvae_plus import load_train_state, train_state

    np.random.seed(3)
    np.random.normal()                      # a cached gaussian is part of numpy's state
    g = torch.Generator().manual_seed(5)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])
    torch.save(train_state(7, 1.5, 1.25, opt.state_dict(), g, [60.0, 80.0]), tmp_path / "state.pt")
    expect = (np.random.normal(), np.random.rand(), torch.rand(2), torch.rand(2, generator=g))
    np.random.seed(0), torch.manual_seed(0), g.manual_seed(0)
    state = load_train_state(tmp_path / "state.pt", g)
    assert (state["iteration"], state["minutes"], state["dumps_due"]) == (7, 1.5, [60.0, 80.0])
    got = (np.random.normal(), np.random.rand(), torch.rand(2), torch.rand(2, generator=g))
    assert got[:2] == expect[:2] and torch.equal(got[2], expect[2]) and torch.equal(got[3], expect[3])

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(SystemExit, match="not a state this script wrote"):
        load_train_state(tmp_path / "evil.pt", g)
    assert not (tmp_path / "ran").exists()


def test_tune_caption_weight_scores_every_weight_on_training_tuples(setup, tmp_path):
    tmp, common = setup
    MultimodalEBMVAE(ModelConfig(width=8, ebm_width=8, latent_dim=4, text=TextConfig(embed_dim=4, hidden=16))
                     ).save_pretrained(tmp_path / "captioned")
    out = tmp_path / "weights.json"
    judges = ["--classifier", str(tmp / "clf"), "--classifier-b", str(tmp / "clf")]
    tune_caption_weight.main(["--checkpoint", str(tmp_path / "captioned"), *common, *judges, "--n", "6",
                              "--batch", "4", "--weights", "1,0", "--threads", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["weight"] for r in rows] == [1.0, 0.0]
    for r in rows:
        for wording in ("training", "new"):
            for c in r[wording].values():
                assert 0 <= c["proposal"] <= 1 and 0 <= c["latent"] <= 1
                assert c["low"] - 1e-9 <= c["change"] <= c["high"] + 1e-9
                assert c["change"] == pytest.approx(c["latent"] - c["proposal"])
    with pytest.raises(SystemExit, match="^error: .*no caption modality"):
        tune_caption_weight.main(["--checkpoint", str(tmp / "ckpt"), *common, *judges])


def test_the_new_wordings_name_the_digit_and_are_no_template():
    from model.caption_eval import caption_digit
    from model.captions import TEMPLATES, Tokenizer

    labels, classes = np.arange(10).repeat(3), np.tile([[0, 1, 2], [2, 0, 1], [1, 2, 0]], (10, 1))
    texts = tune_caption_weight.new_wordings(labels, classes, 0)
    assert [caption_digit(t) for t in texts] == list(labels)
    assert [Tokenizer().decode(ids) for ids in Tokenizer().encode_batch(texts)] == texts
    assert texts == tune_caption_weight.new_wordings(labels, classes, 0)
    assert not set(tune_caption_weight.NEW_WORDINGS) & set(TEMPLATES.values())


def test_agreement_probe_reports_every_reader_and_saves_a_pairwise_model(setup, tmp_path):
    tmp, common = setup
    agreement_probe.main(["--checkpoint", str(tmp / "ckpt"), *common, "--n-train", "40", "--n-test", "12",
                          "--iters", "2", "--whole-iters", "2", "--save", str(tmp_path / "pre"),
                          "--out", str(tmp_path / "probe.json")])
    r = json.loads((tmp_path / "probe.json").read_text())
    assert len(r["digit_accuracy"]) == M and all(0 <= a <= 1 for a in r["digit_accuracy"])
    for name in ("head_concat", "head_pairwise", "shipped", "whole_ebm_concat", "whole_ebm_pairwise"):
        assert 0 <= r[f"auroc_{name}"] <= 1 and 0 <= r[f"paired_{name}"] <= 1
    saved = MultimodalEBMVAE.from_pretrained(str(tmp_path / "pre"))      # a start for --init-from
    source = MultimodalEBMVAE.from_pretrained(str(tmp / "ckpt"))
    assert saved.config.ebm_head == "pairwise" and saved.energy.agreement is not None
    assert all(torch.equal(p, q) for p, q in zip(saved.generator.parameters(), source.generator.parameters()))
