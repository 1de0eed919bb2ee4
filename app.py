"""Gradio demo: draw or upload a digit, pick its modality, and watch the MCMC revisions, stage by stage.

    python app.py [--port 7860] [--share] [--repo-id ORG/NAME --revision COMMIT] [--checkpoint DIR]

The page shows the stages of conditional generation side by side for the same samples (model/langevin.py:
the inference model's proposal decoded by the generator, the latent revision on the generator posterior,
the EBM's revisions), streamed frame by frame or stepped by hand; the chain itself lives in
model/player.py, the pictures in model/render.py. This file is the page's layout and its events.

Settings by environment (for Spaces and tests): MEBM_CHECKPOINT (bundled folder, default checkpoints/mebm),
MEBM_CLASSIFIER (default checkpoints/classifier), MEBM_REPO_ID, MEBM_REVISION, MEBM_FPS (most frames streamed per
second, default 40; 0 = no pacing), MEBM_CONCURRENCY (chains at once, default 64 batched, 32 unbatched),
MEBM_MAX_QUEUE (visitors waiting, default 64), MEBM_UPLOAD_MB (most megabytes of uploads kept in Gradio's temp
folder, default 200), MEBM_SWEEP_SECONDS (how often that folder is swept, default 10), MEBM_BATCH (1: every
visitor's Run advanced together, one batched model pass per Langevin step, default; 0: each Run computes its own
chain), MEBM_CLASS_FPS (frames per second for all the batched pages together, default 15), MEBM_SHOW_WAIT (1: the
page also says about how many seconds its chain has to go, default 0), MEBM_GPU_SECONDS (on ZeroGPU: the longest a
chain's GPU call may hold the GPU, default 20), HF_HUB_OFFLINE.

Everything a visitor sends is treated as hostile: pictures are size-checked from their headers before they
are decoded, a shared link's digit is inflated to its 784 bytes and no further, and a visitor's text is never
rendered as Markdown or HTML (a rejected value is quoted as plain text, and logged in one line).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import logging
import math
import numbers
import os
import re
import reprlib
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

import gradio as gr
from starlette.middleware import Middleware
from gradio.data_classes import ImageData
from model import render
from model.device import DeviceError, resolve_device
from model.config import ModelConfig
from model.data import to_modality
from model.hub import CheckpointUnavailable, load_model
from model.langevin import ChainDiverged, stage_title
from model.networks import observed_mask
from model.player import ChainPlayer, ChainSettings, Sessions
from model.preprocess import (InputError, check_drawing, decode_digit, digit_from_sketch, digit_from_upload,
                              encode_digit)
from model.sampler import Sampler
from model.serving import UploadSweeper, URLLengthLimit, trim_heap
from demo.scheduler import Scheduler, wait_text
from demo.zerogpu import gpu_function

log = logging.getLogger("mebm.app")
ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
SOURCES = ("draw", "upload", "unconditional", "link")
SOURCE_LABELS = [("Drawing", "draw"), ("Upload", "upload"), ("None (unconditional)", "unconditional"),
                 ("Shared link", "link")]
MODALITY_NAMES = ("plain ink", "orange blobs", "blue stripes", "yellow/green checks", "purple speckle", "sand rings")
LIMITS = {  # name: (min, max) accepted from the controls and from API callers
    "n_samples": (1, 16), "latent_steps": (0, 100), "latent_step_size": (0.0, 10.0),
    "data_steps": (0, 100), "data_step_size": (0.0, 100.0), "seed": (0, 2 ** 31 - 1)}
MAX_URL_BYTES = 16384       # a share link is under 2 kB; longer addresses get LONG_URL (HTTP 414)
LONG_URL = ("This address is too long to be a link to this demo (a shared run's link is under 2 kB): "
            "open the demo's address without it.")
TRIM_INTERVAL = 2.0        # seconds between hand-backs of freed heap to the OS (after runs, when visitors leave)
RUN_PRESSED = "**Run pressed:** starting the chain…"
STOPPED = "**Stopped.** The frames so far are kept: scrub through them, or press **Run** again."
NOT_RUN = "**Not run:** the message in the corner says why."
PLOT_INTERVAL = 0.25       # seconds between classifier read-outs (captions) while streaming
FIGURE_INTERVAL = 1.0      # seconds between plot and table updates while streaming
SESSIONS = Sessions(max_sessions=32)   # one chain per visitor; frames kept as uint8, at most 8 MB each
SESSION_STATES = 64        # visitors whose page state Gradio keeps (its default, 10,000, grows ~0.3 MB per visitor)
SERIES = ("mean", "lowest", "highest", "from noise")
CHAIN_COLORS = dict(zip(SERIES, ("#1f4e9c", "#7fa7e0", "#0b1f4a", "#d62728")))


def fps() -> float:
    try:
        return max(0.0, float(os.environ.get("MEBM_FPS", 40)))
    except ValueError:
        return 40.0


def chain_concurrency() -> int:
    """Chains computed at once (MEBM_CONCURRENCY, default 32, one torch thread each; 64 with the batched
    scheduler, whose runs mostly wait for their frames): a class shares the CPU, every visitor's chain starts
    within seconds and streams more slowly, instead of the last student waiting for all runs before theirs
    (benchmarks/load_app.py measures both)."""
    default = 64 if loaded().get("scheduler") is not None else 32
    try:
        return max(1, int(os.environ.get("MEBM_CONCURRENCY", default)))
    except ValueError:
        return default


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4
_MARKDOWN_ACTIVE = re.compile(r"([!-%'-/:<-@\[-`{-~])")   # ASCII punctuation but & and ; (HTML entities)


def shown(value) -> str:
    """A visitor's value quoted in a message: a short repr, HTML-escaped (Gradio shows error messages as
    HTML), whatever its size."""
    return html.escape(_REPR.repr(value), quote=False)


def as_text(message: str) -> str:
    """``message`` shown as plain text inside Markdown: no link, image, emphasis or HTML can come of it."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", message)


def rejected(message: str) -> gr.Error:
    """The error for a value the app refuses: one line in the server log, no traceback there."""
    log.info("rejected: %s", one_line(message))
    return gr.Error(message, print_exception=False)


