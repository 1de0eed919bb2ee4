"""A drawing or an uploaded picture -> an MNIST-like 28x28 digit (white ink on black, uint8).

The MNIST recipe: find the ink, crop to it, scale the longest side to 20 px (aspect kept), paste
into 28x28 so that the centre of mass of the ink sits at the centre. Before that, thin strokes are
thickened (a 1-px line at 280 px would vanish at 28 px) and the polarity is fixed so that ink is
bright whatever the source (black-on-white paper, white-on-black, strokes on a transparent layer).

Everything a visitor sends is bounded before it is decoded: a picture's size is read from its header
(MAX_PIXELS; a JPEG is decoded at a reduced scale, so it may be larger), a drawing has at most
MAX_SKETCH_IMAGES images of MAX_SKETCH_PIXELS in all, and a shared link's digit is inflated to its 784
bytes and no further. A digit needs 28x28 pixels: the caps leave room for any real drawing or photo
and keep ten requests at once within a few hundred MB (tests/test_app.py measures it).

All functions are pure; bad input raises ``InputError`` with a message meant for the user.
"""
from __future__ import annotations

import base64
import io
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 4_000_000       # a picture decoded in full (2000x2000, a phone screenshot); bigger ones are refused
MAX_JPEG_PIXELS = 64_000_000  # a JPEG is decoded at 1/2 to 1/8 of its size (draft): a 64 MP photo costs ~1 MP
MAX_SKETCH_IMAGES = 5        # a drawing: background, composite and up to 3 layers (the page sends 2 or 3)
MAX_SKETCH_PIXELS = 2_000_000  # all of a drawing's images together (the page sends 2 or 3 of 280x280)
WORK_SIZE = 512              # larger inputs are shrunk to this before processing
DIGIT_BYTES = 28 * 28
MAX_LINK_CHARS = 1200        # a shared digit: zlib + base64url of 784 bytes is at most ~1,070 characters
DAMAGED_LINK = "The digit in the shared link is damaged: open the link again, or draw a digit."


class InputError(ValueError):
    """The input cannot be turned into a digit; the message says why, in the user's words."""


