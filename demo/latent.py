"""The latent view: a fixed 2-D projection of z per checkpoint (the principal axes of the ex-post prior's component
means, weighted by the components' weights; without an ex-post prior, z's first two coordinates), the prior's
components (means and 1-sd ellipses) and each sample's path from its proposal through the latent revisions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from model.render import font

SAMPLE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                 "#7f7f7f")


@dataclass
class LatentView:
    """A projection z -> 2-D (``center``, ``axes`` [2, d]) and the prior's components seen through it."""

    center: np.ndarray
    axes: np.ndarray
    means: np.ndarray            # [K, 2]
    ellipses: list[np.ndarray]   # K closed outlines [P, 2]: each component's 1-sd ellipse
    weights: np.ndarray          # [K]
    what: str                    # the projection, in words

    def project(self, z) -> np.ndarray:
        """z [..., d] -> [..., 2] (float32)."""
        return ((np.asarray(z, np.float64) - self.center) @ self.axes.T).astype(np.float32)


def ellipse(mean2: np.ndarray, cov2: np.ndarray, points: int = 48) -> np.ndarray:
    """The 1-sd outline of N(mean2, cov2) in 2-D: [points + 1, 2], closed."""
    w, v = np.linalg.eigh(cov2)
    t = np.linspace(0, 2 * np.pi, points + 1)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    return mean2 + (circle * np.sqrt(np.clip(w, 0, None))) @ v.T


def latent_view(prior, dim: int) -> LatentView:
    """The checkpoint's fixed projection (deterministic: computed from the prior's parameters alone). ``prior``: a
    model.prior.GaussianMixture, or None (N(0, I): the first two coordinates, the unit circle)."""
    if prior is None or dim < 2:
        axes = np.eye(2, max(dim, 2))[:, :dim] if dim >= 2 else np.ones((2, dim))
        return LatentView(np.zeros(dim), axes, np.zeros((1, 2)), [ellipse(np.zeros(2), np.eye(2))], np.ones(1),
                          "axes: z's first two coordinates (no ex-post prior)\ngrey: N(0, I) at 1 sd")
    w = prior.weights.cpu().double().numpy()
    mu = prior.means.cpu().double().numpy()
    cov = prior.covariances.cpu().double().numpy()
    center = w @ mu
    spread = (w[:, None] * (mu - center)).T @ (mu - center)            # the weighted covariance of the means
    vals, vecs = np.linalg.eigh(spread)
    axes = vecs[:, ::-1][:, :2].T.copy()                                # the two principal axes
    axes *= np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])[:, None]   # a fixed sign: the largest entry > 0
    means = (mu - center) @ axes.T
    outlines = [ellipse(m, axes @ c @ axes.T) for m, c in zip(means, cov)]
    return LatentView(center, axes, means, outlines, w, f"axes: PCA of the ex-post prior's {len(w)} component means"
                                                        f" (weighted)\ngrey: its components at 1 sd (+: means)")


def picture(view: LatentView, paths: list[tuple[str, np.ndarray]], size: tuple[int, int] = (720, 540)) -> np.ndarray:
    """The view (RGB uint8): the components in grey, each sample's path (``paths``: (stage, points [B, 2]) per
    frame, in order) in its colour, a ring at its proposal and a dot where it is now. The axes are fixed by the
    components (a point beyond them is drawn at the edge); the components are drawn once per view."""
    base, px = _background(view, size)
    if not paths:
        return base.copy()
    img = Image.fromarray(base)
    d = ImageDraw.Draw(img)
    track = np.stack([px(p) for _, p in paths], 1)                        # [B, T, 2]
    for b, line in enumerate(track):
        color = SAMPLE_COLORS[b % len(SAMPLE_COLORS)]
        if len(line) > 1:
            d.line([tuple(q) for q in line], fill=color, width=3)
        x0, y0 = line[0]
        d.ellipse([x0 - 7, y0 - 7, x0 + 7, y0 + 7], outline=color, width=3)
        x1, y1 = line[-1]
        d.ellipse([x1 - 6, y1 - 6, x1 + 6, y1 + 6], fill=color)
    return np.asarray(img)


_BACKGROUNDS: dict[tuple, tuple] = {}


def _background(view: LatentView, size: tuple[int, int]):
    """(the components drawn, points -> pixels within the plot), once per view and size."""
    key = (id(view), size)
    if key in _BACKGROUNDS and _BACKGROUNDS[key][0] is view:
        return _BACKGROUNDS[key][1]
    W, H = size
    top, left, margin, bottom = 40, 16, 12, 52
    every = np.concatenate(view.ellipses)
    lo, hi = every.min(0), every.max(0)
    span = np.maximum(hi - lo, 1e-6) * 1.15
    mid = (lo + hi) / 2
    scale = min((W - left - 2 * margin) / span[0], (H - top - 2 * margin - bottom) / span[1])
    box_lo = np.array([left + margin, top + margin])
    box_hi = np.array([W - margin, H - margin - bottom])

    def px(p):
        p = np.asarray(p, np.float64)
        q = np.stack([left + margin + (W - left - 2 * margin) / 2 + (p[..., 0] - mid[0]) * scale,
                      top + margin + (H - top - 2 * margin - bottom) / 2 - (p[..., 1] - mid[1]) * scale], -1)
        return np.clip(np.nan_to_num(q, nan=0.0), box_lo, box_hi)

    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    strongest = view.weights.max()
    for outline, w in zip(view.ellipses, view.weights):
        grey = int(215 - 95 * w / strongest)
        d.line([tuple(q) for q in px(outline)], fill=(grey, grey, grey), width=2)
    for m in px(view.means):
        d.line([(m[0] - 4, m[1]), (m[0] + 4, m[1])], fill=(120, 120, 120), width=2)
        d.line([(m[0], m[1] - 4), (m[0], m[1] + 4)], fill=(120, 120, 120), width=2)
    # 20 and 18 px: 14 px or more where the page shows the picture 600 px wide
    d.text((8, 8), "z from above: ring = proposal, dot = now, line = its path", fill="black", font=font(20))
    d.multiline_text((8, H - bottom), view.what, fill=(90, 90, 90), font=font(18), spacing=4)
    out = (np.asarray(img), px)
    _BACKGROUNDS.clear()   # one view per process
    _BACKGROUNDS[key] = (view, out)
    return out