def number_text(v: float) -> str:
    """A number as a person writes it: whole numbers in full (2147483648, not 2.14748e+09)."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e18 else f"{v:g}"


def one_line(message: str, limit: int = 240) -> str:
    """A message for the page: its first line, no absolute server path, at most ``limit`` characters."""
    line = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    line = line.replace(str(ROOT) + os.sep, "")
    line = re.sub(r"(?<![\w.])/(?:[\w.@+-]+/)+([\w.@+-]+)", r"\1", line)  # /abs/path/to/x -> x
    return line if len(line) <= limit else line[:limit - 1] + "…"


# ---------------------------------------------------------------- weights

_LOADED: dict = {}


def setup(checkpoint=None, repo_id=None, revision=None, classifier=None, offline=None, device="cpu") -> dict:
    """Load the model (Hub, Hub cache or bundled) onto ``device`` and the classifiers (CPU); never raises.
    Arguments default to the MEBM_* environment variables."""
    checkpoint = checkpoint or os.environ.get("MEBM_CHECKPOINT", str(ROOT / "checkpoints/mebm"))
    repo_id = repo_id or os.environ.get("MEBM_REPO_ID") or None
    revision = revision or os.environ.get("MEBM_REVISION") or None
    classifier = classifier or os.environ.get("MEBM_CLASSIFIER", str(ROOT / "checkpoints/classifier"))
    if _LOADED.get("scheduler") is not None:
        _LOADED["scheduler"].close()
    _LOADED.clear()
    try:
        lm = load_model(repo_id, revision, bundled=checkpoint, offline=offline)
        where = (f"{lm.location}" if lm.source != "bundled" else
                 "bundled checkpoint" + (" (checkpoints/mebm)" if Path(lm.location).resolve() ==
                                         (ROOT / "checkpoints/mebm").resolve() else ""))
        sampler = Sampler(lm.model, lm.prior, source=lm.describe(), notes=lm.notes).to(device)
        _LOADED.update(sampler=sampler, model=sampler.model, prior=sampler.prior, error=None,
                       weights=f"{lm.source}: {where}" if lm.source != "bundled" else where)
        log.info("weights in use: %s", lm.describe())
    except CheckpointUnavailable as e:
        _LOADED.update(sampler=None, model=None, weights=None, prior=None, error=one_line(e, 400))
        log.error("%s", one_line(e, 2000))
    # on ZeroGPU the chain's model work runs in a spaces.GPU function (None elsewhere: it runs here)
    _LOADED["chain_work"] = gpu_function(chain_work, _env_float("MEBM_GPU_SECONDS", 20))
    # elsewhere every visitor's Run is advanced together (the scheduler's thread starts with the first Run)
    batch = _LOADED["chain_work"] is None and _LOADED["sampler"] is not None and _env_float("MEBM_BATCH", 1) > 0
    _LOADED["scheduler"] = Scheduler(_LOADED["sampler"]) if batch else None
    try:
        from model.classifier import Classifiers
        _LOADED["classifier"] = Classifiers.from_pretrained(classifier, strict=True).eval()
    except Exception as e:
        _LOADED["classifier"] = None
        log.warning("classifier unavailable (%s): the read-out will say so", one_line(e))
    return _LOADED


def chain_work(x_obs, observed, settings: ChainSettings, start: int = 0, steps: int | None = None):
    """The chain's model work, from plain inputs to plain frames (on ZeroGPU: the function that holds the GPU,
    in a process of its own): the run's frames from frame number ``start`` on, all of them (``steps`` None) or as
    far as ``steps`` Langevin steps (``ChainPlayer.step``). The same seed replays the same frames before ``start``."""
    player = ChainPlayer(sampler_or_error(), x_obs, observed, settings)
    for _ in range(start):
        if player.next() is None:
            return
    yield from (player if steps is None else player.step(steps))


def player_frames(player, steps: int | None = None):
    """The next frames of ``player`` (all that are left, or ``steps`` Langevin steps), recorded in it: computed
    here, or on ZeroGPU by ``chain_work`` in its GPU call."""
    work = loaded().get("chain_work")
    if work is None:
        yield from (player if steps is None else player.step(steps))
        return
    start, got = (0 if player.current is None else player.current.index + 1), 0
    for snap in work(*player.inputs, player.settings, start, steps):
        player.record(snap)
        got += 1
        yield snap
    if steps is None or (got == 0 and start > 0):
        player.finished = True


def run_frames(player):
    """A Run's frames, as lists of the frames made since the page last looked (the page shows the last of each
    list: a busy page gets fewer frames, not a later end). With the scheduler (MEBM_BATCH), the chain is advanced
    with every other visitor's; the compare mode and ZeroGPU compute it alone. ``player.job``: the scheduler's job."""
    scheduler = loaded().get("scheduler")
    if scheduler is None or player.settings.compare:
        player.job = None
        yield from ([snap] for snap in player_frames(player))
        return
    job = player.job = scheduler.start().submit(player)
    last = time.perf_counter() - job.phase * frame_interval(player)   # the class's pages take turns
    try:
        for frames in job.stream():
            yield [player.take(f) for f in frames]
            last = _pace(last, frame_interval(player))   # then the frames made meanwhile come together
    finally:   # the end, Stop or a page gone: the chain leaves the scheduler at its next round
        scheduler.cancel(job)
        player.finished = True


def frame_interval(player) -> float:
    """Seconds between a page's frames: 1 / MEBM_FPS (0: no pacing), and, for a Run in the scheduler, the page's
    share of MEBM_CLASS_FPS (frames per second for all the pages together, default 15): thirty pages at once get
    fewer frames each (their chains end no later: a page shows the latest of the frames made meanwhile), so that
    drawing, PNG and read-outs do not slow the class's model pass. A visitor alone streams at MEBM_FPS."""
    if fps() <= 0:
        return 0.0
    scheduler = loaded().get("scheduler")
    busy = len(scheduler.jobs) if scheduler is not None and getattr(player, "job", None) is not None else 1
    return max(1.0 / fps(), (busy - 1) / max(_env_float("MEBM_CLASS_FPS", 15), 0.1))   # alone: MEBM_FPS


def time_left(player) -> str:
    """' · N steps to go': the steps this chain still needs (exact); with MEBM_SHOW_WAIT, also ', about T s', the
    scheduler's estimate from its measured rounds (off by default: not within 30 % under a class's load on a
    busy machine, docs/demo.md)."""
    job = getattr(player, "job", None)
    return "" if job is None else wait_text(job, loaded().get("scheduler"), frame_interval(player),
                                            _env_float("MEBM_SHOW_WAIT", 0) > 0)


def loaded() -> dict:
    return _LOADED if _LOADED else setup()


def sampler_or_error() -> Sampler:
    state = loaded()
    if state["sampler"] is None:
        raise gr.Error("No model checkpoint could be loaded, so nothing can be generated. "
                       + (state["error"] or ""), duration=None)
    return state["sampler"]


def model_config() -> ModelConfig:
    model = loaded().get("model")
    return model.config if model is not None else ModelConfig()


def weights_banner() -> str:
    state = loaded()
    if state["model"] is None:
        return f"**No model loaded.** {state['error']}"
    clf = "loaded" if state["classifier"] is not None else "unavailable (no read-out)"
    return f"Weights in use: **{state['weights']}** · classifier: {clf}"


# ---------------------------------------------------------------- controls that API callers can fill with anything

class _Checked:
    """The handlers check these values themselves (validate()), so that an API caller's "nan", "abc" or
    null gets the app's own message instead of Gradio's generic one."""

    def preprocess(self, payload):
        return payload

    def get_block_name(self):
        """The Gradio component's own name (number, slider, ...), so the page draws it as that component."""
        return next(c for c in type(self).__mro__ if c.__module__.startswith("gradio.")).__name__.lower()


class NumberBox(_Checked, gr.Number):
    pass


class Slider(_Checked, gr.Slider):
    pass


class Dropdown(_Checked, gr.Dropdown):
    pass


class Textbox(_Checked, gr.Textbox):
    pass


class Sketchpad(gr.Sketchpad):
    """gr.Sketchpad that checks a drawing's image count and size from the files' headers before Gradio
    decodes them (model.preprocess.check_drawing): a tiny request cannot make the server decode gigapixels."""

    def get_block_name(self):
        return "imageeditor"

    def preprocess(self, payload):
        data = payload
        if payload is not None and payload.id is not None:
            data = self.blob_storage.get(payload.id)
        if data is not None:
            try:
                check_drawing([getattr(f, "path", f) for f in (data.background, *(data.layers or []), data.composite)])
            except InputError as e:
                if payload.id is not None:
                    self.blob_storage.pop(payload.id, None)
                raise rejected(str(e)) from None
        return super().preprocess(payload)


