"""What the page shows of one visitor's run: ``PageRun`` holds the chain (a model.player.ChainPlayer), what it
was given, and draws the stage strip, its captions, the plots and the read-outs. Panels of finished stages and
classifier calls are cached, so a frame costs one panel and one small PNG. ``Sent`` keeps what the page already
has, so that an unchanged figure is not drawn and sent again."""
from __future__ import annotations

import html
import threading
from typing import Callable

import numpy as np
import pandas as pd
import torch

from model import render
from model.langevin import stage_title
from model.metrics import hits, one_digit
from model.networks import observed_mask
from model.player import ChainPlayer

from . import texts
from .captions import caption_digit

MAX_GAIN = 100   # the "what changed" view amplifies a stage's change at most this much


def agreement(pred, observed: int | None, target: int | None = None) -> float | None:
    """Conditional: the share of generated images read as the input's digit. Unconditional: the share of
    samples whose modalities all read as one digit (joint coherence). ``target``: the digit a typed caption names
    (demo.captions.caption_digit): the share of the images (all generated) read as it. ``pred``: (digits,
    confidences) [B, M]."""
    if pred is None:
        return None
    digits = torch.from_numpy(np.asarray(pred[0]))
    if target is not None:
        return (digits == target).float().mean().item()
    if observed is not None:
        return hits(digits, digits[:, observed], observed_mask([observed], digits.shape[1])).mean().item()
    return one_digit(digits).float().mean().item()


def readout_table(pred, observed: int | None, n_modalities: int, target: int | None = None) -> pd.DataFrame:
    if pred is None:
        return pd.DataFrame({"classifier": ["unavailable: no digit read-out"]})
    digits, conf = pred
    cols = {"sample": [str(b + 1) for b in range(len(digits))]}
    for m in range(n_modalities):
        name = f"m{m} (given)" if m == observed else f"m{m}"
        cols[name] = [f"{d} · {c:.0%}" for d, c in zip(digits[:, m], conf[:, m])]
    if target is not None:     # the measure of agreement(): images read as the caption's digit
        cols["agree"] = [f"{(row == target).sum()}/{n_modalities}" for row in digits]
    elif observed is not None:   # generated images read as the input's digit
        cols["agree"] = [f"{(np.delete(row, observed) == row[observed]).sum()}/{n_modalities - 1}" for row in digits]
    else:                      # and, with no input, whether the sample shows one digit in every modality
        cols["agree"] = ["one digit" if (row == row[0]).all() else "mixed" for row in digits]
    return pd.DataFrame(cols)


def coherence_line(pred, observed: int | None, target: int | None = None) -> str:
    if pred is None:
        return "Classifier unavailable: no read-out."
    a = agreement(pred, observed, target)
    B, M = pred[0].shape
    if target is not None:
        return f"The caption names **{target}**; {round(a * B * M)} of the {B * M} images read as it ({a:.0%})."
    if observed is not None:
        n = B * (M - 1)
        return (f"The input reads as **{int(pred[0][0, observed])}**; {round(a * n)} of the {n} generated images "
                f"agree ({a:.0%}).")
    return f"{round(a * B)} of the {B} samples show one digit in every modality ({a:.0%})."


def captions_html(caps, B) -> str:
    """Stage titles and read-outs above the strip, each as wide as its panel (the picture scales evenly)."""
    cols = []
    for title, line, running in caps:
        cls = "cap running" if running else "cap"
        cols.append(f'<div class="{cls}" style="flex: {B * 29 + 1} 1 0"><b>{html.escape(title)}</b>'
                    f'<br>{html.escape(line)}</div>')
    return '<div class="caps">' + '<div class="capgap"></div>'.join(cols) + "</div>"


