"""Drawings and uploads -> MNIST-like digits (model/preprocess.py)."""
import numpy as np
import pytest
from PIL import Image

from helpers_app import EMPTY_SKETCH, ROOT, stroke_sketch
from model.preprocess import InputError, digit_from_sketch, digit_from_upload, ink_from_array, to_mnist


def check_mnist_like(d):
    assert d.shape == (28, 28) and d.dtype == np.uint8
    ink = d > 30
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert rows[-1] - rows[0] <= 20 and cols[-1] - cols[0] <= 20          # fits the 20x20 box
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) >= 17              # ... and fills it
    ys, xs = np.mgrid[:28, :28]
    m = d.astype(float)
    assert abs((ys * m).sum() / m.sum() - 13.5) < 1.6 and abs((xs * m).sum() / m.sum() - 13.5) < 1.6
    assert (d > 128).sum() >= 40                                          # survives binarisation


@pytest.mark.parametrize("transparent", [True, False])
@pytest.mark.parametrize("size", [(280, 280), (800, 800), (300, 500)])
def test_sketch_layers(transparent, size):
    check_mnist_like(digit_from_sketch(stroke_sketch(size, transparent)))


def test_sketch_composite_only_and_plain_array():
    sk = stroke_sketch()
    check_mnist_like(digit_from_sketch({"background": None, "layers": [], "composite": sk["composite"]}))
    check_mnist_like(digit_from_sketch(sk["composite"][..., :3]))  # RGB, black on white


def test_thin_stroke_is_thickened():
    d = digit_from_sketch(stroke_sketch(thickness=2))
    check_mnist_like(d)


@pytest.mark.parametrize("bad", [None, EMPTY_SKETCH, {"background": None, "layers": [np.zeros((280, 280, 4), np.uint8)],
                                                     "composite": np.full((280, 280, 4), 255, np.uint8)}])
def test_empty_canvas(bad):
    with pytest.raises(InputError, match="empty|blank|no ink"):
        digit_from_sketch(bad)


def test_all_ink_and_blank():
    with pytest.raises(InputError, match="blank"):
        to_mnist(np.ones((100, 100)))
    with pytest.raises(InputError, match="blank"):
        digit_from_upload(np.full((50, 50, 3), 255, np.uint8))
    mostly = np.ones((100, 100), np.float32)
    mostly[40:45, 40:45] = 0
    with pytest.raises(InputError, match="mostly ink"):
        to_mnist(mostly)


def test_mnist_digit_round_trip():
    d = np.asarray(Image.open(ROOT / "assets/example_7.png"))
    out = digit_from_upload(ROOT / "assets/example_7.png")
    check_mnist_like(out)
    corr = np.corrcoef(out.ravel().astype(float), d.ravel().astype(float))[0, 1]
    assert corr > 0.7


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("RGB", "JPEG"), ("RGBA", "PNG"), ("P", "GIF"), ("RGB", "BMP"),
                                      ("RGB", "WEBP"), ("I;16", "PNG"), ("1", "PNG")])
def test_upload_modes_and_formats(tmp_path, mode, fmt):
    paper = Image.open(ROOT / "assets/example_paper_7.png").convert("L").resize((333, 250))
    img = paper.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(paper).astype(np.uint16) * 257)
    if mode == "RGBA":  # dark strokes on a transparent background
        a = 255 - np.asarray(paper)
        img = Image.fromarray(np.dstack([np.zeros_like(a)] * 3 + [a]), "RGBA")
    path = tmp_path / f"digit.{fmt.lower()}"
    img.save(path, fmt)
    check_mnist_like(digit_from_upload(path))


def test_corrupt_and_huge_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(InputError, match="Could not read"):
        digit_from_upload(bad)
    txt = tmp_path / "notes.jpg"
    txt.write_text("hello")
    with pytest.raises(InputError, match="Could not read"):
        digit_from_upload(txt)
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 5000)).save(huge)
    with pytest.raises(InputError, match="too large"):
        digit_from_upload(huge)
    with pytest.raises(InputError, match="No image"):
        digit_from_upload(None)


def test_large_upload_is_shrunk(tmp_path):
    big = Image.open(ROOT / "assets/example_paper_7.png").resize((2000, 2000))   # at the 4 MP cap
    path = tmp_path / "big.png"
    big.save(path)
    check_mnist_like(digit_from_upload(path))
    big.convert("RGB").resize((6000, 6000)).save(tmp_path / "photo.jpg", quality=80)   # a JPEG: decoded at 1/8
    check_mnist_like(digit_from_upload(tmp_path / "photo.jpg"))


def test_bad_arrays():
    with pytest.raises(InputError):
        ink_from_array(np.zeros((2, 2)))
    with pytest.raises(InputError):
        ink_from_array(np.zeros((10, 10, 7)))
    with pytest.raises(InputError, match="non-finite"):
        ink_from_array(np.full((10, 10), np.nan, np.float32))