class LiveImage(gr.Image):
    """An output image sent inside the message as a PNG data URL: streamed frames never touch the disk
    (nothing for Gradio's cache to keep), and the PNG is written fast (zlib level 1)."""

    def get_block_name(self):
        return "image"

    def postprocess(self, value):
        if isinstance(value, np.ndarray):
            return ImageData(url=data_url(render.png_bytes(value)), orig_name="frame.png")
        return super().postprocess(value)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


# ---------------------------------------------------------------- inputs

def _float(value) -> float | None:
    """A number from the page or an API caller (number or numeric string), None if it is none."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def _number(name, value, integer, limits=None):
    label = name.replace("_", " ")
    v = _float(value)
    if v is None:
        raise rejected(f"'{label}' must be a number (got {shown(value)}).")
    if not math.isfinite(v):
        raise rejected(f"'{label}' must be a finite number (got {shown(value)}).")
    lo, hi = limits or LIMITS[name]
    if not lo <= v <= hi:
        raise rejected(f"'{label}' must be between {number_text(lo)} and {number_text(hi)} (got {number_text(v)}).")
    if integer:
        if not v.is_integer():
            raise rejected(f"'{label}' must be a whole number (got {number_text(v)}).")
        return int(v)
    return v


def _flag(name, value) -> bool:
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise rejected(f"'{name}' must be true or false (got {shown(value)}).")


def validate(source, modality, n_samples, latent_steps, latent_step_size, data_steps, data_step_size,
             noise, seed, compare, n_modalities, ex_post_prior=True) -> tuple[str, int, ChainSettings]:
    """Check every control on the server (API callers can send anything); gr.Error says what is wrong."""
    if not isinstance(source, str) or source not in SOURCES:
        raise rejected(f"Input source must be one of {', '.join(SOURCES)} (got {shown(source)}).")
    m = _float(modality)
    if m is None or not m.is_integer() or not 0 <= m < n_modalities:
        raise rejected(f"Pick a modality between 0 and {n_modalities - 1} (got {shown(modality)}).")
    modality = int(m)
    settings = ChainSettings(_number("n_samples", n_samples, True), _number("latent_steps", latent_steps, True),
                             _number("latent_step_size", latent_step_size, False),
                             _number("data_steps", data_steps, True), _number("data_step_size", data_step_size, False),
                             _flag("noise", noise), _number("seed", seed, True), _flag("compare", compare),
                             _flag("ex_post_prior", ex_post_prior))
    return source, modality, settings


def input_digit(source, sketch, upload, link_digit) -> np.ndarray | None:
    """The 28x28 digit the model is given (None: unconditional); InputError says what is wrong."""
    if source == "unconditional":
        return None
    if source == "draw":
        return digit_from_sketch(sketch)
    if source == "link":
        return decode_digit(link_digit)
    return digit_from_upload(upload)


def model_input(digit, modality: int, seed: int, cfg: ModelConfig):
    """-> (x_obs [1, M, 3, 28, 28] or None, observed bool [M] or None, preview picture or None)."""
    if digit is None:
        return None, None, None
    M = cfg.n_modalities
    img = to_modality(digit, modality, M, seed=cfg.data_seed, rng=np.random.default_rng(seed))
    x_obs = torch.zeros(1, M, 3, 28, 28)
    x_obs[0, modality] = torch.from_numpy(img)
    grey = np.repeat(digit[None], 3, 0)
    preview = np.concatenate([grey, np.full((3, 28, 2), 128, np.uint8), np.round(img * 255).astype(np.uint8)], 2)
    return x_obs, observed_mask([modality], M), preview.transpose(1, 2, 0)


def new_player(source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
               data_step_size, noise, seed, compare, link_digit="", ex_post_prior=True):
    """Check the inputs and set up a chain for them (nothing computed yet)."""
    sampler = sampler_or_error()
    cfg = sampler.config
    source, modality, s = validate(source, modality, n_samples, latent_steps, latent_step_size, data_steps,
                                   data_step_size, noise, seed, compare, cfg.n_modalities, ex_post_prior)
    try:
        digit = input_digit(source, sketch, upload, link_digit)
    except InputError as e:
        raise rejected(str(e)) from None
    x_obs, observed, preview = model_input(digit, modality, s.seed, cfg)
    player = ChainPlayer(sampler, x_obs, observed, s)
    player.inputs = (x_obs, observed)   # as given (on the CPU): what chain_work needs to compute the same frames
    player.digit, player.modality, player.preview = digit, (modality if digit is not None else None), preview
    player.key = (source, modality, s, None if digit is None else hashlib.sha1(digit.tobytes()).hexdigest())
    return player


def upload_sweeper() -> UploadSweeper:
    """Gradio's temp folder kept within MEBM_UPLOAD_MB (default 200) and uploads within 10 minutes of age: Gradio
    6.31 leaves an empty file and a directory for every upload whose content it already has (each Run sends the
    drawing again), and anyone can upload files of up to 10 MB. Made right after the page is built: the files
    there then (the examples' copies, which the examples need) are kept. (Gradio's own delete_cache would
    delete those too.)"""
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    sweeper = UploadSweeper(root, int(_env_float("MEBM_UPLOAD_MB", 200) * 2 ** 20),
                            interval=max(_env_float("MEBM_SWEEP_SECONDS", 10), 0.1))
    sweeper.keep = {os.path.realpath(p) for p in sweeper.files()}
    return sweeper


def _env_float(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


def session_key(request) -> str:
    return getattr(request, "session_hash", None) or "local"


# ---------------------------------------------------------------- read-outs

def classify(x: np.ndarray):
    """Digits and confidences [B, M] of uint8 images, or None without a classifier."""
    clf = loaded().get("classifier")
    if clf is None:
        return None
    try:
        digits, conf = clf.predict(torch.from_numpy(x).float() / 255)
        return digits.numpy(), conf.numpy()
    except Exception as e:  # wrong shape (other M), ...: keep the demo running
        log.warning("classifier failed: %s", one_line(e))
        return None


def agreement(pred, observed: int | None) -> float | None:
    """Conditional: the share of generated images read as the input's digit. Unconditional: the share of
    samples whose modalities all read as one digit (joint coherence)."""
    if pred is None:
        return None
    digits, _ = pred
    if observed is not None:
        return float((np.delete(digits, observed, axis=1) == digits[:, observed:observed + 1]).mean())
    return float((digits == digits[:, :1]).all(axis=1).mean())


def readout_table(pred, observed: int | None, n_modalities: int) -> pd.DataFrame:
    if pred is None:
        return pd.DataFrame({"classifier": ["unavailable: no digit read-out"]})
    digits, conf = pred
    cols = {"sample": [str(b + 1) for b in range(len(digits))]}
    for m in range(n_modalities):
        name = f"m{m} (given)" if m == observed else f"m{m}"
        cols[name] = [f"{d} · {c:.0%}" for d, c in zip(digits[:, m], conf[:, m])]
    majority = [np.bincount(row, minlength=10).argmax() for row in digits]
    cols["agree"] = [f"{(row == d).sum()}/{n_modalities}" for row, d in zip(digits, majority)]
    return pd.DataFrame(cols)


def coherence_line(pred, observed: int | None) -> str:
    if pred is None:
        return "Classifier unavailable: no read-out."
    a = agreement(pred, observed)
    if observed is not None:
        return f"The input reads as **{int(pred[0][0, observed])}**; {a:.0%} of the generated images agree."
    return f"{a:.0%} of the samples show one digit in every modality."


def z_source(player) -> str:
    """Where an unconditional run's z came from ("" for a conditioned run: the inference model)."""
    if player.conditioned:
        return ""
    return "z from the ex-post prior" if player.prior is not None else "z ~ N(0, I)"


