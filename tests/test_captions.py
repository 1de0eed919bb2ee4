"""Captions: the measured attributes on digits whose answer is known, the seeded caption builder and its held-out
wordings, the tokenizer, and the captions in the data cache (built-in set and released layout alike)."""
import os
import re

import numpy as np
import pytest
import torch

from model import captions as C
from model.data import DataError, build_polymnist, load_dataset, load_polymnist, with_captions

from conftest import fake_mnist
from test_polymnist_release import write_release


def bar(width, length=20, shear=0.0):
    """A vertical bar of ``width`` x ``length`` ink pixels centred on the square; each row up moves it ``shear``
    columns right (a digit leaning right for shear > 0)."""
    mask = np.zeros((28, 28), bool)
    top = (28 - length) // 2
    for r in range(top, top + length):
        shift = int(round(shear * ((top + length - 1) / 2 - r)))
        left = 14 - width // 2 + shift
        mask[r, left:left + width] = True
    return mask


def box(side):
    mask = np.zeros((28, 28), bool)
    mask[2:2 + side, 3:3 + side] = True
    return mask


# ---------------------------------------------------------------- attributes

def test_thickness_is_the_stroke_width_of_a_drawn_line():
    thin, thick = C.measure(np.stack([bar(2), bar(5)]))[:, 0]
    assert thin == pytest.approx(2 * 40 / 44) and thick == pytest.approx(2 * 100 / 50)   # 2A / perimeter
    classes = C.attribute_classes(C.measure(np.stack([bar(1), bar(2), bar(6)])), np.array([1, 1, 1]))
    assert [C.ATTRIBUTE_WORDS["thickness"][c] for c in classes[:, 0]] == ["thin", "regular", "bold"]


@pytest.mark.parametrize("shear, word", [(0.6, "leaning right"), (0.0, "upright"), (-0.6, "leaning left")])
def test_slant_is_the_shear_of_a_sheared_bar(shear, word):
    slant = C.measure(bar(3, 20, shear))[1]
    assert slant == pytest.approx(shear, abs=0.05)
    assert C.ATTRIBUTE_WORDS["slant"][C.attribute_classes(C.measure(bar(3, 20, shear))[None], [1])[0, 1]] == word


def test_size_is_the_bounding_box_area_small_and_large_by_class():
    m = C.measure(np.stack([box(6), box(18), box(20)]))
    assert m[:, 2].tolist() == [36, 324, 400]
    words = C.ATTRIBUTE_WORDS["size"]
    # 324 pixels: medium-sized for a zero (tertiles 320, 360), large for a one (tertiles 120, 200)
    for label, expected in ((0, ["small", "medium-sized", "large"]), (1, ["small", "large", "large"])):
        assert [words[c] for c in C.attribute_classes(m, np.full(3, label))[:, 2]] == expected


def test_an_empty_digit_measures_zero_and_a_value_on_a_threshold_is_the_middle_word():
    assert C.measure(np.zeros((2, 28, 28), bool)).tolist() == [[0, 0, 0], [0, 0, 0]]
    on = np.array([[C.THICKNESS_THRESHOLDS[0], C.SLANT_THRESHOLDS[1], C.SIZE_THRESHOLDS[3][1]]])
    assert C.attribute_classes(on, [3]).tolist() == [[1, 1, 1]]


def test_thresholds_are_the_tertiles_of_a_training_split():
    rng = np.random.default_rng(1)
    y = np.arange(300) % 10
    x = np.stack([bar(int(w), int(n)) for w, n in zip(rng.integers(1, 8, 300), rng.integers(8, 25, 300))])
    x = (x * 255).astype(np.uint8)
    t = C.thresholds(x, y)
    m = C.measure(x > 128)
    assert t["thickness"] == pytest.approx(tuple(np.percentile(m[:, 0], [100 / 3, 200 / 3])))
    assert t["size"][4] == pytest.approx(tuple(np.percentile(m[y == 4, 2], [100 / 3, 200 / 3])))
    classes = C.attribute_classes(m, y, thickness=t["thickness"], size=t["size"])
    assert np.bincount(classes[:, 0], minlength=3).min() >= 60      # about a third each


@pytest.mark.skipif(not os.environ.get("MEBM_MNIST"), reason="set MEBM_MNIST to the MNIST .npz to check the constants")
def test_frozen_thresholds_are_the_tertiles_of_mnist():
    with np.load(os.environ["MEBM_MNIST"]) as f:
        t = C.thresholds(f["x_train"], f["y_train"])
    assert t["thickness"] == pytest.approx(C.THICKNESS_THRESHOLDS, abs=1e-3)
    assert np.allclose(t["size"], C.SIZE_THRESHOLDS)


def test_ink_mask_is_the_digit_on_plain_ink_and_the_smaller_colour_group_otherwise():
    x, y, _, _ = fake_mnist(40, 10)
    ds = build_polymnist(x, y, 3, seed=0)
    truth = x[ds.source[:, 0].numpy()] > 128
    assert np.array_equal(C.ink_mask(ds.x[:, 0].numpy()), truth)
    two_colours = np.empty((1, 3, 28, 28), np.uint8)
    two_colours[0] = np.array([200, 40, 90], np.uint8)[:, None, None]
    two_colours[0, :, bar(4)] = np.array([55, 215, 165], np.uint8)        # the inverted colour where the ink is
    assert np.array_equal(C.ink_mask(two_colours)[0], bar(4))


