"""The judge families: both architectures save and load (quietly), accuracy counts right answers per modality
on the images as given or blurred, the augmentation blurs at its levels and noises within range."""
import logging
from types import SimpleNamespace

import pytest
import torch

from model.classifier import (BLUR_LEVELS, ClassifierConfig, Classifiers, accuracy, augment, gaussian_blur,
                              train_classifiers)
from model.data import PolyMNIST


def test_second_family_round_trip(tmp_path, capsys, caplog):
    clf = Classifiers(ClassifierConfig(3, hidden=16, arch="vgg", augment=True)).eval()
    clf.save_pretrained(tmp_path / "b")
    capsys.readouterr()
    with caplog.at_level(logging.DEBUG, logger="mebm"):
        back = Classifiers.from_pretrained(str(tmp_path / "b")).eval()
    assert capsys.readouterr().out == ""                                      # loading prints nothing
    assert any("loading Classifiers weights" in r.getMessage() for r in caplog.records)
    assert back.config.arch == "vgg" and back.config.augment
    x = torch.rand(4, 3, 3, 28, 28)
    assert torch.equal(clf(x), back(x)) and clf(x).shape == (4, 3, 10)
    assert clf.features(x[:, 0], 0).shape == (4, 16)
    assert type(clf.nets[0]).__name__ != type(Classifiers(ClassifierConfig(3)).nets[0]).__name__


def dot_digits(n=20):
    """Two modalities; image (i, m) is black but for one pixel of brightness 25 * label: the label can be read off."""
    y = torch.arange(n) % 10
    x = torch.zeros(n, 2, 3, 28, 28, dtype=torch.uint8)
    x[:, :, :, 14, 14] = (25 * y).to(torch.uint8)[:, None, None]
    return PolyMNIST(x, y)


class DotReader:
    """A judge that reads the dot: modality 0 right (on sharp images), modality 1 always one digit off."""
    config = SimpleNamespace(n_modalities=2)

    def predict(self, x):
        digit = (x.amax(dim=(2, 3, 4)) * 255 / 25).round().long()
        digit[:, 1] = (digit[:, 1] + 1) % 10
        return digit, torch.ones(digit.shape)


def test_accuracy_counts_right_answers_per_modality():
    data = dot_digits()
    assert accuracy(DotReader(), data, batch=7) == [1.0, 0.0]                # batches of 7 cover all 20
    blurred = accuracy(DotReader(), data, batch=7, blur=1.0)                 # the dot spreads: dimmer, misread
    assert blurred[0] == pytest.approx(0.1)                                  # only the label-0 images (no dot)


def test_blur_and_augmentation():
    flat = torch.full((2, 3, 28, 28), 0.4)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)          # constants stay constant
    dot = torch.zeros(1, 3, 28, 28)
    dot[..., 14, 14] = 1.0
    blurred = gaussian_blur(dot, 1.0)
    assert blurred[..., 14, 14].max() < 0.2 and abs(blurred.sum().item() - 3.0) < 1e-4   # spread, mass kept
    x = torch.rand(400, 3, 28, 28)
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    changed = (y - x).flatten(1).abs().amax(1) > 0
    assert 0.6 < changed.float().mean() < 0.9                                # about 3/4 of the images altered
    assert torch.equal(y, augment(x, torch.Generator().manual_seed(0)))      # seeded
    # the images blurred without noise are each exactly one of the blur levels, and every level is used
    gap = torch.stack([(y - gaussian_blur(x, s)).flatten(1).abs().amax(1) for s in BLUR_LEVELS], 1)   # [400, 3]
    exact = changed & (gap.amin(1) < 1e-6)
    assert set(gap[exact].argmin(1).tolist()) == set(range(len(BLUR_LEVELS))) and exact.sum() > 100


def test_training_with_augmentation_learns(tmp_path, mnist_file):
    from model.data import load_polymnist

    train = load_polymnist("train", 2, 0, str(mnist_file), tmp_path / "cache")
    test = load_polymnist("test", 2, 0, str(mnist_file), tmp_path / "cache")
    clf, acc = train_classifiers(train, test, 2, epochs=3, batch=16, lr=3e-3, arch="vgg", use_augment=True,
                                 log=lambda *_: None)
    assert len(acc) == 2 and all(0 <= a <= 1 for a in acc) and max(acc) > 0.2   # above chance on the toy digits
    assert accuracy(clf, test) == acc                                          # the last epoch's reading