class View:
    """What the page shows of a player: the stage strip, its captions, plots and read-outs. Panels of
    finished stages and classifier calls are cached, so a frame costs one panel and one small PNG."""

    def __init__(self, player: ChainPlayer):
        self.p = player
        self.energy_rows, self.post_rows = [], []
        self._pred: dict[int, tuple] = {}

    def expected_stages(self) -> list[str]:
        p, s = self.p, self.p.settings
        want = ["proposal"] + (["latent"] if p.conditioned and s.latent_steps > 0 else [])
        if p.totals.get("ebm_latent"):
            want.append("ebm_latent")
        want.append("data")
        seen = p.stages
        return seen + [w for w in want if w not in seen]

    def pred(self, snap):
        if snap.index not in self._pred:
            self._pred[snap.index] = classify(snap.x)
        return self._pred[snap.index]

    def record(self, snap):
        """Plot rows of a new frame."""
        e = snap.energy
        self.energy_rows += [(snap.index, float(e.mean()), "mean", snap.stage), (snap.index, float(e.min()), "lowest",
                             snap.stage), (snap.index, float(e.max()), "highest", snap.stage)]
        if snap.noise_energy is not None:
            self.energy_rows.append((snap.index, snap.noise_energy, "from noise", snap.stage))
        if snap.log_posterior is not None:
            lp = snap.log_posterior
            self.post_rows += [(snap.index, float(lp.mean()), "mean", snap.stage),
                               (snap.index, float(lp.min()), "lowest", snap.stage),
                               (snap.index, float(lp.max()), "highest", snap.stage)]

    def lasts(self, upto=None) -> dict:
        """The last frame of each stage (``upto``: as the run stood at that frame)."""
        if upto is None:
            return dict(self.p.stage_last)
        out = {}
        for f in self.p.frames:
            if f.index <= upto.index:
                out[f.stage] = f
        out[upto.stage] = upto
        return out

    def strip(self, current, classify_now: bool, upto=None):
        """(strip picture, captions HTML) with ``current`` the running (or scrubbed) frame."""
        stages = self.expected_stages()
        lasts = self.lasts(upto)
        xs, caps = [], []
        B, M = self.p.settings.n_samples, self.p.model.config.n_modalities
        for st in stages:
            snap = lasts.get(st)
            xs.append(None if snap is None else snap.x)
            total = self.p.totals.get(st) or 0
            title = stage_title(st) + (f" · step {snap.step}/{total}" if snap is not None and st != "proposal" else "")
            if snap is None:
                caps.append((title, "not reached yet", st == (current.stage if current else None)))
                continue
            a = agreement(self.pred(snap), self.p.modality) if (classify_now or snap.index in self._pred) else None
            line = f"energy {snap.energy.mean():.3f}" + ("" if a is None else f" · agree {a:.0%}")
            caps.append((title, line, current is not None and st == current.stage))
        hl = stages.index(current.stage) if current is not None and current.stage in stages else None
        pic = render.stage_strip(xs, self.p.modality, (B, M), highlight=hl)
        return pic, captions_html(caps, B)

    def agreement_df(self) -> pd.DataFrame:
        rows = []
        for i, (st, snap) in enumerate(self.p.stage_last.items()):
            a = agreement(self.pred(snap), self.p.modality)
            if a is not None:   # numbered: the bars keep the stages' order
                rows.append((f"{i + 1}. {stage_title(st)}", 100 * a))
        return pd.DataFrame(rows, columns=["stage", "agreement"]).astype({"stage": "object", "agreement": "float64"})

    def plots(self):
        return (_long_df(self.energy_rows, "energy"), _long_df(self.post_rows, "log_posterior"),
                self.agreement_df())

    def noise_picture(self, snap):
        if snap.noise_x is None:
            return None
        return render.upscale(render.cells(snap.noise_x, self.p.modality, gap=1, by_modality=True), 1)


def captions_html(caps, B) -> str:
    """Stage titles and read-outs above the strip, each as wide as its panel (the picture scales evenly)."""
    cols = []
    for title, line, running in caps:
        cls = "cap running" if running else "cap"
        cols.append(f'<div class="{cls}" style="flex: {B * 29 + 1} 1 0"><b>{html.escape(title)}</b>'
                    f'<br>{html.escape(line)}</div>')
    return '<div class="caps">' + '<div class="capgap"></div>'.join(cols) + "</div>"


def _long_df(rows, value):
    """Long format for gr.LinePlot, typed even when empty (an untyped empty frame makes the x axis nominal)."""
    df = pd.DataFrame(rows, columns=["step", value, "chain", "stage"])
    return df.astype({"step": "int64", value: "float64", "chain": "object", "stage": "object"})


def share_link(player) -> str:
    """The query string that restores this run (the input travels as its 28x28 digit)."""
    s = player.settings
    q = {"m": player.modality if player.modality is not None else 0, "n": s.n_samples, "ls": s.latent_steps,
         "lss": f"{s.latent_step_size:g}", "ds": s.data_steps, "dss": f"{s.data_step_size:g}", "noise": int(s.noise),
         "seed": s.seed, "cmp": int(s.compare), "pp": int(s.ex_post_prior)}
    source = {"src": "unconditional"} if player.digit is None else {"src": "link", "d": encode_digit(player.digit)}
    q = source | q
    return "?" + urllib.parse.urlencode(q)


def share_html(player) -> str:
    link = share_link(player)
    return (f'<a id="share_link" href="{html.escape(link)}" target="_blank">Share this run</a> '
            f'<span class="hint">(a link with the input, the settings and the seed: same frames)</span>')


# ---------------------------------------------------------------- events

RUN_OUTPUTS = ("grid", "captions", "noise_grid", "input_preview", "energy_plot", "posterior_plot", "agreement_plot",
               "readout", "status", "scrub", "share")


def _pace(last_yield: float, interval: float) -> float:
    wait = last_yield + interval - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    return time.perf_counter()


