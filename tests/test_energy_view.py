"""The page's energy check (demo/energy.py): the small file beside the weights, its sentence from the numbers, the
histogram with a run's energies marked, and the shipped file."""
import json

import numpy as np
import pytest

from demo import energy
from demo.energy import (ENERGY_FILE, GROUPS, OPTIONAL, EnergyCheck, EnergyFileError, histogram, load_energy_check,
                         sentence, slim)
from model.paths import find_checkpoint


def report(means, n=20, seed=0):
    rng = np.random.default_rng(seed)
    names = list(GROUPS) + ["joint (ex-post prior): final"] + [g for g in OPTIONAL if OPTIONAL[g] in means]
    names = [g for g in names if means.get(GROUPS.get(g, OPTIONAL.get(g))) is not None]
    return {"checkpoint": "ckpt", "settings": {"n": n, "seed": 0, "prior_used": "ex-post", "data_step_size": 1.0,
                                               "data_noise": 0.01, "noise_steps": "30,100", "checkpoint": "ckpt"},
            "energies": {g: (means.get(GROUPS.get(g, OPTIONAL.get(g)), 0.0) + 0.1 * rng.normal(size=n)).tolist()
                         for g in names}}


AS_SHIPPED = {"real test tuples": -2.8, "revised samples": -2.5, "proposals": 27.0,
              "chains from noise, 30 steps": -8.0, "chains from noise, 100 steps": -12.0, "uniform noise": 400.0}


def check_of(means, tmp_path):
    (tmp_path / ENERGY_FILE).write_text(json.dumps(slim(report(means), "python -m model.energy_check ...")))
    return load_energy_check(tmp_path)


def test_slim_keeps_the_page_groups_and_reads_back(tmp_path):
    r = report(AS_SHIPPED)
    small = slim(r, "cmd")
    assert set(small["energies"]) == set(GROUPS.values()) and small["n"] == 20 and small["source"] == "cmd"
    check = check_of(AS_SHIPPED, tmp_path)
    assert check.n == 20 and check.mean("proposals") == pytest.approx(np.mean(r["energies"][f"{energy.COND}: "
                                                                                            "proposal"]), abs=1e-3)
    del r["energies"]["data chain from noise, 100 steps"]
    with pytest.raises(EnergyFileError, match="100 steps"):
        slim(r, "cmd")


def test_a_bad_or_missing_file_is_no_check(tmp_path):
    assert load_energy_check(tmp_path) is None and load_energy_check(None) is None
    (tmp_path / ENERGY_FILE).write_text("{not json")
    assert load_energy_check(tmp_path) is None
    (tmp_path / ENERGY_FILE).write_text(json.dumps({"n": 3, "energies": {"real test tuples": [1, 2]}}))
    assert load_energy_check(tmp_path) is None
    (tmp_path / ENERGY_FILE).write_bytes(b" " * (energy.MAX_BYTES + 1))
    assert load_energy_check(tmp_path) is None
    assert "No energy check" in sentence(None)


def test_the_sentence_says_what_holds_from_the_numbers(tmp_path):
    words = sentence(check_of(AS_SHIPPED, tmp_path))
    assert words.startswith("**Holds:** real test tuples (mean -2.") and "< proposals" in words
    assert "**Does not hold:** data chains from uniform noise fall below real tuples within 30 steps" in words
    assert "20 test tuples" in words
    fixed = dict(AS_SHIPPED, **{"chains from noise, 30 steps": 10.0, "chains from noise, 100 steps": 5.0,
                                "revised samples": 30.0})
    words = sentence(check_of(fixed, tmp_path))
    assert words.startswith("**Does not hold:**") and "≥ proposals" in words
    assert "**Holds:** data chains from uniform noise stay above real tuples for 100 steps" in words
    # the shipped check has 300 steps too: a chain that stays above for 100 steps and falls below at 300
    ranked = {"real test tuples": 0.4, "revised samples": 1.9, "proposals": 28.0, "chains from noise, 30 steps": 9.2,
              "chains from noise, 100 steps": 4.3, "chains from noise, 300 steps": -9.8, "uniform noise": 21.0}
    check = check_of(ranked, tmp_path)
    assert list(check.energies)[5] == "chains from noise, 300 steps"    # drawn after 100 steps, before the noise
    words = sentence(check)
    assert words.startswith("**Holds:** real test tuples (mean 0.4) < revised samples (1.9) < proposals (28.0).")
    assert "**Holds for 100 steps, not for 300:**" in words
    assert "below every real tuple" in words.split("300 steps their mean is")[1]
    assert "lower is not more data-like" in words
    words = sentence(check_of(dict(ranked, **{"chains from noise, 300 steps": 2.0}), tmp_path))
    assert "**Holds:** data chains from uniform noise stay above real tuples for 300 steps" in words
    assert "not more data-like" not in words
    # one chain ranked below a real tuple is counted, though the mean stays above
    near = dict(ranked, **{"chains from noise, 100 steps": 0.6})
    assert "lower than a real tuple in" in sentence(check_of(near, tmp_path))


def test_the_sentence_says_whether_the_energy_reads_agreement(tmp_path):
    r = report(AS_SHIPPED)
    assert "Agreement" not in sentence(check_of(AS_SHIPPED, tmp_path))   # an older check without the group: no clause
    spread = np.linspace(-1, 1, 20)   # each mismatched tuple against its own real one: 50 %, 75 %, 100 % above
    for shift, said in ((0.0, "does not read"), (0.5, "barely reads"), (3.0, "reads whether")):
        r["energies"][energy.MISMATCHED] = (np.array(r["energies"]["real"]) + spread + shift).tolist()
        (tmp_path / ENERGY_FILE).write_text(json.dumps(slim(r, "cmd")))
        check = load_energy_check(tmp_path)
        assert len(check.mismatched) == 20 and "one modality from another digit" not in check.energies   # not drawn
        words = sentence(check)
        assert f"so the energy {said}" in words, words
    assert "the real tuple is the lower of the two in 100% of the tuples" in words
    r["energies"][energy.MISMATCHED] = r["energies"][energy.MISMATCHED][:-1]   # not one per real tuple: no clause
    (tmp_path / ENERGY_FILE).write_text(json.dumps(slim(r, "cmd")))
    assert "Agreement" not in sentence(load_energy_check(tmp_path))


def test_the_histogram_marks_a_runs_energies(tmp_path):
    check = check_of(AS_SHIPPED, tmp_path)
    plain = histogram(check)
    marked = histogram(check, marks=np.array([-3.0, -2.0]))
    assert plain.shape == (360, 1200, 3) and plain.dtype == np.uint8
    dark = lambda img: int((img.sum(-1) < 60).sum())   # noqa: E731  black ticks add dark pixels
    assert dark(marked) > dark(plain) + 200
    wide = histogram(check, marks=np.array([50.0]))   # a mark off the groups' range widens the axis
    assert not np.array_equal(wide, marked)


def test_the_shipped_check_is_read_and_small():
    folder = find_checkpoint("checkpoints/mebm")
    assert (folder / ENERGY_FILE).stat().st_size < 64 * 1024
    check = load_energy_check(folder)
    assert isinstance(check, EnergyCheck) and check.n >= 100 and "model.energy_check" in check.source
    assert all(len(e) == check.n for e in check.energies.values())
