"""The energy check: the AUROC against analytic cases, the command end to end on a tiny model."""
import json
import math

import numpy as np
import pytest
import torch

from model.data import load_dataset
from model.energy_check import auroc, main, summarize
from model.evaluate import eval_indices
from model.networks import MultimodalEBMVAE


def test_auroc_analytic_cases():
    assert auroc([1, 2, 3], [4, 5]) == 1.0            # every real value lower
    assert auroc([4, 5], [1, 2, 3]) == 0.0            # every other value lower
    assert auroc([1, 2], [1, 2]) == 0.5               # the same values: ties count half
    assert auroc([1, 3], [2]) == 0.5                  # one pair each way
    assert auroc([0], [0, 1, 2, 3]) == (0.5 + 3) / 4
    rng = np.random.default_rng(0)                    # two unit Gaussians d apart: Phi(d / sqrt 2)
    d = 1.0
    expected = 0.5 * (1 + math.erf(d / 2))
    assert abs(auroc(rng.normal(0, 1, 4000), rng.normal(d, 1, 4000)) - expected) < 0.015
    with pytest.raises(ValueError):
        auroc([], [1.0])


def test_summarize_reads_each_group_against_the_real_tuples():
    s = summarize({"real": np.array([0.0, 2.0]), "noise": np.array([5.0, 7.0]), "lower": np.array([-3.0, -1.0])})
    assert s["real"]["auroc"] is None and s["real"]["mean"] == 1.0 and s["real"]["n"] == 2
    assert s["noise"]["auroc"] == 1.0 and s["lower"]["auroc"] == 0.0
    assert s["noise"]["sd"] == pytest.approx(np.sqrt(2.0))


@pytest.fixture
def ckpt(tmp_path, tiny_config):
    MultimodalEBMVAE(tiny_config).save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _run(ckpt, mnist_file, out, *extra):
    main(["--checkpoint", str(ckpt), "--mnist", str(mnist_file), "--cache-dir", str(out.parent / "cache"),
          "--out", str(out), "--n", "6", "--batch", "4", "--noise-steps", "2,1", "--threads", "1", "--quiet",
          *extra])
    return json.loads((out / "energy.json").read_text())


def test_cli_on_a_tiny_model(ckpt, tmp_path, mnist_file, capsys):
    r = _run(ckpt, mnist_file, tmp_path / "out")
    groups = r["groups"]
    assert r["settings"]["prior_used"] == "normal"    # no ex-post prior beside the weights: N(0, I), said so
    names = list(groups)
    assert names[0] == "real" and "uniform noise" in names and "mismatched: one modality from another digit" in names
    assert [n for n in names if n.startswith("data chain")] == ["data chain from noise, 1 steps",
                                                               "data chain from noise, 2 steps"]
    assert {"joint (N(0, I)): proposal", "joint (N(0, I)): EBM latent revision", "joint (N(0, I)): final",
            "conditional (1 observed): proposal", "conditional (1 observed): final"} <= set(names)
    assert all(g["n"] == 6 for g in groups.values())
    assert all(0.0 <= g["auroc"] <= 1.0 for n, g in groups.items() if n != "real")
    mis = groups["mismatched: one modality from another digit"]       # each against its own real tuple
    real = np.array(r["energies"]["real"])
    other = np.array(r["energies"]["mismatched: one modality from another digit"])
    assert mis["paired"] == pytest.approx(((real < other) + 0.5 * (real == other)).mean())
    assert all("paired" not in g for n, g in groups.items() if not n.startswith("mismatched"))
    # the real group is the energy of the seeded test tuples
    model = MultimodalEBMVAE.from_pretrained(str(ckpt))
    test = load_dataset("test", 3, 0, str(mnist_file), str(tmp_path / "cache"))
    x, _ = test.batch(torch.as_tensor(eval_indices(len(test), 6, 0)))
    with torch.no_grad():
        assert np.allclose(r["energies"]["real"], model.energy(x).numpy(), atol=1e-4)
    table = (tmp_path / "out" / "energy.md").read_text()
    assert "| uniform noise | 6 |" in table and "AUROC" in table
    assert "wrote" in capsys.readouterr().out
    again = _run(ckpt, mnist_file, tmp_path / "again")     # the same seed, the same energies
    assert again["energies"] == r["energies"]


def test_mismatched_tuples_replace_one_modality_by_another_digits():
    from model.data import PolyMNIST
    from model.energy_check import mismatched

    n, M = 40, 3
    y = torch.arange(n) % 4
    xs = (torch.arange(n).view(n, 1, 1, 1, 1) * 5 + torch.arange(M).view(1, M, 1, 1, 1)).expand(n, M, 3, 28, 28)
    test = PolyMNIST(xs.to(torch.uint8).contiguous(), y)
    x, _ = test.batch(torch.arange(10))
    out = mismatched(test, x, y[:10], torch.Generator().manual_seed(0))
    for r in range(10):
        changed = [m for m in range(M) if not torch.equal(out[r, m], x[r, m])]
        assert len(changed) == 1
        m = changed[0]
        donor = int(round(out[r, m, 0, 0, 0].item() * 255 - m)) // 5   # the donor tuple's index, from its value
        assert torch.equal(out[r, m], test.x[donor, m].float() / 255) and y[donor] != y[r]
    assert torch.equal(out, mismatched(test, x, y[:10], torch.Generator().manual_seed(0)))   # seeded


def test_bad_input_is_one_line(ckpt, tmp_path, mnist_file, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(ckpt), "--n", "1"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(ckpt), "--noise-steps", "ten"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "none"), "--mnist", str(mnist_file), "--out", str(tmp_path / "o")])
    assert str(e.value.code).startswith("error: no model checkpoint") and "\n" not in str(e.value.code)


def test_paired_share_compares_each_tuple_with_its_own():
    from model.energy_check import paired_share

    real = np.array([0.0, 1.0, 2.0, 3.0])
    assert paired_share(real, real + 1) == 1.0 and paired_share(real, real - 1) == 0.0
    assert paired_share(real, [1.0, 0.0, 2.0, 4.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)   # a tie counts half
    # every tuple lower than its own, though many pairs across tuples are not: the AUROC blurs what the pairs show
    assert paired_share(real, real + 0.5) == 1.0 and auroc(real, real + 0.5) == pytest.approx(10 / 16)