def run_chain(source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
              data_step_size, noise, seed, compare, link_digit="", ex_post_prior=True, request: gr.Request = None):
    """Stream the run frame by frame: one tuple per frame in the order of RUN_OUTPUTS, gr.skip() where an
    output does not change. The chain is kept for this visitor (scrub, step on, downloads)."""
    player = new_player(source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
                        data_step_size, noise, seed, compare, link_digit, ex_post_prior)
    log.info("run: %s, modality %s, %d samples, seed %d", player.key[0], player.modality,
             player.settings.n_samples, player.settings.seed)
    SESSIONS.put(session_key(request), player)
    view = player.view = View(player)
    M = player.model.config.n_modalities
    interval = 1.0 / fps() if fps() > 0 else 0.0
    last_yield, last_plot, last_figs = 0.0, time.perf_counter(), time.perf_counter()
    skip = gr.skip()
    status, snap = "", None
    with player.lock:
        try:
            for snaps in run_frames(player):
                for snap in snaps:
                    view.record(snap)
                now = time.perf_counter()
                slow = now - last_plot >= PLOT_INTERVAL
                few = frame_interval(player) < PLOT_INTERVAL   # else a class: read-outs and plots at stage ends
                pic, caps = view.strip(snap, classify_now=slow and few)
                plots, readout = (skip, skip, skip), skip
                if slow:
                    last_plot = now
                # the figures and the table cost the browser most: once a second, and as a stage ends
                stage_end = any(s.step == (player.totals.get(s.stage) or 0) and s.index > 0 for s in snaps)
                if stage_end or (slow and few and now - last_figs >= FIGURE_INTERVAL):
                    last_figs = now
                    plots = tuple(gr.update(value=v, visible=True) for v in view.plots())
                    readout = gr.update(value=readout_table(view.pred(snap), player.modality, M), visible=True)
                noise_pic = view.noise_picture(snap) if player.settings.compare else None
                status = skip  # the captions carry the step; the status (Markdown) four times a second
                if slow or snap.index == 0 or stage_end:
                    status = (f"**{stage_title(snap.stage)}**, step {snap.step}/{player.totals.get(snap.stage) or 0}"
                              f" · mean energy {snap.energy.mean():.3f}" + time_left(player))
                last_yield = _pace(last_yield, interval)
                yield (pic, caps, noise_pic if noise_pic is not None else skip,
                       player.preview if snap.index == 0 else skip, *plots, readout, status, skip, skip)
            z = f", {z_source(player)}" if z_source(player) else ""
            status = f"**Done:** {snap.index + 1} frames{z}. " + coherence_line(view.pred(snap), player.modality)
        except ChainDiverged as e:
            status = f"**Stopped: {e}** The frames up to that point are kept: scrub through them."
            gr.Warning(str(e))
    trim_heap(TRIM_INTERVAL)
    if snap is None:
        raise gr.Error(status or "The chain produced no frame.")
    pic, caps = view.strip(None, classify_now=True)
    _pace(last_yield, interval)
    yield (pic, caps, skip, skip, *(gr.update(value=v, visible=True) for v in view.plots()),
           gr.update(value=readout_table(view.pred(snap), player.modality, M), visible=True), status,
           gr.update(minimum=0, maximum=max(len(player.frames) - 1, 1), value=len(player.frames) - 1, step=1,
                     interactive=True), share_html(player))


def _stepped(player, snaps, note=""):
    """Outputs of the step and reset events (in the order of RUN_OUTPUTS)."""
    view = player.view
    for snap in snaps:
        view.record(snap)
    snap = player.current
    pic, caps = view.strip(snap, classify_now=True)
    M = player.model.config.n_modalities
    if snap is None:
        status = "The chain produced no frame."
    elif player.finished and not snaps:
        status = ("**The chain has ended** (last step of the last stage). Press **Reset** to go back to the "
                  "proposal, or **Run** to stream it.")
    elif snap.index == 0:
        z = f" ({z_source(player)})" if z_source(player) else ""
        status = (f"**Step mode: the proposal{z}.** Mean energy {snap.energy.mean():.3f}. Press **Step** (key S) "
                  "for one Langevin step, **Step ×5** (Shift+S) for five.")
    else:
        moved = [s for s in snaps if s.update is not None]
        upd = math.sqrt(sum(s.update ** 2 for s in moved) / len(moved)) if moved else 0.0
        de = sum(s.energy_change for s in moved) if moved else 0.0
        steps = sum(1 for s in snaps if s.step > 0)
        status = (f"**{stage_title(snap.stage)}, step {snap.step}/{player.totals.get(snap.stage) or 0}** "
                  f"({steps} step{'s' if steps != 1 else ''}): the images moved by {upd:.4f} (RMS, pixels 0-1); "
                  f"mean energy {snap.energy.mean() - de:.3f} → {snap.energy.mean():.3f} (Δ {de:+.4f})."
                  + (" **Last step.**" if player.finished or _at_end(player) else ""))
    if note:
        status = note + " " + status
    plots = tuple(gr.update(value=v, visible=True) for v in view.plots())
    noise_pic = view.noise_picture(snap) if snap is not None and player.settings.compare else None
    return (pic, caps, noise_pic if noise_pic is not None else gr.skip(), player.preview, *plots,
            gr.update(value=readout_table(view.pred(snap), player.modality, M), visible=True) if snap else gr.skip(),
            status, gr.update(minimum=0, maximum=max(len(player.frames) - 1, 1), value=len(player.frames) - 1, step=1,
                              interactive=True), share_html(player))


def _at_end(player) -> bool:
    s = player.current
    return s is not None and s.stage == "data" and s.step == player.settings.data_steps


def step_chain(k, source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
               data_step_size, noise, seed, compare, link_digit="", ex_post_prior=True, request: gr.Request = None):
    """Step mode: advance this visitor's chain by k Langevin steps from where it is (the first press, or
    new inputs, start a chain and show its proposal)."""
    k = _number("steps_per_press", k, True, (1, 100))
    fresh = new_player(source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
                       data_step_size, noise, seed, compare, link_digit, ex_post_prior)
    key = session_key(request)
    player = SESSIONS.get(key)
    note = ""
    if player is None or player.key != fresh.key or getattr(player, "view", None) is None:
        note = "" if player is None else "*New chain (the input or the settings changed).*"
        player = fresh
        player.view = View(player)
        SESSIONS.put(key, player)
        k = 0
    else:
        fresh.close()
    if not player.lock.acquire(blocking=False):
        raise gr.Error("A run is streaming in this page: press Stop first, then Step.")
    try:
        snaps = list(player_frames(player, k if k > 0 else 1))  # k = 0: a new chain, show its proposal
        return _stepped(player, snaps, note)
    except ChainDiverged as e:
        return _stepped(player, [], f"**Stopped: {e}**")
    finally:
        player.lock.release()


def reset_chain(source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
                data_step_size, noise, seed, compare, link_digit="", ex_post_prior=True, request: gr.Request = None):
    """Back to the proposal: the same seed, so the same steps follow. (Named parameters: Gradio hands the
    visitor's request only to a parameter of that name, never through *args.)"""
    player = new_player(source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
                        data_step_size, noise, seed, compare, link_digit, ex_post_prior)
    player.view = View(player)
    SESSIONS.put(session_key(request), player)
    with player.lock:
        return _stepped(player, list(player_frames(player, 1)), "**Reset.**")


def scrub(index, request: gr.Request = None):
    """A kept frame of this visitor's last run (no recomputation): (strip, captions, noise picture)."""
    player = SESSIONS.get(session_key(request))
    if player is None or not player.frames:
        raise rejected("Nothing recorded yet: press Run first.")
    i = int(_number("frame", index, False, (-math.inf, math.inf)))
    snap = player.frames[min(max(i, 0), len(player.frames) - 1)]
    pic, caps = player.view.strip(snap, classify_now=True, upto=snap)
    noise_pic = player.view.noise_picture(snap)
    return pic, caps, noise_pic if noise_pic is not None else gr.skip()


def downloads(request: gr.Request = None):
    """The chain as an animated GIF and the stages as a PNG, as links in the page (no file on the server)."""
    player = SESSIONS.get(session_key(request))
    if player is None or not player.frames:
        raise rejected("Nothing recorded yet: press Run first.")
    view, obs = player.view, player.modality
    frames = [render.grid(f.x, f"{stage_title(f.stage)} · step {f.step}", obs, scale=2) for f in player.frames]
    gif = render.gif_bytes(frames)
    stages = [st for st in view.expected_stages() if st in player.stage_last]
    lasts = [player.stage_last[st] for st in stages]
    lines = [[f"energy {s.energy.mean():.3f}"] + ([f"agree {a:.0%}"] if (a := agreement(view.pred(s), obs)) is not None
                                                 else []) for s in lasts]
    png = render.png_bytes(render.labelled_strip([stage_title(st) for st in stages], [s.x for s in lasts], lines, obs),
                           level=6)
    return (f'<a download="mebm_chain_seed{player.settings.seed}.gif" href="{data_url(gif, "image/gif")}">'
            f'Chain as animated GIF ({len(gif) // 1024} kB)</a> · '
            f'<a download="mebm_stages_seed{player.settings.seed}.png" href="{data_url(png)}">'
            f'Stages as PNG ({len(png) // 1024} kB)</a>')


