"""Class-scale statistics: the page's input (or no input) run with N_STATS samples at once, each stage's agreement
counted with n and a 95 % interval (model.metrics.wilson_interval); unconditional runs from the ex-post prior and
from N(0, I) on the same count."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from model.langevin import stage_title
from model.metrics import hits, one_digit, wilson_interval
from model.networks import observed_mask
from model.render import as_uint8

N_STATS = 50      # samples per statistics run
EVERY = 10        # a progress line every this many Langevin steps


def counts(digits: np.ndarray, modality: int | None, target: int | None = None) -> tuple[int, int]:
    """(agreeing, counted) of predicted digits [B, M] by the page's one measure (demo.view.agreement):
    generated images read as the input's digit, images read as the digit a caption names (``target``), or samples
    with one digit in every modality."""
    d = torch.from_numpy(np.asarray(digits))
    if target is not None:
        return int((d == target).sum()), d.numel()
    if modality is not None:
        h = hits(d, d[:, modality], observed_mask([modality], d.shape[1]))
        return int(h.sum()), h.numel()
    return int(one_digit(d).sum()), len(d)


def row(label: str, stage: str, k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"chain": label, "stage": stage_title(stage), "agree": f"{k}/{n}", "%": round(100 * k / max(n, 1), 1),
            "95 % interval": f"{100 * lo:.0f}–{100 * hi:.0f} %"}


def stage_rows(sampler, classify: Callable, x_obs, observed, modality: int | None, seed: int, kw: dict,
               prior: str = "ex-post", label: str = "", text=None,
               target: int | None = None) -> Iterator[tuple[str, list[dict] | None]]:
    """Run N_STATS samples (the input ``x_obs`` [1, M, ...] given in ``modality``, a typed caption's ids ``text``
    [1, L] with ``observed`` its mask [M + 1] and ``target`` the digit it names, or none) with the chain settings
    ``kw`` (by flat name) and yield (progress line, None) as it goes, then ("", the stages' rows)."""
    x = None if modality is None else x_obs.expand(N_STATS, -1, -1, -1, -1).to(sampler.device)
    obs = None if modality is None and text is None else observed.to(sampler.device)
    text = None if text is None else text.expand(N_STATS, -1)
    g = torch.Generator(sampler.device).manual_seed(int(seed))
    lasts, total = {}, sum(kw.get(k, 0) for k in ("latent_steps", "data_steps"))
    done = 0
    for frame in sampler.frames(x, obs, n=N_STATS, prior=prior, generator=g, every=EVERY, text=text, **kw):
        if frame.step > 0 and frame.stage in ("latent", "data"):
            done = frame.step + (kw.get("latent_steps", 0) if frame.stage == "data" else 0)
        lasts[frame.stage] = frame.x
        yield f"{label}{stage_title(frame.stage)}, step {frame.step} ({done} of about {total} steps)", None
    rows = []
    for stage, xs in lasts.items():
        pred = classify(as_uint8(xs))
        if pred is None:
            yield "", None
            return
        rows.append(row(label.rstrip(": "), stage, *counts(pred[0], modality, target)))
    yield "", rows


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["chain", "stage", "agree", "%", "95 % interval"])
