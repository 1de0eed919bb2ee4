"""A PolyMNIST-style data set built offline from MNIST.

M modalities of 3x28x28 images in [0, 1]. Modality 0 is plain ink (a white digit on black), so a
digit drawn by hand maps onto it directly. Modalities 1..M-1 each have a procedural background
texture (a numpy recipe of its own, seeded), and follow the PolyMNIST recipe: binarise the digit
(> 128), take a random 28x28 crop of the modality's background, invert the background's colours
where the digit is.

Pairing is by label only: sample i shows the same digit class in every modality, each drawn from a
different MNIST image (a seeded permutation of that class's images, shifted per modality so that no
two modalities of one sample share an image). The label is stored with the tensors.

Captions (``captions=True``): one English caption per tuple, from its label and the digit of modality 0
(model.captions), cached in a file of its own beside the images' cache.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .captions import Captions, caption_key, describe

TEXTURE_SIZE = 112
DATA_VERSION = "v1"
MNIST_FORMATS = (
    "a .npz file with uint8 arrays x_train (60000, 28, 28), y_train, x_test (10000, 28, 28), y_test "
    "(the Keras layout, e.g. ../shared/data/mnist.npz), or a torchvision MNIST root folder "
    "(holding MNIST/raw/*-ubyte[.gz])"
)


class MNISTError(RuntimeError):
    """MNIST could not be found or read."""


class DataError(RuntimeError):
    """A data set on disk is missing or malformed; the message names the file (one line)."""


# ---------------------------------------------------------------- MNIST

def load_mnist(path: str | Path | None = None, root: str | Path = "data_cache", download: bool = True):
    """Return (x_train, y_train, x_test, y_test) as uint8 numpy arrays.

    ``path``: a local ``.npz`` (Keras layout) or a torchvision MNIST root folder. Without it,
    torchvision downloads MNIST into ``root`` (needs internet).
    """
    if path is None:
        try:
            from torchvision.datasets import MNIST

            tr = MNIST(str(root), train=True, download=download)
            te = MNIST(str(root), train=False, download=download)
        except Exception as e:  # no internet, blocked download, ...
            raise MNISTError(
                f"Could not download MNIST with torchvision into {root!r} ({type(e).__name__}: {e}). "
                f"Pass a local file with --mnist PATH: {MNIST_FORMATS}."
            ) from e
        return (tr.data.numpy(), tr.targets.numpy().astype(np.uint8),
                te.data.numpy(), te.targets.numpy().astype(np.uint8))

    path = Path(path)
    if not path.exists():
        raise MNISTError(f"MNIST file not found: {str(path)!r}. Accepted: {MNIST_FORMATS}.")
    if path.is_dir():
        return _load_mnist_raw_dir(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise MNISTError(f"Could not open {str(path)!r} ({e.strerror}). Accepted: {MNIST_FORMATS}.") from None
    if head != b"PK\x03\x04":  # not a zip archive: numpy would suggest allow_pickle, which is no help here
        raise MNISTError(f"{str(path)!r} is not an .npz archive ({'empty file' if not head else 'no zip header'}). "
                         f"Accepted: {MNIST_FORMATS}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
            if missing:
                raise MNISTError(f"{str(path)!r} has no array(s) {', '.join(missing)} "
                                 f"(it holds {', '.join(f.files) or 'nothing'}). "
                                 f"Accepted: {MNIST_FORMATS}.")
            arrays = tuple(np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    except MNISTError:
        raise
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else ""
        raise MNISTError(f"Could not read MNIST from {str(path)!r}: the archive is truncated or damaged "
                         f"({type(e).__name__}{': ' + reason if reason else ''}). Accepted: {MNIST_FORMATS}.") from None
    _check_mnist(arrays, path)
    return arrays


def _load_mnist_raw_dir(root: Path):
    raw = next((p for p in (root / "MNIST" / "raw", root / "raw", root) if p.is_dir()
                and any(p.glob("train-images-idx3-ubyte*"))), None)
    if raw is None:
        raise MNISTError(f"No MNIST idx files under {str(root)!r}. Accepted: {MNIST_FORMATS}.")

    def read(stem, offset):
        p = raw / stem if (raw / stem).exists() else raw / (stem + ".gz")
        try:
            data = gzip.open(p).read() if p.suffix == ".gz" else p.read_bytes()
        except Exception as e:
            raise MNISTError(f"Could not read {str(p)!r} ({e}). Accepted: {MNIST_FORMATS}.") from e
        return np.frombuffer(data, np.uint8, offset=offset)

    try:
        arrays = (read("train-images-idx3-ubyte", 16).reshape(-1, 28, 28), read("train-labels-idx1-ubyte", 8),
                  read("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28), read("t10k-labels-idx1-ubyte", 8))
    except ValueError as e:
        raise MNISTError(f"The MNIST idx files under {str(raw)!r} are truncated ({e}). "
                         f"Accepted: {MNIST_FORMATS}.") from None
    _check_mnist(arrays, root)
    return arrays


def _check_mnist(arrays, path):
    x_tr, y_tr, x_te, y_te = arrays
    if any(a.dtype.kind not in "ui" for a in arrays) or any(a.size == 0 for a in arrays):
        raise MNISTError(f"{str(path)!r} does not hold MNIST: expected integer arrays, got dtypes "
                         f"{', '.join(str(a.dtype) for a in arrays)} and sizes "
                         f"{', '.join(str(a.size) for a in arrays)}. "
                         f"Accepted: {MNIST_FORMATS}.")
    for name, y in (("y_train", y_tr), ("y_test", y_te)):
        bad = np.unique(y[(y < 0) | (y > 9)])
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:5]) + (f" and {bad.size - 5} more" if bad.size > 5 else "")
            raise MNISTError(f"{str(path)!r}: the labels must be digits 0-9, but {name} holds {shown} "
                             f"({int(((y < 0) | (y > 9)).sum())} of {y.size} labels). Accepted: {MNIST_FORMATS}.")
    ok = (x_tr.ndim == 3 and x_tr.shape[1:] == (28, 28) and x_te.ndim == 3 and x_te.shape[1:] == (28, 28)
          and len(x_tr) == len(y_tr) and len(x_te) == len(y_te) and len(x_tr) > 0)
    if not ok:
        raise MNISTError(f"{str(path)!r} does not hold MNIST-shaped arrays "
                         f"(got {x_tr.shape}, {y_tr.shape}, {x_te.shape}, {y_te.shape}). Accepted: {MNIST_FORMATS}.")


# ---------------------------------------------------------------- backgrounds

def _smooth_noise(rng, size, cutoff):
    """Low-pass filtered white noise in [0, 1]: cutoff is a fraction of the Nyquist frequency."""
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    spectrum = np.fft.fft2(rng.standard_normal((size, size))) * (radius < cutoff * 0.5)
    field = np.real(np.fft.ifft2(spectrum))
    return (field - field.min()) / (np.ptp(field) + 1e-8)


def _pattern(kind, rng, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "blobs":        # soft, low-frequency clouds
        return _smooth_noise(rng, size, 0.08)
    if kind == "stripes":      # diagonal waves, mid frequency, slightly wobbly
        theta = rng.uniform(0, np.pi)
        wobble = 3.0 * _smooth_noise(rng, size, 0.05)
        return 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / 7.0 + wobble)
    if kind == "checker":      # hard-edged checkerboard, rotated
        theta = rng.uniform(0, np.pi / 2)
        u, v = xx * np.cos(theta) + yy * np.sin(theta), -xx * np.sin(theta) + yy * np.cos(theta)
        return ((np.floor(u / 6) + np.floor(v / 6)) % 2).astype(np.float64)
    if kind == "speckle":      # high-frequency grain
        return (_smooth_noise(rng, size, 0.6) > 0.5).astype(np.float64) * 0.8 + 0.2 * rng.random((size, size))
    if kind == "rings":        # concentric rings around a random centre
        cy, cx = rng.uniform(0, size, 2)
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        return 0.5 + 0.5 * np.sin(2 * np.pi * r / 9.0)
    raise ValueError(kind)


PATTERNS = ("blobs", "stripes", "checker", "speckle", "rings")
# Pairs of palette colours per textured modality; channels kept away from 0.5 so that the
# inverted digit always stands out from its background.
PALETTES = (
    ((0.95, 0.55, 0.05), (0.55, 0.05, 0.10)),   # orange / dark red
    ((0.05, 0.25, 0.80), (0.10, 0.85, 0.75)),   # blue / turquoise
    ((0.90, 0.90, 0.15), (0.10, 0.45, 0.10)),   # yellow / green
    ((0.75, 0.15, 0.85), (0.10, 0.05, 0.25)),   # purple / night
    ((0.90, 0.80, 0.70), (0.45, 0.20, 0.05)),   # sand / brown
)


def make_backgrounds(n_modalities: int, seed: int = 0, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Background textures, float32 [M, size, size, 3] in [0, 1]. Modality 0 is black (plain ink)."""
    out = np.zeros((n_modalities, size, size, 3), np.float32)
    for m in range(1, n_modalities):
        rng = np.random.default_rng([seed, m])
        kind = PATTERNS[(m - 1) % len(PATTERNS)]
        c1, c2 = (np.array(c) for c in PALETTES[(m - 1) % len(PALETTES)])
        if m > len(PATTERNS):  # more modalities than recipes: new random colours
            c1, c2 = rng.choice([0.1, 0.9], 3) * 0.8 + 0.1 * rng.random(3), rng.choice([0.1, 0.9], 3)
        w = _pattern(kind, rng, size)[..., None]
        out[m] = np.clip(w * c1 + (1 - w) * c2, 0, 1)
    return out