def forget(request: gr.Request = None):
    """The visitor left: drop their chain and frames at once, and hand the freed memory back."""
    SESSIONS.drop(session_key(request))
    trim_heap(TRIM_INTERVAL)


def restore(request: gr.Request = None):
    """Open a shared link: the query parameters set the input, the modality, the settings and the seed."""
    params = dict(getattr(request, "query_params", None) or {})
    n_out = 13
    if not params or not ({"src", "seed"} & set(params)):
        return (gr.skip(),) * n_out
    try:
        cfg = model_config()
        src = params.get("src", "unconditional")
        if src not in ("link", "unconditional"):
            raise ValueError(f"unknown input {shown(src)}")
        digit = params.get("d", "")
        if src == "link":
            decode_digit(digit)
        chains = cfg.chains
        _, m, s = validate(src, params.get("m", 0), params.get("n", default_samples(cfg)),
                           params.get("ls", chains.latent.steps), params.get("lss", chains.latent.step_size),
                           params.get("ds", chains.data.steps), params.get("dss", chains.data.step_size),
                           params.get("noise", "1"), params.get("seed", 0), params.get("cmp", "0"), cfg.n_modalities,
                           params.get("pp", "1"))
    except (gr.Error, InputError, ValueError) as e:
        msg = e.message if isinstance(e, gr.Error) else str(e)   # the visitor's values in it are HTML-escaped
        return (*(gr.skip(),) * (n_out - 1), f"**This shared link could not be restored:** {as_text(one_line(msg))}")
    has_prior = loaded().get("prior") is not None
    return (src, m, s.n_samples, s.latent_steps, s.latent_step_size, s.data_steps, s.data_step_size, s.noise, s.seed,
            s.compare, digit, s.ex_post_prior and has_prior,
            "**Shared run restored** (input, settings, seed): press **Run** to see the same frames.")


# ---------------------------------------------------------------- presets

def presets(cfg: ModelConfig) -> dict:
    """name -> (latent_steps, latent_step_size, data_steps, data_step_size, noise, what to watch)."""
    return {
        "Default": (cfg.chains.latent.steps, cfg.chains.latent.step_size, cfg.chains.data.steps,
                    cfg.chains.data.step_size, True,
                    "The proposal already shows the digit; the latent revision pulls every sample towards the "
                    "input, the data revision sharpens strokes and textures while the energy falls."),
        "Step size too large": (cfg.chains.latent.steps, 3.0, cfg.chains.data.steps, 30.0, True,
                                "Watch the latent chain leap off the posterior: it blows up within a few steps "
                                "and the run stops with a message."),
        "Step size too small": (cfg.chains.latent.steps, cfg.chains.latent.step_size / 100, cfg.chains.data.steps,
                                cfg.chains.data.step_size / 100, True,
                                "Watch nothing move: every frame equals the proposal and the energy curves stay flat."),
        "No latent revision": (0, cfg.chains.latent.step_size, cfg.chains.data.steps, cfg.chains.data.step_size, True,
                               "The proposal goes straight to the EBM: compare with Default how well the "
                               "samples match the input digit."),
    }


def apply_preset(name):
    table = presets(model_config())
    if name not in table:
        raise rejected(f"Unknown preset {shown(name)}; choose one of {', '.join(table)}.")
    ls, lss, ds, dss, noise, watch = table[name]
    return ls, lss, ds, dss, noise, f"**What to watch:** {watch}"


def default_stages(cfg: ModelConfig) -> list[str]:
    """The stages a default (conditional) run shows: the EBM latent revision when the checkpoint's
    conditional sampler runs it."""
    return ["proposal", "latent"] + (["ebm_latent"] if cfg.chains.ebm_latent_cond.steps > 0 else []) + ["data"]


def default_samples(cfg: ModelConfig) -> int:
    """Samples per run by default: as many as fit a 1280x720 projector at 3x per image (3 samples for three
    stages, 2 for four)."""
    return 3 if len(default_stages(cfg)) <= 3 else 2


def first_picture(cfg: ModelConfig, n: int | None = None):
    """The strip before the first run: blank panels under their stage names."""
    stages, n = default_stages(cfg), n or default_samples(cfg)
    pic = render.stage_strip([None] * len(stages), 0, (n, cfg.n_modalities))
    caps = captions_html([(stage_title(s), "press Run", False) for s in stages], n)
    return pic, caps


# ---------------------------------------------------------------- the page

EXPLANATION = r"""
### What you are watching

**Three networks, learned together.** A *generator* turns a latent code $z \sim \mathcal N(0, I)$ into
all five modalities at once (one decoder per modality, so they share the digit). An *inference model*
guesses $z$ from the modality you give it. An *energy-based model* (EBM) gives every tuple of images a
number, the **energy** $E(x)$: low for tuples that look like real data, high otherwise.

1. **Proposal.** The inference model reads your image and proposes a $z$; the generator decodes it.
   Fast, but only a first guess.
2. **Latent revision.** $z$ is nudged to explain your image better, by Langevin steps on the
   generator's posterior $p(z \mid x_{\text{given}}) \propto p(z)\, p(x_{\text{given}} \mid z)$.
   The **log-posterior** plot should rise.
3. **Data revision.** All images are nudged, pixel by pixel, down the EBM's energy, with your
   modality held fixed. The **energy** plot should fall.

**The Langevin update.** Each step moves the current state $u$ a little downhill on an energy $U$
and adds a little noise:
$$u \leftarrow u - \tfrac{s^2}{2}\,\nabla U(u) + n\,\xi, \qquad \xi \sim \mathcal N(0, I).$$
$s$ is the step size, $n$ the noise (switch it off to get plain gradient descent). Too large a step
overshoots and the chain blows up; too small a step and nothing moves: try the presets.

**Why start from the generator?** The right-hand grid runs the *same* number of EBM steps from random
noise. A few dozen steps are not enough to turn noise into digits: the generator's proposal puts the
EBM's chain where it can finish the job quickly. That is the point of learning them together.

**Unconditional samples** (input *None*). With no image to infer $z$ from, $z$ is drawn from a prior.
By default that is the **ex-post prior**: a Gaussian mixture fitted to the latents the inference model
gives the training set (the EBM's latent revision then uses its density as the prior term too). Draws
from $\mathcal N(0, I)$, the generator's own prior, often fall between the clusters the inference model
uses, where the decoders disagree on the digit: in the README's evaluation about 40 % of such samples
show one digit in every modality, against about 85 % with the ex-post prior. Untick it in Settings to compare.

The **classifier** read-out gives each image's digit as judged by a separate classifier per
modality: when the samples agree with your digit, the modalities are *coherent*.
"""
CSS = """
.gradio-container {max-width: 1500px !important; padding-top: 4px !important}
#grid img, #noise_grid img, #modalities img, #input_preview img {image-rendering: pixelated}
#grid img, #noise_grid img {object-fit: contain !important; width: 100% !important; height: 100% !important}
#grid {border: none; padding: 0 !important}
#title {margin: 0 !important} #title p {margin: 0 !important; font-size: 1.15em}
#status {font-size: 1.0em; min-height: 1.5em} #status p {margin: 0 !important}
#source .wrap {gap: 4px !important} #source label {padding: 2px 8px !important}
.caps {display: flex; gap: 0; font-size: 0.85em; line-height: 1.2; text-align: center}
.caps .cap {padding: 2px 4px; border-bottom: 3px solid transparent; overflow: hidden}
.caps .cap.running {border-bottom-color: #fac828}
.caps .capgap {flex: 4 1 0}
#buttons button {min-width: 0}
"""