def _to_float(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == bool:
        return a.astype(np.float32)
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError("The image holds invalid (non-finite) values.")
    return np.clip(a / 255.0 if a.max() > 1.0 else a, 0.0, 1.0)


def ink_from_array(img: np.ndarray) -> np.ndarray:
    """Ink amount in [0, 1], float32 [H, W], from a grey / RGB / RGBA array (uint8 or float).

    Transparent pixels count as background. The polarity is guessed from the border: a light
    border means dark ink on light paper, which is inverted.
    """
    a = _to_float(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        grey, alpha = a, None
    elif a.ndim == 3 and a.shape[-1] in (3, 4):
        grey = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha = a[..., 3] if a.shape[-1] == 4 else None
    else:
        raise InputError(f"Expected a grey, RGB or RGBA image, got an array of shape {a.shape}.")
    if min(grey.shape) < 4:
        raise InputError(f"The image is too small ({grey.shape[1]}x{grey.shape[0]} px).")
    if alpha is not None and alpha.min() < 0.99:
        # strokes on a transparent layer: the alpha channel is the ink, whatever the colour
        if alpha.max() - alpha.min() > 0.05:
            return alpha.astype(np.float32)
        grey = grey * alpha + (1 - alpha)  # uniform translucency: composite over white
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    ink = 1.0 - grey if np.median(border) > 0.5 else grey
    return ink.astype(np.float32)


def ink_from_sketch(value) -> np.ndarray | None:
    """Ink [H, W] from what ``gr.Sketchpad`` returns ({'background', 'layers', 'composite'}), or
    from a plain array. None for an untouched canvas."""
    if value is None:
        return None
    if isinstance(value, dict):
        layers = [l for l in (value.get("layers") or []) if l is not None]
        images = [np.asarray(a) for a in (*layers, value.get("composite"), value.get("background")) if a is not None]
        if len(images) > MAX_SKETCH_IMAGES:
            raise InputError(f"The drawing has {len(images)} images; at most {MAX_SKETCH_IMAGES} are accepted.")
        if sum(a.shape[0] * a.shape[1] for a in images if a.ndim >= 2) > MAX_SKETCH_PIXELS:
            raise InputError(f"The drawing is too large; the limit is {MAX_SKETCH_PIXELS / 1e6:g} megapixels.")
        alphas = [np.asarray(l)[..., 3] for l in layers if np.asarray(l).ndim == 3 and np.asarray(l).shape[-1] == 4]
        if alphas:
            return _to_float(np.max(np.stack(alphas), axis=0))
        for key in ("composite", "background"):
            if value.get(key) is not None:
                return ink_from_array(np.asarray(value[key]))
        return None
    return ink_from_array(check_array(value))


def encode_digit(digit: np.ndarray) -> str:
    """A 28x28 uint8 digit -> a short URL-safe string (zlib + base64url, about 300-500 characters)."""
    return base64.urlsafe_b64encode(zlib.compress(np.ascontiguousarray(digit, np.uint8).tobytes(), 9)).decode()


def decode_digit(text) -> np.ndarray:
    """``encode_digit``'s string -> the 28x28 digit. Bounded whatever is sent: at most MAX_LINK_CHARS are
    read and at most 785 bytes inflated (a zlib bomb stops there); InputError otherwise."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_LINK_CHARS:
        raise InputError(DAMAGED_LINK)
    raw = b""
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.urlsafe_b64decode(text.encode("ascii")), DIGIT_BYTES + 1)
        whole = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except (ValueError, zlib.error):   # not base64 (binascii.Error), not ASCII, not zlib
        whole = False
    if len(raw) != DIGIT_BYTES or not whole:
        raise InputError(DAMAGED_LINK)
    return np.frombuffer(raw, np.uint8).reshape(28, 28).copy()


def _too_large(w: int, h: int, limit: int, what: str = "The image") -> InputError:
    return InputError(f"{what} is too large ({w}x{h} px); the limit is {limit / 1e6:g} megapixels "
                      f"(a digit needs 28x28).")


def image_size(source) -> tuple[int, int]:
    """(width, height) of a picture file or its bytes, read from the header only; InputError if it is none."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"Could not read the drawing ({type(e).__name__}): draw the digit again.") from None


def check_drawing(sources) -> None:
    """Before a drawing (a Sketchpad's background, layers and composite, as files or bytes) is decoded:
    at most MAX_SKETCH_IMAGES images of MAX_SKETCH_PIXELS together (InputError otherwise)."""
    sources = [s for s in sources if s is not None]
    if len(sources) > MAX_SKETCH_IMAGES:
        raise InputError(f"The drawing has {len(sources)} images; at most {MAX_SKETCH_IMAGES} are accepted.")
    total = 0
    for source in sources:
        w, h = image_size(source)
        total += w * h
        if total > MAX_SKETCH_PIXELS:
            raise _too_large(w, h, MAX_SKETCH_PIXELS, "The drawing")


def check_array(a) -> np.ndarray:
    """An image array handed over in memory: at most MAX_PIXELS pixels (read from its shape)."""
    a = np.asarray(a)
    if a.ndim >= 2 and a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise _too_large(a.shape[1], a.shape[0], MAX_PIXELS)
    return a


def open_image(path) -> np.ndarray:
    """An uploaded file -> RGBA uint8 array (shrunk to WORK_SIZE). Any common format and mode. The size is
    checked from the header before anything is decoded."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            limit = MAX_JPEG_PIXELS if im.format == "JPEG" else MAX_PIXELS
            if w * h > limit:
                raise _too_large(w, h, limit)
            im.draft("RGB", (WORK_SIZE, WORK_SIZE))  # JPEG: decode at a reduced size
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise _too_large(w, h, MAX_PIXELS)
            im = im.convert("RGBA")
            im.thumbnail((WORK_SIZE, WORK_SIZE))
            return np.asarray(im)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"Could not read the file as an image ({type(e).__name__}). "
                         "Upload a PNG, JPEG, GIF, BMP or WebP picture of a digit.") from e


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Dilate strokes thinner than ~1/8 of the digit's size (MNIST strokes are ~2.5 of 20 px)."""
    mask = ink > 0.5
    area = mask.sum()
    edges = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    thickness = 2.0 * area / max(edges.sum(), 1)   # area / (perimeter / 2)
    target = max(ink.shape) / 8.0
    if thickness >= target:
        return ink
    r = min(int(round((target - thickness) / 2)), 6)   # dilation radius in pixels
    if r < 1:
        return ink
    padded = np.pad(ink, r)
    h, w = ink.shape
    out = ink.copy()
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out = np.maximum(out, padded[dy:dy + h, dx:dx + w])
    return out


def to_mnist(ink: np.ndarray | None) -> np.ndarray:
    """Ink [H, W] in [0, 1] -> MNIST-like digit uint8 [28, 28] (white on black, 20x20 box,
    centred by mass). Raises InputError for an empty or an all-ink picture."""
    if ink is None:
        raise InputError("The canvas is empty: draw a digit first (or pick 'unconditional').")
    ink = np.asarray(ink, np.float32)
    if ink.ndim != 2 or min(ink.shape) < 4:
        raise InputError("The picture is too small to hold a digit.")
    if max(ink.shape) > WORK_SIZE:  # keep the work small for huge arrays
        im = Image.fromarray(np.round(ink * 255).astype(np.uint8))
        im.thumbnail((WORK_SIZE, WORK_SIZE), Image.BILINEAR)
        ink = np.asarray(im).astype(np.float32) / 255.0
    lo, hi = float(ink.min()), float(ink.max())
    if hi - lo < 0.1:
        raise InputError("The picture is blank (one flat colour): draw or upload a digit.")
    ink = (ink - lo) / (hi - lo)
    mask = ink > 0.2
    frac = mask.mean()
    if frac < 0.0005 or mask.sum() < 3:
        raise InputError("There is almost no ink: draw a bigger digit.")
    if frac > 0.6:
        raise InputError("The picture is mostly ink: use a dark digit on light paper or a light digit on dark.")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    side = max(crop.shape)
    square = np.zeros((side, side), np.float32)   # pad to square so thickening sees the digit size
    t, l = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[t:t + crop.shape[0], l:l + crop.shape[1]] = crop
    if side > 80:  # thicken at 4x the final size: cheap, and fine enough
        square = np.asarray(Image.fromarray(square).resize((80, 80), Image.BILINEAR))
    square = _thicken(np.clip(square, 0, 1))
    small = Image.fromarray(np.round(square * 255).astype(np.uint8)).resize((20, 20), Image.LANCZOS)
    small = np.asarray(small).astype(np.float32)
    small = np.clip(small / max(small.max(), 1e-6), 0, 1)
    out = np.zeros((28, 28), np.float32)
    ys, xs = np.mgrid[0:20, 0:20]
    mass = small.sum()
    cy, cx = (ys * small).sum() / mass, (xs * small).sum() / mass
    top = int(np.clip(round(14 - cy), 0, 8))
    left = int(np.clip(round(14 - cx), 0, 8))
    out[top:top + 20, left:left + 20] = small
    return np.round(out * 255).astype(np.uint8)


def digit_from_sketch(value) -> np.ndarray:
    return to_mnist(ink_from_sketch(value))


def digit_from_upload(path_or_array) -> np.ndarray:
    if path_or_array is None:
        raise InputError("No image uploaded: upload a picture of a digit or click an example.")
    if isinstance(path_or_array, (str, bytes)) or hasattr(path_or_array, "__fspath__"):
        arr = open_image(path_or_array)
    elif isinstance(path_or_array, Image.Image):
        if path_or_array.width * path_or_array.height > MAX_PIXELS:
            raise _too_large(path_or_array.width, path_or_array.height, MAX_PIXELS)
        arr = np.asarray(path_or_array.convert("RGBA"))
    else:
        arr = check_array(path_or_array)
    return to_mnist(ink_from_array(arr))
