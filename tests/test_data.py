"""The PolyMNIST-style builder: determinism, label pairing, the modality recipe, MNIST errors, cache."""
import numpy as np
import pytest
import torch

from model.data import (MNISTError, build_polymnist, load_mnist, load_polymnist, make_backgrounds, random_crop_corner,
                        to_modality)

from conftest import fake_mnist


def test_same_seed_same_tensors_other_seed_other_tensors():
    x, y, _, _ = fake_mnist()
    a, b, c = build_polymnist(x, y, 4, seed=3), build_polymnist(x, y, 4, seed=3), build_polymnist(x, y, 4, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.source, b.source)
    assert not torch.equal(a.x, c.x)


def test_pairing_by_label_with_distinct_images():
    x, y, _, _ = fake_mnist()
    ds = build_polymnist(x, y, 5, seed=0)
    assert torch.equal(ds.y, torch.from_numpy(y.astype(np.int64)))       # labels stored, not parsed
    src = ds.source.numpy()
    assert (y[src] == y[:, None]).all()                                   # same class in every modality
    assert all(len(set(row)) == 5 for row in src)                         # each from a different image
    assert all(sorted(src[:, m]) == list(range(len(y))) for m in range(5))  # every image used once


def test_modality_recipe():
    x, y, _, _ = fake_mnist()
    ds = build_polymnist(x, y, 3, seed=0)
    plain = ds.x[:, 0].float() / 255                                      # modality 0: white ink on black
    ink = torch.from_numpy(x[ds.source[:, 0].numpy()] > 128)
    assert torch.equal(plain, ink[:, None].float().expand_as(plain))
    bg = make_backgrounds(3, 0)
    assert bg[0].max() == 0 and np.abs(bg[1] - bg[2]).mean() > 0.1       # textures differ per modality
    img = to_modality(x[0], 1, 3, rng=np.random.default_rng(0))
    assert img.shape == (3, 28, 28) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1
    top, left = random_crop_corner(np.random.default_rng(0), None, bg.shape[1])  # the crop to_modality drew
    crop = np.moveaxis(bg[1][top:top + 28, left:left + 28], -1, 0)
    assert np.allclose(img, np.where(x[0] > 128, 1 - crop, crop))          # inverted where the digit is


def test_missing_and_corrupt_mnist_files_get_clear_errors(tmp_path):
    with pytest.raises(MNISTError, match="not found.*nope.npz.*npz"):
        load_mnist(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(MNISTError, match="bad.npz.*Accepted"):
        load_mnist(bad)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((3, 5, 5), np.uint8))
    with pytest.raises(MNISTError, match="wrong.npz"):
        load_mnist(wrong)


def test_load_polymnist_builds_then_reads_the_cache(tmp_path, mnist_file):
    a = load_polymnist("train", 3, 0, mnist_file, tmp_path)
    assert len(list(tmp_path.glob("polymnist_train_*.npz"))) == 1
    copy = tmp_path / "copy.npz"   # the same bytes elsewhere: the same cache
    copy.write_bytes(mnist_file.read_bytes())
    b = load_polymnist("train", 3, 0, copy, tmp_path)
    assert torch.equal(a.x, b.x) and torch.equal(a.source, b.source)
    assert len(list(tmp_path.glob("polymnist_train_*.npz"))) == 1
    with pytest.raises(MNISTError, match="not found.*gone.npz"):   # no file: nothing to check the cache against
        load_polymnist("train", 3, 0, tmp_path / "gone.npz", tmp_path)
    test = load_polymnist("test", 3, 0, mnist_file, tmp_path)
    assert test.x.shape == (40, 3, 3, 28, 28)
    xb, yb = test.batch(torch.arange(4))
    assert xb.dtype == torch.float32 and xb.max() <= 1 and yb.dtype == torch.int64


def test_the_cache_is_keyed_by_the_mnist_content_and_the_settings(tmp_path):
    """Another MNIST-layout file in the same cache folder, or the same path rewritten: a new set, never the old."""
    path = tmp_path / "mnist.npz"
    x_tr, y_tr, x_te, y_te = fake_mnist(seed=0)
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    first = load_polymnist("train", 2, 0, path, tmp_path / "cache")
    other = tmp_path / "other.npz"
    np.savez(other, x_train=255 - x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    assert not torch.equal(load_polymnist("train", 2, 0, other, tmp_path / "cache").x, first.x)
    np.savez(path, x_train=255 - x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)   # the same path, new content
    rewritten = load_polymnist("train", 2, 0, path, tmp_path / "cache")
    expected = build_polymnist(255 - x_tr, y_tr, 2, 0, backgrounds=make_backgrounds(2, 0))
    assert torch.equal(rewritten.x, expected.x)
    assert not torch.equal(load_polymnist("train", 2, 1, path, tmp_path / "cache").x, rewritten.x)   # another seed
    assert len(list((tmp_path / "cache").glob("polymnist_train_*.npz"))) == 3