PAGE_JS = """() => { let tries = 0; const pick = () => {
  const b = document.querySelector('#sketch button[aria-label=Brush]');
  if (b) { if (!b.classList.contains('highlight')) b.click(); } else if (tries++ < 50) setTimeout(pick, 200); };
  setTimeout(pick, 300);
  document.addEventListener('pointerdown', (e) => {   // drawing selects the "drawing" input, in the page
    if (!e.target.closest || !e.target.closest('#sketch canvas')) return;
    const r = document.querySelector('#source input[value=draw]');
    if (r && !r.checked) r.click(); }, true);
  document.addEventListener('keydown', (e) => {       // S: one step, Shift+S: five, R: reset to the proposal
    const t = e.target, tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || (t && t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const id = e.key === 's' ? 'step' : e.key === 'S' ? 'step5' : (e.key === 'r' || e.key === 'R') ? 'reset' : null;
    if (!id) return;
    e.preventDefault();
    document.querySelector('#' + id)?.click(); }); }"""


def example_paths() -> list[str]:
    return sorted(str(p) for p in ASSETS.glob("example_*.png"))


def modality_strip(cfg: ModelConfig) -> np.ndarray:
    """One digit in each modality, numbered: the look of each conditioning choice."""
    path = ASSETS / "digit_3.png"
    digit = np.asarray(Image.open(path).convert("L")) if path.exists() else np.zeros((28, 28), np.uint8)
    cells = np.stack([to_modality(digit, m, cfg.n_modalities, seed=cfg.data_seed, rng=np.random.default_rng(m))
                      for m in range(cfg.n_modalities)])[None]
    return render.grid(cells, "", None, scale=2)


def build_demo() -> gr.Blocks:
    cfg = model_config()
    M = cfg.n_modalities
    names = [MODALITY_NAMES[m] if m < len(MODALITY_NAMES) and M <= len(MODALITY_NAMES) else f"modality {m}"
             for m in range(M)]
    table = presets(cfg)
    pic0, caps0 = first_picture(cfg)
    prior = loaded().get("prior")
    prior_label = ("Unconditional: z ~ N(0, I) (this checkpoint has no ex-post prior)" if prior is None else
                   f"Unconditional: draw z from the ex-post prior (a {prior.n_components}-component mixture fitted to "
                   f"the inferred latents of the training set); off: N(0, I)")
    # uploads (each Run sends the drawing) are bounded by upload_sweeper; streamed frames never become files
    with gr.Blocks(title="Multimodal EBM: MCMC revision, step by step") as demo:
        gr.Markdown("**Multimodal EBM + VAE: watch the MCMC revisions, stage by stage** · keys: S = one step, "
                    "Shift+S = five, R = back to the proposal", elem_id="title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                source = gr.Radio(SOURCE_LABELS, value="draw", label="Input", elem_id="source")
                with gr.Tab("Draw"):
                    sketch = Sketchpad(type="numpy", canvas_size=(280, 280), elem_id="sketch", label="Draw a digit",
                                          brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                                          layers=False, transforms=(), height=330)
                with gr.Tab("Upload"):
                    upload = gr.File(label="Upload an image of a digit", file_types=["image"], type="filepath",
                                     elem_id="upload")
                    gr.Examples(example_paths(), inputs=[upload], label="Examples (MNIST test digits)",
                                cache_examples=False)
                with gr.Tab("Settings"):
                    preset = gr.Radio(list(table), value="Default", label="Classroom presets", elem_id="preset")
                    watch = gr.Markdown(f"**What to watch:** {table['Default'][5]}", elem_id="watch")
                    n_samples = Slider(*LIMITS["n_samples"], value=default_samples(cfg), step=1,
                                       label="Number of samples", elem_id="n_samples")
                    latent_steps = Slider(*LIMITS["latent_steps"], value=cfg.chains.latent.steps, step=1,
                                          label="Latent steps", elem_id="latent_steps")
                    latent_step_size = NumberBox(cfg.chains.latent.step_size, label="Latent step size",
                                                 elem_id="latent_step_size", minimum=LIMITS["latent_step_size"][0],
                                                 maximum=LIMITS["latent_step_size"][1])
                    data_steps = Slider(*LIMITS["data_steps"], value=cfg.chains.data.steps, step=1, label="Data steps",
                                        elem_id="data_steps")
                    data_step_size = NumberBox(cfg.chains.data.step_size, label="Data step size",
                                               elem_id="data_step_size", minimum=LIMITS["data_step_size"][0],
                                               maximum=LIMITS["data_step_size"][1])
                    noise = gr.Checkbox(True, label=f"Langevin noise on (latent {cfg.chains.latent.noise:g}, data "
                                                    f"{cfg.chains.data.noise:g})", elem_id="noise")
                    seed = NumberBox(0, label="Seed (same seed, same frames)", precision=0, elem_id="seed",
                                     minimum=LIMITS["seed"][0], maximum=LIMITS["seed"][1])
                    compare = gr.Checkbox(False, label="Also run the data steps from noise (below the grid; doubles "
                                                       "the work)", elem_id="compare")
                    ex_post_prior = gr.Checkbox(prior is not None, label=prior_label, interactive=prior is not None,
                                                elem_id="ex_post_prior")
                modality = Dropdown([(f"{m}: {n}", m) for m, n in enumerate(names)], value=0,
                                       label="Modality of your input", elem_id="modality")
                link_digit = Textbox("", visible=False, elem_id="link_digit")
            with gr.Column(scale=3, min_width=600):
                with gr.Row(elem_id="buttons"):
                    run_btn = gr.Button("Run", variant="primary", elem_id="run", scale=2)
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                    step_btn = gr.Button("Step", elem_id="step", scale=1)
                    step5_btn = gr.Button("Step ×5", elem_id="step5", scale=1)
                    reset_btn = gr.Button("Reset", elem_id="reset", scale=1)
                status = gr.Markdown("Draw a digit (or pick an example) and press **Run**, or **Step** through it.",
                                     elem_id="status")
                captions = gr.HTML(caps0, elem_id="captions")
                grid = LiveImage(pic0, show_label=False, elem_id="grid", interactive=False, height=450, format="png",
                                 buttons=["fullscreen"])
                gr.Markdown("Columns: samples. Rows: modalities 0-%d (your input's row framed in yellow, held fixed)."
                            % (M - 1), elem_id="legend")
        scrub_slider = Slider(0, 1, value=0, step=1, label="Scrub through the kept frames (after a run)",
                                 interactive=False, elem_id="scrub")
        with gr.Row():
            energy_plot = gr.LinePlot(None, x="step", y="energy", color="chain", title="EBM energy (lower: data-like)",
                                      x_title="frame", y_title="energy", color_map=CHAIN_COLORS, height=260,
                                      elem_id="energy_plot", visible=False)
            posterior_plot = gr.LinePlot(None, x="step", y="log_posterior", color="chain", title="log p(z | input)",
                                         x_title="frame", y_title="log-posterior", color_map=CHAIN_COLORS, height=260,
                                         elem_id="posterior_plot", visible=False)
            agreement_plot = gr.BarPlot(None, x="stage", y="agreement", title="Classifier agreement (%)",
                                        y_lim=[0, 100], x_title="stage", y_title="%", height=260, sort=None,
                                        elem_id="agreement_plot", visible=False)
        readout = gr.Dataframe(label="Classifier read-out: digit · confidence per image", elem_id="readout",
                               interactive=False, wrap=True, visible=False)
        with gr.Row():
            share = gr.HTML("", elem_id="share")
            get_downloads = gr.Button("Make the GIF and PNG downloads", elem_id="get_downloads", size="sm")
            links = gr.HTML("", elem_id="downloads")
        with gr.Accordion("Why start from the generator? The same data steps from noise (tick the box in Settings)",
                          open=False):
            noise_grid = LiveImage(None, show_label=False, elem_id="noise_grid", interactive=False, height=300,
                                   format="png", buttons=[])
        input_preview = LiveImage(None, label="What the model was given (the digit, and in your modality)",
                                  elem_id="input_preview", interactive=False, height=110, buttons=[])
        with gr.Accordion("The modalities, how it works, which weights", open=False):
            gr.Image(modality_strip(cfg), label="The modalities (same digit, each look)", elem_id="modalities",
                     interactive=False, height=110, buttons=[])
            gr.Markdown(EXPLANATION, latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                                      {"left": "$", "right": "$", "display": False}])
            banner = gr.Markdown(weights_banner(), elem_id="weights")

        chain_inputs = [source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
                        data_step_size, noise, seed, compare, link_digit, ex_post_prior]
        outputs = [grid, captions, noise_grid, input_preview, energy_plot, posterior_plot, agreement_plot, readout,
                   status, scrub_slider, share]
        # No .change/.input listener on the sketchpad: with one, Gradio 6.31's editor turns "realtime" and,
        # after every stroke, hands the next event a blob id whose images never reach the server (the
        # first Run after drawing then saw an empty canvas). Without it, every event uploads what the
        # canvas shows at the moment it fires. The switch to "drawing" happens in the page (PAGE_JS).
        # every event of the "chain" group declares the group's limit: Gradio lowers a group's limit to the
        # lowest one pushed into it, so one Step with the default limit would cut the runs at once to 4
        chain = dict(concurrency_id="chain", concurrency_limit=chain_concurrency())
        # in the page at once, before the server answers: the previous run's "Done" must not stand for this one
        pressed = f"() => {{ window.mebmStopped = false; return {json.dumps(RUN_PRESSED)}; }}"
        run_btn.click(None, None, status, js=pressed, queue=False, api_visibility="private")
        run_event = run_btn.click(run_chain, chain_inputs, outputs, api_name="run", show_progress="hidden",
                                  trigger_mode="always_last", **chain)
        # a refused input and a Stop both end the event as a failure: the status says which (not Gradio's "Error")
        run_event.failure(None, None, status, js=f"() => window.mebmStopped ? {json.dumps(STOPPED)} : "
                                                 f"{json.dumps(NOT_RUN)}", queue=False)
        stop_btn.click(None, None, status, js=f"() => {{ window.mebmStopped = true; return {json.dumps(STOPPED)}; }}",
                       cancels=[run_event])
        one, five = gr.Number(1, visible=False), gr.Number(5, visible=False)
        step_btn.click(step_chain, [one, *chain_inputs], outputs, api_name="step", show_progress="hidden",
                       trigger_mode="always_last", **chain)
        step5_btn.click(step_chain, [five, *chain_inputs], outputs, api_visibility="private", show_progress="hidden",
                        trigger_mode="always_last", **chain)
        reset_btn.click(reset_chain, chain_inputs, outputs, api_name="reset", show_progress="hidden", **chain)
        scrub_slider.release(scrub, scrub_slider, [grid, captions, noise_grid], api_name="scrub",
                             show_progress="hidden")
        scrub_slider.input(scrub, scrub_slider, [grid, captions, noise_grid], api_visibility="private",
                           show_progress="hidden", trigger_mode="always_last")
        get_downloads.click(downloads, None, links, api_name="downloads", **chain)
        preset.change(apply_preset, preset, [latent_steps, latent_step_size, data_steps, data_step_size, noise, watch],
                      api_name="preset")
        upload.change(None, upload, source, js="(f) => f ? 'upload' : 'draw'")
        demo.load(None, None, None, js=PAGE_JS)
        demo.load(restore, None, [source, modality, n_samples, latent_steps, latent_step_size, data_steps,
                                  data_step_size, noise, seed, compare, link_digit, ex_post_prior, status],
                  api_visibility="private")
        demo.load(weights_banner, None, banner, api_visibility="private")
        demo.unload(forget)
    return demo