def descended(snap) -> float | None:
    """The mean over the samples of the quantity ``snap``'s stage descends: -log p(z | input) in the latent
    revision, U(z) in the EBM latent revision, the EBM energy in the data revision (None for the proposal)."""
    if snap.stage == "latent" and snap.log_posterior is not None:
        return float(-snap.log_posterior.mean())
    if snap.stage == "ebm_latent" and snap.log_posterior is not None:
        return float((snap.energy - snap.log_posterior).mean())   # model.langevin: log_posterior = E - U
    if snap.stage == "data":
        return float(snap.energy.mean())
    return None


def gain_for(largest: float) -> float:
    """The amplification of a change whose largest value is ``largest`` (pixels 0-1): a round number (1, 2, 5,
    10, 20, ...) that makes it nearly white, at most MAX_GAIN."""
    gain = 1.0
    for g in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if g <= MAX_GAIN and g * largest <= 1.0:
            gain = float(g)
    return gain


def long_df(rows, value):
    """Long format for gr.LinePlot, typed even when empty (an untyped empty frame makes the x axis nominal)."""
    df = pd.DataFrame(rows, columns=["step", value, "chain", "stage"])
    return df.astype({"step": "int64", value: "float64", "chain": "object", "stage": "object"})


class Sent:
    """What a visitor's page has been sent: the props each output shows (visible, title), kept from the visitor's
    runs before (Gradio makes a new component, with its page config, for every change of props: costly under a
    class's load), and a key of the value this run last sent of each output (an unchanged value is not sent
    again). Props yielded count as shown once ``delivered`` (Gradio took the update)."""

    def __init__(self, props: dict | None = None):
        self.props = {"reveal": {"visible": False}} if props is None else props   # a new page: as laid out
        self.keys: dict = {}
        self.pending: dict = {}

    def wants(self, name: str, key) -> bool:
        """Whether the value of ``name`` with this ``key`` is new to the page (then it counts as sent); a key of
        None: always."""
        if key is not None and name in self.keys and self.keys[name] == key:
            return False
        self.keys[name] = key
        return True

    def new_props(self, name: str, props: dict) -> bool:
        """Whether ``props`` differ from what the page shows of ``name`` (then they are to be sent)."""
        if self.props.get(name) == props:
            return False
        self.pending[name] = props
        return True

    def delivered(self):
        self.props.update(self.pending)
        self.pending.clear()


