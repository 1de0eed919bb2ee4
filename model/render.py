"""Pictures of samples, pure numpy + PIL: sample grids (training, evaluation, the demo), the demo's stage
strip (proposal -> revisions side by side), labelled panels, text bands, PNG bytes and GIFs.

Images are [B, M, 3, 28, 28] tuples (rows: samples, columns: modalities), float in [0, 1] or uint8;
torch tensors are accepted (converted through numpy, torch is not imported here).
"""
from __future__ import annotations

import functools
import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 28
BACKGROUND = (40, 40, 40)
GIVEN = (250, 200, 40)   # frame of the observed (clamped) modality


def as_uint8(x) -> np.ndarray:
    """Images in [0, 1] (numpy or torch, any float) or uint8 -> uint8 numpy."""
    if hasattr(x, "detach"):  # torch: any device, any float dtype (bfloat16 has no numpy twin)
        x = x.detach().cpu()
        x = x.numpy() if str(x.dtype) == "torch.uint8" else x.float().numpy()
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def sample_grid(x) -> np.ndarray:
    """[B, M, 3, 28, 28] -> uint8 [B*28, M*28, 3], no gaps (training and evaluation sample sheets)."""
    x = as_uint8(x)
    b, m = x.shape[:2]
    return x.transpose(0, 3, 1, 4, 2).reshape(b * CELL, m * CELL, 3)


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4, fill: int = 255) -> np.ndarray:
    """Pictures of equal height next to each other with a gap of colour ``fill``."""
    h = panels[0].shape[0]
    out = []
    for i, p in enumerate(panels):
        if i:
            out.append(np.full((h, gap, 3), fill, np.uint8))
        out.append(p)
    return np.concatenate(out, 1)


def upscale(img: np.ndarray, scale: int) -> np.ndarray:
    return img if scale == 1 else np.repeat(np.repeat(img, scale, 0), scale, 1)


@functools.lru_cache(maxsize=16)
def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType
        return ImageFont.load_default()


def cells(x, observed: int | None = None, gap: int = 2, by_modality: bool = False) -> np.ndarray:
    """[B, M, 3, 28, 28] -> uint8 picture with gaps between cells, samples as rows (``by_modality``: as
    columns, one row per modality); the observed modality framed in yellow. ``x=None`` cells are blank."""
    x = as_uint8(x)
    if by_modality:
        x = x.swapaxes(0, 1)
    B, M = x.shape[:2]
    step = CELL + gap
    canvas = np.full((B * step + gap, M * step + gap, 3), BACKGROUND, np.uint8)
    if observed is not None:
        c0 = observed * step
        if by_modality:
            canvas[c0:c0 + step + gap, :] = GIVEN
        else:
            canvas[:, c0:c0 + step + gap] = GIVEN
    for b in range(B):
        for m in range(M):
            r, c = gap + b * step, gap + m * step
            canvas[r:r + CELL, c:c + CELL] = x[b, m].transpose(1, 2, 0)
    return canvas