@functools.lru_cache(maxsize=8)
def backgrounds_for(n_modalities: int, seed: int = 0) -> np.ndarray:
    """The textures of a data set built with ``seed`` (cached; do not modify the array)."""
    return make_backgrounds(n_modalities, seed)


def to_modality(digit: np.ndarray, m: int, n_modalities: int = 5, seed: int = 0,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """One 28x28 grey digit (white ink on black, uint8 or [0, 1]) as modality m: float32 [3, 28, 28]
    in [0, 1], on a random crop (from ``rng``) of the textures of the data set built with ``seed``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    bg = backgrounds_for(n_modalities, seed)[m]
    top, left = random_crop_corner(rng, None, bg.shape[0])
    return digit_to_modality(digit, bg, top, left)


def digit_to_modality(digit: np.ndarray, background: np.ndarray, top: int, left: int) -> np.ndarray:
    """The PolyMNIST recipe for one or many digits.

    digit: [..., 28, 28] grey digit(s), uint8 0..255 or float 0..1 (white ink on black).
    background: [S, S, 3] texture in [0, 1]; (top, left): the crop's corner (ints or arrays).
    Returns float32 [..., 3, 28, 28] in [0, 1]: the crop, with its colours inverted where the
    binarised digit is.
    """
    digit = np.asarray(digit)
    threshold = 128 if digit.dtype == np.uint8 else 128 / 255
    mask = (digit > threshold)[..., None, :, :]
    top, left = np.asarray(top), np.asarray(left)
    rows = top[..., None] + np.arange(28)                       # [..., 28]
    cols = left[..., None] + np.arange(28)
    crop = background[rows[..., :, None], cols[..., None, :]]   # [..., 28, 28, 3]
    crop = np.moveaxis(crop, -1, -3).astype(np.float32)        # [..., 3, 28, 28]
    return np.where(mask, 1.0 - crop, crop).astype(np.float32)


def random_crop_corner(rng: np.random.Generator, n=None, size: int = TEXTURE_SIZE):
    return rng.integers(0, size - 28 + 1, n), rng.integers(0, size - 28 + 1, n)


# ---------------------------------------------------------------- the data set

@dataclass
class PolyMNIST:
    """x: uint8 [N, M, 3, 28, 28] (divide by 255 for [0, 1]); y: int64 [N]; source: int64 [N, M],
    the index of the MNIST image each (sample, modality) shows (provenance; None in old caches); captions: the
    tuples' captions and measured attributes (model.captions.Captions; None unless asked for)."""

    x: torch.Tensor
    y: torch.Tensor
    source: torch.Tensor | None = None
    captions: Captions | None = None

    def __len__(self):
        return len(self.y)

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx].float().div_(255.0), self.y[idx]

    def caption_batch(self, idx) -> torch.Tensor:
        """Token ids int64 [B, L] of the tuples' captions (model.captions.Tokenizer; padded with 0)."""
        if self.captions is None:
            raise DataError("this data set was loaded without captions: load it with captions=True")
        return torch.from_numpy(self.captions.ids[np.asarray(idx)].astype(np.int64))


