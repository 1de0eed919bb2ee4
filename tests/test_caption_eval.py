"""model.caption_eval: reading digits and attributes off captions, agreement and chance, and the whole evaluation
on a tiny captioned model with fake judges whose answers make every number known in advance."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from model import Sampler
from model.caption_eval import (CaptionEvalConfig, Tally, agreement, caption_attributes, caption_digit,
                                caption_evaluate, digit_position, main, measured_attributes)
from model.captions import TEMPLATES, build_captions
from model.config import TextConfig
from model.data import load_dataset
from model.evaluate import eval_indices
from model.networks import MultimodalEBMVAE


@pytest.mark.parametrize("text, digit, classes", [
    ("a thin seven leaning right", 7, [0, 2, -1]),
    ("8, large, thin, upright", 8, [0, 1, 2]),
    ("the number 3, small and bold", 3, [2, -1, 0]),
    ("a medium-sized regular 0", 0, [1, -1, 1]),
    ("three", 3, [-1, -1, -1]),
    ("a 3 and a five leaning left and right", -1, [-1, -1, -1]),
    ("a bold upright", -1, [2, 1, -1]),
])
def test_digits_and_attributes_read_off_captions(text, digit, classes):
    assert caption_digit(text) == digit
    assert caption_attributes(text).tolist() == classes


@pytest.mark.parametrize("text, position", [
    ("three", 0), ("an 8", 1), ("bold and leaning right, a three", 6), ("the small number 3", 3),
    ("8, large, thin, upright", 0), ("a bold upright", -1),
])
def test_the_digit_word_is_found_at_its_token_position(text, position):
    assert digit_position(text) == position


def test_digit_counts_tell_a_collapse_from_a_spread():
    tally = Tally()
    tally.add_digits("s", "spread", torch.arange(10).repeat(3))
    tally.add_digits("s", "collapse", torch.full((2, 5), 4))
    tally.add_digits("s", "collapse", torch.tensor([4]))
    d = tally.digit_counts("s")
    assert d["spread"] == {"counts": [3] * 10, "entropy": pytest.approx(1.0)}
    assert d["collapse"]["counts"] == [0, 0, 0, 0, 11, 0, 0, 0, 0, 0] and d["collapse"]["entropy"] == 0
    tally.add_digits("s", "two", torch.tensor([1, 2]))
    assert tally.digit_counts("s")["two"]["entropy"] == pytest.approx(np.log(2) / np.log(10))


def test_agreement_leaves_unnamed_attributes_out_and_states_chance():
    r = agreement(np.array([0, 1, 2, -1]), np.array([0, 1, 0, 2]))
    assert r["n"] == 3 and r["agreement"] == pytest.approx(2 / 3)
    assert r["chance"] == pytest.approx(1 / 3 * 2 / 3 + 1 / 3 * 1 / 3 + 0)
    assert agreement(np.array([-1, -1]), np.array([0, 1]))["agreement"] is None


def test_stage_changes_are_paired_tuple_by_tuple():
    tally = Tally()
    tally.add("proposal", "A", np.array([[1, 1], [0, 0], [1, 0], [0, 1]]))   # per tuple: 1, 0, 0.5, 0.5
    tally.add("latent", "A", np.array([[1, 1], [1, 1], [1, 0], [0, 1]]))     # the second tuple gains 1
    tally.add("data", "A", np.array([[1, 1], [0, 0], [1, 1], [1, 1]]))       # the same rate, other tuples' hits
    c = tally.changes("A", 500, 0)
    assert list(c) == ["latent", "data"]
    assert c["latent"]["change"] == pytest.approx(0.25) and 0 <= c["latent"]["low"] <= 0.25 <= c["latent"]["high"] <= 1
    assert c["data"]["change"] == pytest.approx(0.0) and c["data"]["low"] < 0 < c["data"]["high"]
    assert tally.rates("latent")["A"] == pytest.approx(0.75)


def test_attributes_measured_on_drawn_digits():
    x = torch.zeros(3, 3, 28, 28)
    x[0, :, 4:24, 13:14] = 1            # a thin upright bar
    x[1, :, 4:24, 11:17] = 1            # a bold upright bar
    for r in range(4, 24):              # a bar whose top leans right
        c = 14 + (14 - r) // 2
        x[2, :, r, c - 1:c + 2] = 1
    classes = measured_attributes(x, [1, 1, 1])
    assert classes[0, 0] == 0 and classes[1, 0] == 2
    assert classes[0, 1] == 1 and classes[2, 1] == 2


def templates_of(wording):
    from model.captions import HELD_IN, HELD_OUT

    return HELD_IN if wording == "held_in" else HELD_OUT


class FakeJudge:
    """Reads every image as the same digit."""

    def __init__(self, digit):
        self.digit = digit

    def predict(self, x):
        return torch.full(x.shape[:2], self.digit), torch.ones(x.shape[:2])


def test_every_number_of_a_tiny_run_is_the_known_answer(tmp_path, mnist_file, tiny_config):
    MultimodalEBMVAE(replace(tiny_config, text=TextConfig(embed_dim=4, hidden=16))).save_pretrained(tmp_path / "m")
    sampler = Sampler.from_pretrained(tmp_path / "m", device="cpu", latent_steps=1, ebm_latent_cond_steps=1,
                                      ebm_latent_steps=1, data_steps=1)
    sampler.decode = lambda t: ["a bold 3 leaning left"] * len(t)   # every generated caption
    test = load_dataset("test", 3, 0, str(mnist_file), tmp_path / "cache", captions=True)
    cfg = CaptionEvalConfig(checkpoint=str(tmp_path / "m"), out=str(tmp_path / "eval"), n=20, n_joint=10, batch=8,
                            quiet=True)
    r = caption_evaluate(cfg, sampler=sampler, judges={"A": FakeJudge(3), "B": FakeJudge(7)}, test=test)
    idx = eval_indices(len(test), 20, 0)
    y, classes = test.y.numpy()[idx], test.captions.classes[idx]
    assert r["settings"]["caption_latent_weight"] == 1.0 and r["settings"]["chains"]["latent_steps"] == 1
    stages = ["proposal", "latent", "ebm_latent", "data"]
    for wording in ("held_in", "held_out"):
        assert list(r["caption_to_image"][wording]) == stages
        for v in r["caption_to_image"][wording].values():
            assert v["coherence"] == {"A": pytest.approx((y == 3).mean()), "B": pytest.approx((y == 7).mean())}
    for wording, (texts, templates) in {"held_in": (test.captions.text, test.captions.template),
                                        "held_out": build_captions(test.y.numpy(), test.captions.classes, split="test",
                                                                   held_out=True)}.items():
        texts, templates = texts[idx], templates[idx]
        for v in r["caption_to_image"][wording].values():
            assert sum(t["n"] for t in v["templates"].values()) == 20
            for name, t in v["templates"].items():
                rows = templates == list(TEMPLATES).index(name)
                assert t["n"] == rows.sum() and t["A"] == pytest.approx((y[rows] == 3).mean())
                assert t["B"] == pytest.approx((y[rows] == 7).mean())
                assert t["digit_positions"] == sorted({digit_position(c) for c in texts[rows]})
            assert v["digits"]["A"] == {"counts": [0, 0, 0, 20 * 3] + [0] * 6, "entropy": 0.0}   # 3 images each
            assert v["digits"]["B_coherent"]["counts"][7] == 3 * (y == 7).sum()
        assert set(r["caption_to_image"][wording]["data"]["templates"]) <= set(templates_of(wording))
    texts = test.captions.text[idx]
    named = np.array([caption_attributes(t) for t in texts])
    assert r["caption_to_image"]["held_in"]["data"]["attributes"]["slant"]["n"] == (named[:, 1] >= 0).sum()
    for v in r["image_to_caption"].values():
        assert v["coherence"] == pytest.approx((y == 3).mean()) and v["no_digit"] == 0
        assert v["attributes"]["thickness"]["agreement"] == pytest.approx((classes[:, 0] == 2).mean())
        assert v["attributes"]["slant"]["agreement"] == pytest.approx((classes[:, 1] == 0).mean())
        assert v["attributes"]["size"]["n"] == 0
    assert list(r["joint"]) == ["proposal", "ebm_latent", "data"]
    for v in r["joint"].values():
        assert {k: v[k] for k in ("images", "with_caption")} == {"images": {"A": 1.0, "B": 1.0},
                                                                  "with_caption": {"A": 1.0, "B": 0.0}}
        assert v["digits"]["images_A"] == {"counts": [0, 0, 0, 10] + [0] * 6, "entropy": 0.0}   # a collapse: 0
        assert v["digits"]["with_caption_B"]["counts"] == [0] * 10
    for direction in (r["caption_to_image"]["held_in"], r["caption_to_image"]["held_out"], r["image_to_caption"]):
        assert "change" not in direction["proposal"]                     # the judges read every stage alike
        for stage in stages[1:]:
            changes = direction[stage]["change"].values() if "A" in direction[stage]["change"] else \
                [direction[stage]["change"]]
            assert all(c == {"change": 0.0, "low": 0.0, "high": 0.0} for c in changes)
    table = (tmp_path / "eval" / "caption_metrics.md").read_text()
    assert "held-out" in table and "EBM data revision" in table
    assert "| caption → image, held-out | EBM data revision | B | +0.00 | [+0.00, +0.00] |" in table
    assert "by template, held-out wordings" in table and "| `list` | 0 |" in table


def test_bad_checkpoints_are_one_line(tmp_path, tiny_config, capsys):
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "missing"), "--quiet"])
    assert capsys.readouterr().err.strip().count("\n") == 0
    MultimodalEBMVAE(tiny_config).save_pretrained(tmp_path / "plain")
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "plain"), "--quiet", "--device", "cpu"])
    assert "no caption modality" in capsys.readouterr().err
