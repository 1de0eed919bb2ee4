"""The cost table (benchmarks/cost_table.py) on a tiny random-weights checkpoint and the fake MNIST split."""
import json

import pytest
import torch

from benchmarks import cost_table
from model import Sampler
from model.classifier import ClassifierConfig, Classifiers
from model.config import ModelConfig, TrainConfig
from model.data import load_dataset
from model.networks import MultimodalEBMVAE, observed_mask

M = 3


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as the command runs (and restored after): on a busy machine more threads only wait."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mnist_file):
    tmp = tmp_path_factory.mktemp("cost")
    torch.manual_seed(0)
    config = ModelConfig.from_dict(dict(n_modalities=M, width=8, ebm_width=8, ebm_features=16, latent_dim=4,
                                        latent_steps=3, data_steps=3))
    MultimodalEBMVAE(config).save_pretrained(tmp / "ckpt")
    TrainConfig(variant="full").to_json(tmp / "ckpt" / "train_config.json")
    for judge in ("clf", "clf_b"):
        Classifiers(ClassifierConfig(M)).save_pretrained(tmp / judge)
    common = ["--mnist", str(mnist_file), "--cache-dir", str(tmp / "cache"), "--classifier", str(tmp / "clf"),
              "--classifier-b", str(tmp / "clf_b")]
    return tmp, common


@pytest.mark.parametrize("chains", [dict(latent_steps=0, data_steps=0, ebm_latent_steps=0, ebm_latent_cond_steps=0),
                                    dict(latent_steps=3, data_steps=4, ebm_latent_steps=2, ebm_latent_cond_steps=0),
                                    dict(latent_steps=2, data_steps=0, ebm_latent_steps=5, ebm_latent_cond_steps=3)])
def test_counted_evaluations_match_the_chain_lengths(setup, chains):
    """The hooks count what conditional_sampling does by construction: a chain of k steps evaluates its energy
    k + 1 times, k of them with a backward pass."""
    tmp, _ = setup
    sampler = Sampler.from_pretrained(tmp / "ckpt", device="cpu", **chains)
    x = torch.rand(4, M, 3, 28, 28)
    for conditioned, run in ((True, lambda: sampler.conditional(x, observed_mask([1], M))),
                             (False, lambda: sampler.joint(4, prior="normal"))):
        with cost_table.count_evaluations(sampler.model) as counts:
            run()
        assert {k: v / 4 for k, v in counts.items()} == cost_table.expected_evaluations(sampler.chains, conditioned)
    expected = cost_table.expected_evaluations(sampler.chains, conditioned=False)
    assert expected["energy_backward"] == chains["ebm_latent_steps"] + chains["data_steps"]
    assert expected["generator_backward"] == chains["ebm_latent_steps"]


def test_cells_rows_and_counts(setup):
    tmp, common = setup
    sampler = Sampler.from_pretrained(tmp / "ckpt", device="cpu")
    judges = {name: Classifiers.from_pretrained(str(tmp / clf)).eval() for name, clf in (("A", "clf"), ("B", "clf_b"))}
    test = load_dataset("test", M, 0, common[1], common[3])
    seen = []
    r = cost_table.cost_table(sampler, judges, test, [0, 2], [0, 1], n_cond=4, n_joint=6, batch=3, progress=False,
                              on_cell=lambda cells: seen.append(len(cells)))
    assert seen == [1, 2, 3, 4]
    assert [(c["data_steps"], c["ebm_latent_steps"]) for c in r["cells"]] == [(0, 0), (0, 1), (2, 0), (2, 1)]
    for c in r["cells"]:
        for kind in ("conditional", "joint"):
            cell = c[kind]
            assert cell["evaluations_per_sample"] == cell["expected_evaluations"]
            assert cell["seconds_per_sample"] > 0
        cond = c["conditional"]["coherence_cond1"]
        assert set(cond) == {"A", "B"} and cond["A"]["n"] == 4 * M * (M - 1)
        assert c["conditional"]["samples"] == 4 * M     # each single observed modality, each tuple once
        joint = c["joint"]
        assert all(j["low"] <= j["value"] <= j["high"] and j["n"] == 6 for j in joint["joint_coherence"].values())
        assert joint["fd"] > 0 and set(joint["coherent_digit_entropy"]) == {"A", "B"}
    # the conditional chain has no EBM latent steps: one run per data step count, shared by its row's cells
    assert r["cells"][0]["conditional"] is r["cells"][1]["conditional"]
    assert r["cells"][0]["conditional"] is not r["cells"][2]["conditional"]
    vae = r["vae"]
    assert not vae["separately_trained"] and vae["conditional"]["evaluations_per_sample"]["energy_backward"] == 0
    assert vae["conditional"]["evaluations_per_sample"]["generator_backward"] == 0   # no latent revision either
    assert vae["joint"]["joint_coherence"]["A"] == r["cells"][0]["joint"]["joint_coherence"]["A"]


def test_command_writes_one_row_per_cell(setup, tmp_path):
    tmp, common = setup
    out = tmp_path / "table"
    cost_table.main(["--checkpoint", str(tmp / "ckpt"), *common, "--prior", "normal", "--data-grid", "0,1,2",
                     "--ebm-latent-grid", "0", "--n-cond", "2", "--n-joint", "4", "--batch", "4", "--quiet",
                     "--device", "cpu", "--out", str(out)])
    r = json.loads((out / "cost_table.json").read_text())
    assert len(r["cells"]) == 3 and r["settings"]["n_cond"] == 2 and r["machine"]["threads"] == 1
    rows = [line.split("|")[1:-1] for line in (out / "cost_table.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| data steps")]
    assert len(rows) == 1 + 3 and "proposal" in rows[0][0]
    assert [(int(r[0]), int(r[1])) for r in rows[1:]] == [(0, 0), (1, 0), (2, 0)]
    assert "load average" in (out / "cost_table.md").read_text()


def test_bad_input_is_one_line(setup, tmp_path):
    tmp, common = setup
    with pytest.raises(SystemExit, match="^error: no model checkpoint"):
        cost_table.main(["--checkpoint", str(tmp_path / "nope"), *common, "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="^error: --n-cond"):
        cost_table.main(["--checkpoint", str(tmp / "ckpt"), *common, "--n-cond", "-1", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as e:   # argparse: usage and one line on stderr, exit 2
        cost_table.main(["--data-grid", "1,x"])
    assert e.value.code == 2