def warm_up():
    """One tiny chain at start-up, so that the first visitor does not pay for lazy initialisation."""
    if loaded().get("model") is None:
        return
    try:
        for _ in run_chain("unconditional", None, None, 0, 1, 1, 0.03, 1, 1.0, True, 0, True, request=None):
            pass
        SESSIONS.drop("local")
    except Exception as e:  # never block start-up
        log.warning("warm-up failed: %s", one_line(e))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--share", action="store_true", help="a public gradio.live link (needs internet)")
    p.add_argument("--repo-id", default=None, help="Hub repo of the weights (or MEBM_REPO_ID)")
    p.add_argument("--revision", default=None, help="Hub revision, ideally a 40-hex commit (or MEBM_REVISION)")
    p.add_argument("--checkpoint", default=None, help="bundled weights folder (or MEBM_CHECKPOINT)")
    p.add_argument("--classifier", default=None, help="classifier folder (or MEBM_CLASSIFIER)")
    p.add_argument("--device", default=os.environ.get("MEBM_DEVICE", "auto"),
                   help="where the chains run: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps "
                        "(or MEBM_DEVICE; default auto)")
    p.add_argument("--max-queue", type=int, default=int(os.environ.get("MEBM_MAX_QUEUE", 64)),
                   help="most visitors waiting in the queue, set explicitly (ZeroGPU's default would be 1) "
                        "(or MEBM_MAX_QUEUE; default 64)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)  # one thread per chain; the queue runs two chains on a 2-core machine
    try:
        device = resolve_device(a.device)
    except DeviceError as e:
        p.exit(2, f"error: {e}\n")
    setup(a.checkpoint, a.repo_id, a.revision, a.classifier, device=device)
    warm_up()
    demo = build_demo()
    upload_sweeper().start()
    demo.queue(max_size=a.max_queue, default_concurrency_limit=4)
    demo.launch(server_name=a.host, server_port=a.port, share=a.share, **launch_options())


def launch_options() -> dict:
    """demo.launch's settings beyond the address: the look, the upload limit, the page states kept (Gradio
    keeps 10,000 by default, ~0.3 MB each: memory grew with every visitor) and the guard on long addresses."""
    return dict(css=CSS, theme=gr.themes.Default(text_size="lg"), max_file_size="10mb", footer_links=["api"],
                state_session_capacity=SESSION_STATES, max_threads=max(40, 2 * chain_concurrency()),
                app_kwargs={"middleware": [Middleware(URLLengthLimit, limit=MAX_URL_BYTES, message=LONG_URL)]})


if __name__ == "__main__":
    main()