def with_text(img: np.ndarray, lines: Sequence[str], size: int, color=(255, 255, 255), top: bool = True,
              background=BACKGROUND) -> np.ndarray:
    """A band of text lines above (or below) a picture, at least as wide as the text."""
    f = font(size)
    widths = [int(f.getlength(t)) for t in lines] or [0]
    band_h = len(lines) * (size + size // 3) + size // 3
    w = max(img.shape[1], max(widths) + size)
    band = Image.new("RGB", (w, band_h), background)
    d = ImageDraw.Draw(band)
    for i, t in enumerate(lines):
        d.text((size // 2, size // 4 + i * (size + size // 3)), t, fill=color, font=f)
    body = np.full((img.shape[0], w, 3), background, np.uint8)
    body[:, :img.shape[1]] = img
    parts = [np.asarray(band), body] if top else [body, np.asarray(band)]
    return np.concatenate(parts, 0)


def grid(x, title: str = "", observed: int | None = None, scale: int = 3, numbers: bool = True) -> np.ndarray:
    """The demo's grid: samples as rows, modalities as columns, cells drawn ``scale`` x, a title band,
    modality numbers above the columns."""
    img = upscale(cells(x, observed), scale)
    M = as_uint8(x).shape[1]
    if numbers:
        band = Image.new("RGB", (img.shape[1], 7 * scale), BACKGROUND)
        d = ImageDraw.Draw(band)
        for m in range(M):
            d.text(((2 + m * 30 + 11) * scale, 0), str(m), fill=(190, 190, 190), font=font(5 * scale))
        img = np.concatenate([np.asarray(band), img], 0)
    return with_text(img, [title], 6 * scale) if title else img


def stage_panel(title: str, x, lines: Sequence[str] = (), observed: int | None = None, scale: int = 3,
                highlight: bool = False, shape: tuple[int, int] | None = None) -> np.ndarray:
    """One stage of the strip: the samples as columns, one row per modality (numbered on the left), the
    stage's title above and its read-out below. ``x=None`` draws blank cells of ``shape`` (B, M)."""
    if x is None:
        B, M = shape
        x = np.full((B, M, 3, CELL, CELL), 70, np.uint8)
    img = upscale(cells(x, observed, by_modality=True), scale)
    M = as_uint8(x).shape[1]
    margin = Image.new("RGB", (7 * scale, img.shape[0]), BACKGROUND)
    d = ImageDraw.Draw(margin)
    for m in range(M):
        d.text((scale, (2 + m * 30 + 10) * scale), str(m), fill=(190, 190, 190), font=font(5 * scale))
    img = np.concatenate([np.asarray(margin), img], 1)
    img = with_text(img, list(lines) or [" "], 5 * scale, color=(225, 225, 225), top=False)
    img = with_text(img, [title], 6 * scale, color=(255, 255, 255) if highlight else (185, 185, 185))
    if highlight:
        img = img.copy()
        img[:2], img[-2:], img[:, :2], img[:, -2:] = GIVEN, GIVEN, GIVEN, GIVEN
    return img


def stage_strip(xs: Sequence, observed: int | None = None, shape: tuple[int, int] | None = None, scale: int = 1,
                gap: int = 4, highlight: int | None = None) -> np.ndarray:
    """Stages side by side for the same samples, cells only (the page writes the captions): each stage a
    panel with the samples as columns and one row per modality; ``None`` = a stage not reached yet
    (blank cells of ``shape`` (B, M)); ``highlight`` frames the running stage. Drawn at ``scale`` 1 the
    picture is small and fast to send; the page scales it up, pixelated."""
    panels = []
    for i, x in enumerate(xs):
        if x is None:
            x = np.full((*shape, 3, CELL, CELL), 70, np.uint8)
        p = cells(x, observed, gap=1, by_modality=True)
        if i == highlight:
            p = p.copy()
            p[0], p[-1], p[:, 0], p[:, -1] = (255, 255, 255), (255, 255, 255), (255, 255, 255), (255, 255, 255)
        panels.append(p)
    return upscale(side_by_side(panels, gap=gap, fill=20), scale)


def labelled_strip(titles: Sequence[str], xs: Sequence, lines: Sequence[Sequence[str]], observed: int | None = None,
                   scale: int = 3) -> np.ndarray:
    """The stage strip with its captions drawn in (for the PNG download)."""
    panels = [stage_panel(t, x, ls, observed, scale) for t, x, ls in zip(titles, xs, lines)]
    h = max(p.shape[0] for p in panels)
    panels = [np.concatenate([p, np.full((h - p.shape[0], p.shape[1], 3), BACKGROUND, np.uint8)], 0) for p in panels]
    return side_by_side(panels, gap=3 * scale, fill=20)


def png_bytes(img: np.ndarray, level: int = 1) -> bytes:
    """PNG at zlib level 1: 3x faster to write than the default, a little larger."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", compress_level=level)
    return buf.getvalue()


def gif_bytes(frames: Sequence[np.ndarray], ms: int = 60, last_ms: int = 1500) -> bytes:
    """An animated GIF of pictures of equal size, one palette (that of the last frame): fast, no flicker."""
    pics = [Image.fromarray(f) for f in frames]
    palette = pics[-1].quantize(255, dither=Image.Dither.NONE)
    pics = [p.quantize(palette=palette, dither=Image.Dither.NONE) for p in pics]
    buf = io.BytesIO()
    pics[0].save(buf, "GIF", save_all=True, append_images=pics[1:], duration=[ms] * (len(pics) - 1) + [last_ms],
                 loop=0, optimize=False)
    return buf.getvalue()