class PageRun:
    """One visitor's run: the chain, its input (``digit`` None: unconditional; ``modality`` the given one),
    ``x_obs``/``observed`` as given on the CPU (what a chain computed elsewhere needs), ``key`` (what makes two
    presses the same chain), ``job`` (the scheduler's, while it streams there), and the page's pictures of it."""

    def __init__(self, player: ChainPlayer, digit, modality, preview, key, x_obs, observed,
                 classify: Callable[[np.ndarray], tuple | None], project: Callable | None = None,
                 model: str = "images", text=None, caption: str = ""):
        self.player, self.digit, self.preview, self.key = player, digit, preview, key
        self.modality = modality if digit is not None else None
        self.x_obs, self.observed, self.classify = x_obs, observed, classify
        # the model chosen (demo.captions: "images" or "captions"); a typed caption: its ids [1, L] and its text
        self.model, self.text, self.caption = model, text, caption
        self.target = caption_digit(caption) if text is not None else None   # the digit the caption names, if one
        self.job = None
        self.energy_rows, self.post_rows, self.trace_rows = [], [], []
        self.project = project   # z [B, d] -> [B, 2]: the checkpoint's latent view (demo.latent), or None
        self.z_rows: list[tuple[str, np.ndarray]] = []   # (stage, projected z [B, 2]) per latent frame
        self.trace_start: dict[str, float] = {}
        self.shown = -1         # the index of the last frame the page was sent (Step after Stop goes on from there)
        self.stopped = False    # a streamed run ended by Stop (or the page leaving) before its end
        self.halt = threading.Event()   # Stop pressed: the streaming run ends at its next wait, woken from it
        self.sent = Sent()      # what the page has of this run's outputs (props carried over by the app)
        self._pred: dict[int, tuple] = {}

    # what Sessions needs of what it keeps
    def close(self):
        self.player.close()

    @property
    def kept_bytes(self) -> int:
        return self.player.kept_bytes

    @property
    def settings(self):
        return self.player.settings

    def z_source(self) -> str:
        """Where an unconditional run's z came from ("" for a conditioned run: the inference model)."""
        if self.player.conditioned:
            return ""
        return "z from the ex-post prior" if self.player.prior is not None else "z ~ N(0, I)"

    def expected_stages(self) -> list[str]:
        p, s = self.player, self.player.settings
        want = ["proposal"] + (["latent"] if p.conditioned and s.latent_steps > 0 else [])
        if p.totals.get("ebm_latent"):
            want.append("ebm_latent")
        want.append("data")
        seen = p.stages
        return seen + [w for w in want if w not in seen]

    def pred(self, snap):
        if snap.index not in self._pred:
            self._pred[snap.index] = self.classify(snap.x)
        return self._pred[snap.index]

    def record(self, snap):
        """Plot rows of a new frame."""
        e = snap.energy
        self.energy_rows += [(snap.index, float(e.mean()), "mean", snap.stage), (snap.index, float(e.min()), "lowest",
                             snap.stage), (snap.index, float(e.max()), "highest", snap.stage)]
        if snap.noise_energy is not None:
            self.energy_rows.append((snap.index, snap.noise_energy, "from noise", snap.stage))
        if snap.z is not None and self.project is not None:
            self.z_rows.append((snap.stage, self.project(snap.z)))
        v = descended(snap)
        if v is not None:
            start = self.trace_start.setdefault(snap.stage, v)
            self.trace_rows.append((snap.index, v - start, texts.TRACE_SERIES[snap.stage], snap.stage))
        if snap.log_posterior is not None:
            lp = snap.log_posterior
            self.post_rows += [(snap.index, float(lp.mean()), "mean", snap.stage),
                               (snap.index, float(lp.min()), "lowest", snap.stage),
                               (snap.index, float(lp.max()), "highest", snap.stage)]

    def lasts(self, upto=None) -> dict:
        """The last frame of each stage (``upto``: as the run stood at that frame)."""
        if upto is None:
            return dict(self.player.stage_last)
        out = {}
        for f in self.player.frames:
            if f.index <= upto.index:
                out[f.stage] = f
        out[upto.stage] = upto
        return out

    def strip(self, current, classify_now: bool, upto=None):
        """(strip picture, captions HTML) with ``current`` the running (or scrubbed) frame."""
        p = self.player
        stages = self.expected_stages()
        lasts = self.lasts(upto)
        xs, caps = [], []
        B, M = p.settings.n_samples, p.model.config.n_modalities
        for st in stages:
            snap = lasts.get(st)
            xs.append(None if snap is None else snap.x)
            total = p.totals.get(st) or 0
            title = stage_title(st) + (f" · step {snap.step}/{total}" if snap is not None and st != "proposal" else "")
            if snap is None:
                caps.append((title, "not reached yet", st == (current.stage if current else None)))
                continue
            a = (agreement(self.pred(snap), self.modality, self.target) if (classify_now or snap.index in self._pred)
                 else None)
            line = f"energy {snap.energy.mean():.3f}" + ("" if a is None else f" · agree {a:.0%}")
            caps.append((title, line, current is not None and st == current.stage))
        hl = stages.index(current.stage) if current is not None and current.stage in stages else None
        pic = render.stage_strip(xs, self.modality, (B, M), highlight=hl)
        return pic, captions_html(caps, B)

    def agreement_df(self) -> pd.DataFrame:
        rows = []
        for i, (st, snap) in enumerate(self.player.stage_last.items()):
            a = agreement(self.pred(snap), self.modality, self.target)
            if a is not None:   # numbered: the bars keep the stages' order
                rows.append((f"{i + 1}. {texts.SHORT.get(st, st)}", 100 * a))
        return pd.DataFrame(rows, columns=["stage", "agreement"]).astype({"stage": "object", "agreement": "float64"})

    def energy_df(self) -> pd.DataFrame:
        return long_df(self.energy_rows, "energy")

    def posterior_df(self) -> pd.DataFrame:
        return long_df(self.post_rows, "log_posterior")

    def plots(self):
        return self.energy_df(), self.posterior_df(), self.agreement_df()

    def trace(self) -> pd.DataFrame:
        """The change, since its stage began, of the quantity each stage descends (one series per stage)."""
        return long_df(self.trace_rows, "change")

    def changes(self, upto=None):
        """The "what changed" view: (strip, captions HTML, sentences). Each stage after the proposal shows how
        much every pixel moved from the stage before (|difference|, amplified; the captions state how much)."""
        p = self.player
        B, M = p.settings.n_samples, p.model.config.n_modalities
        lasts = self.lasts(upto)
        stages = self.expected_stages()
        xs, caps, words, prev = [], [], [], None
        for st in stages:
            snap = lasts.get(st)
            if snap is None or prev is None:
                xs.append(None)
                caps.append((stage_title(st), "the start" if snap is not None else "not reached yet", False))
                prev = snap if snap is not None else prev
                continue
            d = np.abs(snap.x.astype(np.float32) - prev.x.astype(np.float32)) / 255
            gain = gain_for(float(d.max()))
            xs.append(np.round(np.clip(d * gain, 0, 1) * 255).astype(np.uint8))
            caps.append((f"{stage_title(st)}: ×{gain:g}", f"white = {1 / gain:.3g} · mean {d.mean():.4f}", False))
            # said of a stage that has ended only: early in a stage every stage has barely moved yet (a page of a
            # class, which gets this sentence as the stage begins, said so beside a grid the stage then changed)
            if d.mean() < texts.BARELY and snap.step >= (p.totals.get(st) or 0):
                q = self.trace_start.get(st), descended(snap)
                moved = (f" while {texts.DESCENDS[st]} went {q[0]:.0f} → {q[1]:.0f}"
                         if None not in q and st in texts.DESCENDS else "")
                by = f"{d.mean():.4f}" if d.mean() >= 1e-4 else "less than 0.0001"
                words.append(f"The {stage_title(st)} barely changed the pictures ({by} per pixel on average, "
                             f"pixels 0-1){moved}.")
            prev = snap
        pic = render.stage_strip(xs, self.modality, (B, M))
        return pic, captions_html(caps, B), " ".join(words)

    def explain(self, snap, barely: str | None = None) -> str:
        """One or two plain sentences for the stage of ``snap``, what barely moved (``barely``: the sentences of
        ``changes(snap)`` when made already), and how to read the grid."""
        conditioned = self.player.conditioned
        says = texts.STAGE_SAYS.get(snap.stage, ("", ""))[0 if conditioned else 1] if snap is not None else ""
        if snap is not None and self.text is not None:   # a typed caption is the input
            unread = snap.stage == "latent" and self.player.model.config.text.latent_weight == 0
            says = texts.CAPTION_SAYS.get("latent_without_caption" if unread else snap.stage, says)
        return " ".join(t for t in (says, self.changes(snap)[2] if barely is None else barely) if t)

    def readout(self, snap) -> pd.DataFrame:
        return readout_table(self.pred(snap), self.modality, self.player.model.config.n_modalities, self.target)

    def noise_picture(self, snap):
        if snap is None or snap.noise_x is None:
            return None
        return render.upscale(render.cells(snap.noise_x, self.modality, gap=1, by_modality=True), 1)

    def coherence_line(self, snap) -> str:
        return coherence_line(self.pred(snap), self.modality, self.target)