# ---------------------------------------------------------------- captions

def all_captions(names=C.TEMPLATES):
    return [C.caption(d, (t, s, z), n, numeral) for d in range(10) for t in range(3) for s in range(3)
            for z in range(3) for n in names for numeral in (False, True)]


def test_captions_name_the_digit_and_the_attribute_words_of_their_template():
    labels = np.arange(200) % 10
    classes = np.random.default_rng(0).integers(0, 3, (200, 3)).astype(np.int8)
    text, template = C.build_captions(labels, classes, seed=3)
    names = list(C.TEMPLATES)
    for caption, label, cls, t in zip(text, labels, classes, template):
        words = C.Tokenizer().split(caption)
        assert C.DIGIT_WORDS[label] in words or C.NUMERALS[label] in words
        for a, c in zip(C.ATTRIBUTES, cls):
            if "{" + a + "}" in C.TEMPLATES[names[t]]:
                assert C.ATTRIBUTE_WORDS[a][c] in caption
            else:
                assert not any(w in caption for w in C.ATTRIBUTE_WORDS[a])
    assert C.caption(8, (2, 1, 0), "thickness") == "a bold eight" and C.caption(8, (0, 0, 0), "article", True) == "an 8"
    assert C.caption(3, (0, 1, 0), "comma-thickness-slant", True) == "3, thin and upright"
    assert C.caption(3, (0, 0, 0), "digit-slant", True) == "the digit 3 leaning left"


def test_captions_are_seeded_and_held_out_wordings_never_train():
    labels = np.arange(500) % 10
    classes = np.zeros((500, 3), np.int8)
    a, ta = C.build_captions(labels, classes, seed=0)
    b, tb = C.build_captions(labels, classes, seed=0)
    c, _ = C.build_captions(labels, classes, seed=1)
    assert np.array_equal(a, b) and np.array_equal(ta, tb) and not np.array_equal(a, c)
    names = list(C.TEMPLATES)
    assert {names[t] for t in ta} == set(C.HELD_IN)                     # every held-in wording is used, no other
    _, th = C.build_captions(labels, classes, seed=0, split="test", held_out=True)
    assert {names[t] for t in th} == set(C.HELD_OUT)


def test_held_out_wordings_use_only_words_the_training_captions_use():
    train_words = {w for c in all_captions(C.HELD_IN) for w in C.Tokenizer().split(c)}
    held_out = all_captions(C.HELD_OUT)
    assert {w for c in held_out for w in C.Tokenizer().split(c)} <= train_words
    assert not set(held_out) & set(all_captions(C.HELD_IN))             # new wordings, not repeats


def test_every_vocabulary_word_is_documented():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "captions.md")).read()
    for word in C.VOCABULARY[1:]:
        assert f"`{word}`" in doc, word
    for name in C.TEMPLATES:
        assert f"`{name}`" in doc, name


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_round_trips_every_caption():
    tok = C.Tokenizer()
    captions = all_captions()
    assert max(len(tok.split(c)) for c in captions) <= tok.max_len
    for caption in captions:
        ids = tok.encode(caption)
        n = len(tok.split(caption))
        assert len(ids) == tok.max_len and ids[n:] == [tok.pad_id] * (tok.max_len - n) and tok.pad_id not in ids[:n]
        assert tok.decode(ids) == caption
    batch = tok.encode_batch(captions[:7])
    assert batch.shape == (7, tok.max_len) and [tok.decode(r) for r in batch] == captions[:7]


def test_tokenizer_normalises_case_commas_and_a_final_full_stop():
    tok = C.Tokenizer()
    assert tok.encode("A Bold 3.") == tok.encode("a bold 3")
    assert tok.split("three,thin and upright") == ["three", ",", "thin", "and", "upright"]


@pytest.mark.parametrize("text, unknown", [("a purple 3", ["purple"]), ("a fat seven, very fat", ["fat", "very"]),
                                           ("un trois épais", ["un", "trois", "épais"]), ("<pad> 3", ["<pad>"])])
def test_unknown_words_are_named(text, unknown):
    tok = C.Tokenizer()
    assert tok.unknown_words(text) == unknown
    with pytest.raises(C.CaptionError) as e:
        tok.encode(text)
    assert e.value.unknown == tuple(unknown) and "\n" not in str(e.value)
    assert all(repr(w) in str(e.value) for w in unknown)


@pytest.mark.parametrize("text, message", [("", "empty"), ("  .  ", "empty"),
                                           ("a bold 3 " * 10, "30 words; at most 16"),
                                           ("x" * 10 ** 6, "1000000 characters; at most 200")])
def test_empty_and_too_long_captions_are_one_line(text, message):
    with pytest.raises(C.CaptionError, match=message):
        C.Tokenizer().encode(text)