def build_polymnist(images: np.ndarray, labels: np.ndarray, n_modalities: int = 5, seed: int = 0,
                    backgrounds: np.ndarray | None = None) -> PolyMNIST:
    """Build the multimodal set from one MNIST split. Deterministic in (images, labels, M, seed)."""
    if backgrounds is None:
        backgrounds = make_backgrounds(n_modalities, seed)
    labels = np.asarray(labels).astype(np.int64)
    n = len(labels)
    rng = np.random.default_rng([seed, 12345])
    source = np.empty((n, n_modalities), np.int64)   # which MNIST image each (sample, modality) shows
    for c in range(10):
        members = np.flatnonzero(labels == c)       # sample i keeps the label of MNIST image i
        perm = rng.permutation(members)
        k = len(members)
        for m in range(n_modalities):
            source[members, m] = perm[(np.arange(k) + m * k // n_modalities) % k]
    x = np.empty((n, n_modalities, 3, 28, 28), np.uint8)
    for m in range(n_modalities):
        top, left = random_crop_corner(rng, n, backgrounds.shape[1])
        for s in range(0, n, 5000):  # chunks keep the float temporaries small
            img = digit_to_modality(images[source[s:s + 5000, m]], backgrounds[m], top[s:s + 5000], left[s:s + 5000])
            x[s:s + 5000, m] = np.round(img * 255).astype(np.uint8)
    return PolyMNIST(torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(source))


def _digest_files(paths, digest=None, names: bool = True) -> str:
    """blake2b of the files' bytes (and names), in the given order (read in 1 MB pieces)."""
    digest = digest or hashlib.blake2b(digest_size=16)
    for p in paths:
        digest.update(p.name.encode() + b"\0" if names else b"")
        with open(p, "rb") as fh:
            for piece in iter(lambda: fh.read(1 << 20), b""):
                digest.update(piece)
        digest.update(b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _mnist_digest_cached(path: str, size: int, mtime_ns: int) -> str:
    p = Path(path)
    if p.is_dir():  # a torchvision root: its idx files
        files = sorted(f for f in p.rglob("*-ubyte*") if f.is_file())
        if not files:
            raise MNISTError(f"No MNIST idx files under {path!r}. Accepted: {MNIST_FORMATS}.")
        return _digest_files(files)
    return _digest_files([p], names=False)


def mnist_digest(mnist: str | Path | None) -> str:
    """What identifies the MNIST a set is built from: the hash of the file's bytes (of the idx files of a
    torchvision root), or "torchvision" for torchvision's download. Hashed once per process and file version."""
    if mnist is None:
        return "torchvision"
    p = Path(mnist)
    try:
        st = p.stat()
    except OSError:
        raise MNISTError(f"MNIST file not found: {str(p)!r}. Accepted: {MNIST_FORMATS}.") from None
    return _mnist_digest_cached(str(p.resolve()), st.st_size, st.st_mtime_ns)


def load_polymnist(split: str = "train", n_modalities: int = 5, seed: int = 0, mnist: str | None = None,
                   cache_dir: str | Path = "data_cache", captions: bool = False, caption_seed: int = 0) -> PolyMNIST:
    """The built set for ``split`` ('train' or 'test'), cached in ``cache_dir`` as .npz. The cache is keyed by
    the build settings and the MNIST file's content: another file (or the same path rewritten) builds anew.
    ``captions``: with the tuples' captions (``caption_seed`` draws their wordings), cached beside."""
    ds, cache = _load_polymnist(split, n_modalities, seed, mnist, cache_dir)
    return with_captions(ds, split, caption_seed, cache) if captions else ds


def _load_polymnist(split, n_modalities, seed, mnist, cache_dir) -> tuple[PolyMNIST, Path]:
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    cache_dir = Path(cache_dir)
    built_from = mnist_digest(mnist)
    key = hashlib.sha1(f"{DATA_VERSION}-{split}-{n_modalities}-{seed}-{built_from}".encode()).hexdigest()[:10]
    cache = cache_dir / f"polymnist_{split}_M{n_modalities}_seed{seed}_{key}.npz"
    if cache.exists():
        try:
            with np.load(cache) as f:
                source = torch.from_numpy(f["source"]) if "source" in f else None
                return PolyMNIST(torch.from_numpy(f["x"]), torch.from_numpy(f["y"]), source), cache
        except Exception:
            cache.unlink(missing_ok=True)  # a broken cache is rebuilt
    x_tr, y_tr, x_te, y_te = load_mnist(mnist, root=cache_dir)
    imgs, labs = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    # the same textures for both splits; pairing and crops drawn from a split-specific seed
    ds = build_polymnist(imgs, labs, n_modalities, seed + (0 if split == "train" else 1),
                         backgrounds=backgrounds_for(n_modalities, seed))
    _save_cache(cache, ds)
    return ds, cache


def with_captions(ds: PolyMNIST, split: str, caption_seed: int = 0, cache: Path | None = None) -> PolyMNIST:
    """``ds`` with its captions (from its labels and modality-0 images, model.captions.describe). With the
    images' ``cache`` file, the captions are kept in a file beside it, keyed by that file's name (the images'
    content) and the caption recipe; a broken caption file is built again."""
    path = None if cache is None else cache.with_name(f"captions_{cache.stem}_{caption_key(caption_seed)}.npz")
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                captions = Captions.from_arrays(f)
            if len(captions) == len(ds):
                return PolyMNIST(ds.x, ds.y, ds.source, captions)
        except Exception:
            pass
        path.unlink(missing_ok=True)
    captions = describe(ds.x[:, 0].numpy(), ds.y.numpy(), caption_seed, split)
    if path is not None:
        _save_arrays(path, captions.arrays())
    return PolyMNIST(ds.x, ds.y, ds.source, captions)


def _save_cache(cache: Path, ds: PolyMNIST) -> None:
    """Write the set's tensors to ``cache`` whole or not at all."""
    arrays = dict(x=ds.x.numpy(), y=ds.y.numpy())
    if ds.source is not None:
        arrays["source"] = ds.source.numpy()
    _save_arrays(cache, arrays)


def _save_arrays(path: Path, arrays: dict) -> None:
    """np.savez whole or not at all (a per-process temporary file, then a rename: torchrun's ranks may build it
    at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


# ---------------------------------------------------------------- the released PolyMNIST

POLYMNIST_LAYOUT = ("DATA_DIR/train/m0 .. m{M-1} and DATA_DIR/test/m0 .. m{M-1}, each holding RGB 28x28 PNG files "
                    "named <index>.<label>.png; tuples are matched by index (the published PolyMNIST release)")


def _polymnist_files(folder: Path) -> dict[int, tuple[int, Path]]:
    """{index: (label, path)} of one modality folder; DataError naming the first bad file name."""
    out = {}
    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        parts = p.name.split(".")
        if len(parts) != 3 or parts[2].lower() != "png" or not parts[0].isdigit() or not parts[1].isdigit():
            raise DataError(f"{str(p)!r}: not a PolyMNIST file name (expected <index>.<label>.png, e.g. 17.3.png)")
        if int(parts[1]) > 9:
            raise DataError(f"{str(p)!r}: the label {parts[1]} is not a digit 0-9")
        if int(parts[0]) in out:
            raise DataError(f"{str(p)!r}: index {parts[0]} appears twice in {str(folder)!r}")
        out[int(parts[0])] = (int(parts[1]), p)
    return out


def read_polymnist_folder(root: str | Path, split: str = "train", n_modalities: int = 5) -> PolyMNIST:
    """The released PolyMNIST ``root/split/m0..m{M-1}/<index>.<label>.png`` as a PolyMNIST (uint8 tensors),
    tuples matched by index, in increasing index order (as MultiVae's MMNISTDataset pairs them)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    base = root / split
    if not root.is_dir():
        raise DataError(f"PolyMNIST folder not found: {str(root)!r}. Expected {POLYMNIST_LAYOUT}.")
    if not base.is_dir():
        raise DataError(f"{str(base)!r} is missing. Expected {POLYMNIST_LAYOUT}.")
    files = []
    for m in range(n_modalities):
        folder = base / f"m{m}"
        if not folder.is_dir():
            raise DataError(f"modality folder {str(folder)!r} is missing. Expected {POLYMNIST_LAYOUT}.")
        files.append(_polymnist_files(folder))
    for m in range(1, n_modalities):
        if files[m].keys() != files[0].keys():
            extra = sorted(set(files[m]) ^ set(files[0]))[0]
            where = files[m].get(extra, files[0].get(extra))[1]
            raise DataError(f"{str(base / f'm{m}')!r} has {len(files[m])} files, "
                            f"{str(base / 'm0')!r} has {len(files[0])} files: "
                            f"tuples are matched by index and {str(where)!r} has no partner")
    index = sorted(files[0])
    if not index:
        raise DataError(f"{str(base / 'm0')!r} holds no PNG files. Expected {POLYMNIST_LAYOUT}.")
    y = np.array([files[0][i][0] for i in index], np.int64)
    x = np.empty((len(index), n_modalities, 3, 28, 28), np.uint8)
    for m in range(n_modalities):
        for k, i in enumerate(index):
            label, path = files[m][i]
            if label != y[k]:
                raise DataError(f"{str(path)!r}: label {label}, but the same index has label {y[k]} in m0")
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
                raise DataError(f"{str(path)!r}: not a readable PNG ({type(e).__name__})") from None
            if arr.shape != (28, 28, 3):
                raise DataError(f"{str(path)!r}: {arr.shape[1]}x{arr.shape[0]} pixels, expected 28x28")
            x[k, m] = arr.transpose(2, 0, 1)
    return PolyMNIST(torch.from_numpy(x), torch.from_numpy(y), None)


def load_dataset(split: str = "train", n_modalities: int = 5, seed: int = 0, mnist: str | None = None,
                 cache_dir: str | Path = "data_cache", dataset: str = "builtin", data_dir: str | Path | None = None,
                 captions: bool = False, caption_seed: int = 0) -> PolyMNIST:
    """One split of the run's data: ``builtin`` (the PolyMNIST-style set built from MNIST, cached) or
    ``polymnist`` (the released files under ``data_dir``, read into memory once and cached as uint8).
    ``captions``: with the tuples' captions, built the same way for both (model.captions), cached beside."""
    if dataset == "builtin":
        return load_polymnist(split, n_modalities, seed, mnist, cache_dir, captions, caption_seed)
    if dataset != "polymnist":
        raise DataError(f"unknown data set {dataset!r}: use builtin or polymnist")
    if not data_dir:
        raise DataError("--dataset polymnist needs --data-dir PATH (the folder holding train/ and test/)")
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    root = Path(data_dir).resolve()
    try:  # the cache key: the bytes and names of every file (a changed release is read again)
        digest = hashlib.blake2b(f"{DATA_VERSION}-{split}-{n_modalities}".encode(), digest_size=16)
        for m in range(n_modalities):
            folder = root / split / f"m{m}"
            _digest_files(sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")), digest)
        key = digest.hexdigest()[:16]
    except OSError:
        key = None   # a missing folder: read_polymnist_folder says which
    cache = Path(cache_dir) / f"polymnist_release_{split}_M{n_modalities}_{key}.npz"
    ds = None
    if key is not None and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as f:
                ds = PolyMNIST(torch.from_numpy(f["x"]), torch.from_numpy(f["y"]), None)
        except Exception:
            cache.unlink(missing_ok=True)
    if ds is None:
        ds = read_polymnist_folder(root, split, n_modalities)
        if key is not None:
            _save_cache(cache, ds)
    return with_captions(ds, split, caption_seed, cache if key is not None else None) if captions else ds
