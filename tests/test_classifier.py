"""The judge families: both architectures save and load, the augmentation blurs and noises within range."""
import torch

from model.classifier import (BLUR_LEVELS, ClassifierConfig, Classifiers, accuracy, augment, gaussian_blur,
                              train_classifiers)


def test_second_family_round_trip(tmp_path):
    clf = Classifiers(ClassifierConfig(3, hidden=16, arch="vgg", augment=True)).eval()
    clf.save_pretrained(tmp_path / "b")
    back = Classifiers.from_pretrained(str(tmp_path / "b")).eval()
    assert back.config.arch == "vgg" and back.config.augment
    x = torch.rand(4, 3, 3, 28, 28)
    assert torch.equal(clf(x), back(x)) and clf(x).shape == (4, 3, 10)
    assert clf.features(x[:, 0], 0).shape == (4, 16)
    assert type(clf.nets[0]).__name__ != type(Classifiers(ClassifierConfig(3)).nets[0]).__name__


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
    assert len(BLUR_LEVELS) == 3


def test_training_with_augmentation_learns(tmp_path, mnist_file):
    from model.data import load_polymnist

    train = load_polymnist("train", 2, 0, str(mnist_file), tmp_path / "cache")
    test = load_polymnist("test", 2, 0, str(mnist_file), tmp_path / "cache")
    clf, acc = train_classifiers(train, test, 2, epochs=3, batch=16, lr=3e-3, arch="vgg", use_augment=True,
                                 log=lambda *_: None)
    assert len(acc) == 2 and all(0 <= a <= 1 for a in acc) and max(acc) > 0.2   # above chance on the toy digits
    assert accuracy(clf, test, blur=1.0) == accuracy(clf, test, blur=1.0)