def test_vocabulary_has_each_word_once_and_every_caption_word():
    assert len(set(C.VOCABULARY)) == len(C.VOCABULARY) and C.VOCABULARY[0] == C.PAD
    assert {w for c in all_captions() for w in C.Tokenizer().split(c)} == set(C.VOCABULARY[1:])
    assert all(re.fullmatch(r"[a-z0-9,-]+", w) for w in C.VOCABULARY[1:])


# ---------------------------------------------------------------- in the data cache

def test_captions_are_cached_beside_the_images(tmp_path, mnist_file, monkeypatch):
    plain = load_polymnist("train", 3, 0, str(mnist_file), tmp_path)
    assert plain.captions is None
    ds = load_polymnist("train", 3, 0, str(mnist_file), tmp_path, captions=True)
    assert len(ds.captions) == len(ds) and ds.captions.classes.shape == (len(ds), 3)
    assert len(list(tmp_path.glob("polymnist_train_*.npz"))) == 1       # the images' cache is untouched
    assert len(list(tmp_path.glob("captions_polymnist_train_*.npz"))) == 1
    tok = C.Tokenizer()
    for caption, label in zip(ds.captions.text, ds.y.tolist()):
        assert tok.decode(tok.encode(caption)) == caption and (C.DIGIT_WORDS[label] in caption
                                                               or C.NUMERALS[label] in caption)
    ids = ds.caption_batch(torch.tensor([0, 5]))
    assert ids.dtype == torch.int64 and ids.shape == (2, C.MAX_LEN)
    assert [tok.decode(row) for row in ids] == list(ds.captions.text[[0, 5]])
    with pytest.raises(DataError, match="captions=True"):
        plain.caption_batch([0])

    def no_rebuild(*a, **k):
        raise AssertionError("captions rebuilt instead of read from the cache")

    monkeypatch.setattr("model.data.describe", no_rebuild)
    again = load_polymnist("train", 3, 0, str(mnist_file), tmp_path, captions=True)
    assert np.array_equal(again.captions.text, ds.captions.text)
    assert np.array_equal(again.captions.measures, ds.captions.measures)


def test_a_broken_caption_file_is_built_again(tmp_path, mnist_file):
    ds = load_polymnist("test", 3, 0, str(mnist_file), tmp_path, captions=True)
    (path,) = tmp_path.glob("captions_*.npz")
    path.write_bytes(b"not a zip")
    again = load_polymnist("test", 3, 0, str(mnist_file), tmp_path, captions=True)
    assert np.array_equal(again.captions.text, ds.captions.text)
    other_seed = load_polymnist("test", 3, 0, str(mnist_file), tmp_path, captions=True, caption_seed=1)
    assert len(list(tmp_path.glob("captions_*.npz"))) == 2 and not np.array_equal(other_seed.captions.text,
                                                                                  ds.captions.text)
    assert np.array_equal(other_seed.captions.classes, ds.captions.classes)   # same digits, other wordings


def test_the_released_layout_gets_the_same_captions_from_its_labels_and_images(tmp_path):
    root = write_release(tmp_path / "PolyMNIST")
    released = load_dataset("train", 5, dataset="polymnist", data_dir=root, cache_dir=tmp_path / "cache",
                            captions=True)
    x, y, _, _ = fake_mnist(30, 20, seed=3)
    built = with_captions(build_polymnist(x, y, 5, seed=5), "train")
    assert np.array_equal(released.captions.text, built.captions.text)
    assert np.array_equal(released.captions.measures, built.captions.measures)
    assert np.array_equal(built.captions.measures, C.measure(x[built.source[:, 0].numpy()] > 128))
    assert len(list((tmp_path / "cache").glob("captions_polymnist_release_train_*.npz"))) == 1
    again = load_dataset("train", 5, dataset="polymnist", data_dir=root, cache_dir=tmp_path / "cache", captions=True)
    assert np.array_equal(again.captions.text, released.captions.text)


def test_the_caption_reader_names_the_digit_where_a_word_by_word_arg_max_does_not():
    from model.captions import VOCABULARY, CaptionReader, Tokenizer, caption_language

    tok = Tokenizer()
    reader = CaptionReader(tok)
    assert len(reader.texts) == len(set(reader.texts)) and "a bold 3" in reader.texts
    assert not set(reader.texts) & set(caption_language(held_out=True))

    def one_hot(text):
        return np.eye(len(VOCABULARY), dtype=np.float32)[tok.encode(text)]

    mixture = 0.3 * one_hot("three") + 0.3 * one_hot("a three") + 0.4 * one_hot("a bold three")
    assert tok.decode(mixture.argmax(-1)) == "a bold"                    # word by word: no digit
    assert reader.read(mixture[None]) == ["a three"]                     # the likeliest caption of the language
    noisy = 0.8 * one_hot("the number 8, large and thin") + 0.2 / len(VOCABULARY)
    typed = one_hot("8, large, thin, upright")                           # a held-out wording, exactly one-hot
    assert reader.read(np.stack([noisy, typed])) == ["the number 8, large and thin", "8, large, thin, upright"]
