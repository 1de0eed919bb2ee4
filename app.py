"""Gradio demo: draw or upload a digit, pick its modality, and watch the MCMC revisions, stage by stage.

    python app.py [--port 7860] [--share] [--repo-id ORG/NAME --revision COMMIT] [--checkpoint DIR]
                  [--caption-checkpoint DIR]

The page shows the stages of conditional generation side by side for the same samples (model/langevin.py:
the inference model's proposal decoded by the generator, the latent revision on the generator posterior,
the EBM's revisions), streamed frame by frame or stepped by hand; the chain itself lives in
model/player.py, the pictures in model/render.py, what the page shows of a run in demo/view.py, the checks of
a visitor's input in demo/inputs.py, the share link in demo/share.py, the words in demo/texts.py (with
demo/explanation.md, demo/page.css and demo/page.js). This file is the page's layout and its events.

Settings by environment (for Spaces and tests): MEBM_CHECKPOINT (bundled folder, default checkpoints/mebm),
MEBM_CAPTION_CHECKPOINT (the model with captions, offered as a second model; default mebm_captions beside the
bundled folder, when it exists),
MEBM_CLASSIFIER (default checkpoints/classifier), MEBM_REPO_ID, MEBM_REVISION, MEBM_FPS (most frames streamed per
second, default 40; 0 = no pacing), MEBM_CONCURRENCY (chains at once, default 64 batched, 32 unbatched),
MEBM_MAX_QUEUE (visitors waiting, default 64), MEBM_UPLOAD_MB (most megabytes of uploads kept in Gradio's temp
folder, default 200), MEBM_SWEEP_SECONDS (how often that folder is swept, default 10), MEBM_BATCH (1: every
visitor's Run advanced together, one batched model pass per Langevin step, default; 0: each Run computes its own
chain), MEBM_CLASS_FPS (frames per second for all the batched pages together, default 15), MEBM_SHOW_WAIT (1: the
page also says about how many seconds its run has to go, once the scheduler can tell; default 1; 0: steps only),
MEBM_GPU_SECONDS (on ZeroGPU: the longest a chain's GPU call may hold the GPU, default 20), HF_HUB_OFFLINE.

Everything a visitor sends is treated as hostile: pictures are size-checked from their headers before they
are decoded, a shared link's digit is inflated to its 784 bytes and no further, and a visitor's text is never
rendered as Markdown or HTML (a rejected value is quoted as plain text, and logged in one line).
"""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gradio as gr
from starlette.middleware import Middleware
from model import render
from model.device import DeviceError, resolve_device
from model.config import ModelConfig
from model.data import to_modality
from model.hub import CheckpointUnavailable, load_model
from model.langevin import ChainDiverged, stage_title
from model.player import ChainPlayer, ChainSettings, Sessions
from model.preprocess import InputError
from model.sampler import Sampler
from model.serving import UploadSweeper, URLLengthLimit, trim_heap
from demo import texts
from demo.energy import histogram, load_energy_check, sentence, where_from
from demo.latent import latent_view, picture
from demo.captions import (CAPTIONS, EXAMPLES, HELD_IN, IMAGES, MODEL_CHOICES, caption_checkpoint, caption_ids,
                           caption_mask, model_choice, stage_captions, vocabulary)
from demo.components import Dropdown, LiveImage, NumberBox, Page, Radio, Sketchpad, Slider, Textbox, data_url
from demo.inputs import (CONTROLS, LIMITS, ChainInputs, chain_event, flag, input_digit, model_input,
                         number, one_line, rejected, shown)
from demo.pace import SPEEDS, Paces
from demo.scheduler import Scheduler, finish_text, wait_text
from demo import stats
from demo.share import is_share_link, read_caption_link, read_share_link, share_html
from demo.view import PageRun, agreement, captions_html
from demo.zerogpu import gpu_function

log = logging.getLogger("mebm.app")
ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
SOURCE_LABELS = [("Drawing", "draw"), ("Upload", "upload"), ("Unconditional", "unconditional"),
                 ("Shared link", "link")]
CAPTION_SOURCES = SOURCE_LABELS + [("Caption (typed below)", "caption")]   # with the model with captions
MODALITY_NAMES = ("plain ink", "orange blobs", "blue stripes", "yellow/green checks", "purple speckle", "sand rings")
MAX_URL_BYTES = 16384       # a share link is under 2 kB; longer addresses get texts.LONG_URL (HTTP 414)
TRIM_INTERVAL = 2.0        # seconds between hand-backs of freed heap to the OS (after runs, when visitors leave)
LEAPING_STEP = 16          # the "too large" preset's latent step size, in the checkpoint's: large enough to leap off
#                            the posterior at once, small enough to run on for a class to watch (shipped: 0.48)
PLOT_INTERVAL = 0.25       # seconds between classifier read-outs (captions) while streaming
FIGURE_INTERVAL = 1.0      # seconds between plot and table updates while streaming
STOP_SLICE = 0.3           # seconds a run waits at most between two yields (Gradio ends it at a yield: Stop)
PACES = Paces()            # each visitor's pace: speed, pause, lesson mode (demo.pace)
STREAMING: dict = {}       # the run streaming for each visitor now (session key -> PageRun): Stop reaches it
SESSIONS = Sessions(max_sessions=32)   # one run per visitor (demo.view.PageRun); frames uint8, at most 8 MB each
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


# ---------------------------------------------------------------- weights

_LOADED: dict = {}


def setup(checkpoint=None, repo_id=None, revision=None, classifier=None, offline=None, device="cpu",
          caption_checkpoint=None) -> dict:
    """Load the model (Hub, Hub cache or bundled) onto ``device``, the model with captions when there is one
    (demo.captions.caption_checkpoint), and the classifiers (CPU); never raises. Arguments default to the MEBM_*
    environment variables."""
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
                       weights=f"{lm.source}: {where}" if lm.source != "bundled" else where,
                       energy_check=load_energy_check(lm.folder),
                       latent_view=latent_view(sampler.prior, sampler.config.latent_dim))
        log.info("weights in use: %s", lm.describe())
    except CheckpointUnavailable as e:
        _LOADED.update(sampler=None, model=None, weights=None, prior=None, error=one_line(e, 400), energy_check=None,
                       latent_view=None)
        log.error("%s", one_line(e, 2000))
    _LOADED["caption_sampler"] = load_caption_model(caption_checkpoint, checkpoint, device)
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


def load_caption_model(explicit, checkpoint, device) -> Sampler | None:
    """The model with the caption modality (demo.captions.caption_checkpoint), or None: absent, or unreadable
    (then the log says why in one line, and the page shows the five-image model alone)."""
    path = caption_checkpoint(explicit, checkpoint)
    if path is None:
        return None
    try:
        sampler = Sampler.from_pretrained(path, device=device)
        if sampler.tokenizer is None:
            raise ValueError("its config.json has no caption modality (no \"text\" block)")
        log.info("model with captions: %s", sampler.source)
        return sampler
    except Exception as e:
        log.warning("the model with captions in %s is not used: %s", path.name, one_line(e))
        return None


def chain_work(x_obs, observed, settings: ChainSettings, start: int = 0, steps: int | None = None,
               model: str = IMAGES, text=None):
    """The chain's model work, from plain inputs to plain frames (on ZeroGPU: the function that holds the GPU,
    in a process of its own): the run's frames from frame number ``start`` on, all of them (``steps`` None) or as
    far as ``steps`` Langevin steps (``ChainPlayer.step``). The same seed replays the same frames before ``start``.
    ``model``, ``text``: the model chosen and the typed caption's ids (demo.captions)."""
    player = ChainPlayer(sampler_or_error(model), x_obs, observed, settings, text=text)
    for _ in range(start):
        if player.next() is None:
            return
    yield from (player if steps is None else player.step(steps))


def player_frames(run, steps: int | None = None):
    """The next frames of ``run``'s chain (all that are left, or ``steps`` Langevin steps), recorded in it:
    computed here, or on ZeroGPU by ``chain_work`` in its GPU call."""
    player = run.player
    work = loaded().get("chain_work")
    if work is None:
        yield from (player if steps is None else player.step(steps))
        return
    start, got = (0 if player.current is None else player.current.index + 1), 0
    extra = {} if run.model == IMAGES else dict(model=run.model, text=run.text)   # the model with captions
    for snap in work(run.x_obs, run.observed, player.settings, start, steps, **extra):
        player.record(snap)
        got += 1
        yield snap
    if steps is None or (got == 0 and start > 0):
        player.finished = True


def run_frames(run):
    """A Run's frames, as lists of the frames made since the page last looked (the page shows the last of each
    list: a busy page gets fewer frames, not a later end). With the scheduler (MEBM_BATCH), the chain is advanced
    with every other visitor's; the compare mode and ZeroGPU compute it alone. ``run.job``: the scheduler's job."""
    player = run.player
    scheduler = loaded().get("scheduler")
    # chains of different models never share a batch: the scheduler holds the five-image model's; the model with
    # captions computes each run alone
    if scheduler is None or player.settings.compare or player.sampler is not scheduler.sampler:
        run.job = None
        for snap in player_frames(run):
            if run.halt.is_set():   # Stop: no frame after it
                return
            yield [snap]
        return
    job = run.job = scheduler.start().submit(player)
    if run.halt.is_set():   # Stop pressed as the chain was handed over (stop_run found no job yet)
        scheduler.cancel(job)
    last = time.perf_counter() - job.phase * frame_interval(run)   # the class's pages take turns
    try:
        for frames in job.stream():
            yield [player.take(f) for f in frames]
            # then the frames made meanwhile come together; the chain's end (or Stop: cancel) wakes the page at once
            last = _pace(last, frame_interval(run), job.ended)
            if run.halt.is_set():   # Stop during the wait (its stream has ended too): the frames made meanwhile
                return              # are not shown
    finally:   # the end, Stop or a page gone: the chain leaves the scheduler at its next round
        scheduler.cancel(job)
        player.finished = True


def frame_interval(run) -> float:
    """Seconds between a page's frames: 1 / MEBM_FPS (0: no pacing), and, for a Run in the scheduler, the page's
    share of MEBM_CLASS_FPS (frames per second for all the pages together, default 15): thirty pages at once get
    fewer frames each (their chains end no later: a page shows the latest of the frames made meanwhile), so that
    drawing, PNG and read-outs do not slow the class's model pass. A visitor alone streams at MEBM_FPS."""
    if fps() <= 0:
        return 0.0
    scheduler = loaded().get("scheduler")
    busy = len(scheduler.jobs) if scheduler is not None and getattr(run, "job", None) is not None else 1
    return max(1.0 / fps(), (busy - 1) / max(_env_float("MEBM_CLASS_FPS", 15), 0.1))   # alone: MEBM_FPS


def show_wait() -> bool:
    """Whether the page tells its wait in seconds (MEBM_SHOW_WAIT=0: steps and places only)."""
    return _env_float("MEBM_SHOW_WAIT", 1) > 0


def time_left(run, snap) -> str:
    """' · N steps to go': the Langevin steps after the frame ``snap`` that the page shows (exact; with a slowed
    run the chain itself may be further on), and, for a chain in the scheduler, its estimate of the seconds until
    the run ends, once it has one (demo.scheduler.wait_text; MEBM_SHOW_WAIT=0 leaves it out)."""
    totals, stages = run.player.totals, run.expected_stages()
    later = stages[stages.index(snap.stage) + 1:] if snap.stage in stages else []
    steps = (totals.get(snap.stage) or 0) - snap.step + sum(totals.get(st) or 0 for st in later)
    if run.job is not None and show_wait():
        return wait_text(run.job, loaded().get("scheduler"), steps)
    return f" · {steps} steps to go"


def loaded() -> dict:
    return _LOADED if _LOADED else setup()


def sampler_or_error(model: str = IMAGES) -> Sampler:
    """The sampler of the model chosen (demo.captions: IMAGES or CAPTIONS)."""
    state = loaded()
    if model == CAPTIONS:
        model_choice(model, state.get("caption_sampler") is not None)
        return state["caption_sampler"]
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


# ---------------------------------------------------------------- a visitor's run

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


def new_run(inputs: ChainInputs) -> PageRun:
    """Check the inputs and set up a chain for them (nothing computed yet)."""
    model = model_choice(inputs.model, loaded().get("caption_sampler") is not None)
    sampler = sampler_or_error(model)
    cfg = sampler.config
    source, modality, s = inputs.checked(cfg.n_modalities)
    text, caption = None, ""
    if source == "caption":
        if model != CAPTIONS:
            raise rejected("A typed caption needs the model with captions: choose '+ caption' under Model.")
        text, caption = caption_ids(inputs.caption, sampler.tokenizer), " ".join(inputs.caption.split())
    try:
        digit = input_digit(inputs, source)
    except InputError as e:
        raise rejected(str(e)) from None
    x_obs, observed, preview = model_input(digit, modality, s.seed, cfg)
    if text is not None:
        observed = caption_mask(cfg.n_modalities)
    key = (model, source, modality, s, None if digit is None else hashlib.sha1(digit.tobytes()).hexdigest(),
           None if text is None else tuple(text[0].tolist()))
    view = loaded().get("latent_view") if model == IMAGES else None   # the latent view is the five-image model's
    return PageRun(ChainPlayer(sampler, x_obs, observed, s, text=text), digit, modality, preview, key, x_obs, observed,
                   classify, None if view is None else view.project, model=model, text=text, caption=caption)


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


# ---------------------------------------------------------------- events

RUN_OUTPUTS = ("grid", "captions", "noise_grid", "input_preview", "energy_plot", "posterior_plot", "agreement_plot",
               "readout", "status", "scrub", "share", "explain", "trace_plot", "changes", "changes_caps", "reveal",
               "energy_hist", "latent_view", "stage_captions")


def outputs(**updates) -> tuple:
    """The updates of a chain event, by output name, as the tuple Gradio expects (in the order of RUN_OUTPUTS;
    gr.skip() for an output that does not change)."""
    unknown = set(updates) - set(RUN_OUTPUTS)
    assert not unknown, unknown
    if isinstance(updates.get("status"), str):
        updates["status"] = texts.status_html(updates["status"])
    return tuple(updates.get(name, gr.skip()) for name in RUN_OUTPUTS)


def _pace(last_yield: float, interval: float, halt: threading.Event | None = None) -> float:
    """Wait until ``interval`` after ``last_yield``, or until ``halt`` is set (Stop); returns the time it ended."""
    wait = last_yield + interval - time.perf_counter()
    if wait > 0:
        if halt is None:
            time.sleep(wait)
        else:
            halt.wait(wait)
    return time.perf_counter()


def _pace_awake(last_yield: float, interval: float, beat, halt: threading.Event):
    """``_pace`` that yields ``beat()`` every STOP_SLICE seconds while it waits, and returns the time it ended (at
    once when ``halt`` is set: Stop). Gradio's own cancel of the event closes a generator only when it yields, so a
    run in slow motion still ends at that cancel within STOP_SLICE. (Not used for a class's shared frame rate:
    thirty to sixty pages sending empty updates every STOP_SLICE cost the class more than it gained; see
    docs/demo.md. The page's Stop wakes the run itself: ``stop_run``.)"""
    while True:
        wait = last_yield + interval - time.perf_counter()
        if wait <= 0 or halt.wait(min(wait, STOP_SLICE)):
            return time.perf_counter()
        if last_yield + interval - time.perf_counter() > 0:
            yield beat()


def agreement_title(conditioned: bool, n: int, M: int, target: int | None = None) -> str:
    """The agreement plot's title: its one measure (demo.view.agreement) and how many images it counts
    (``target``: the digit a typed caption names)."""
    if target is not None:
        return f"Images read as the caption's {target} (%, n = {n * M})"
    if conditioned:
        return f"Images agreeing with the input (%, n = {n * (M - 1)})"
    return f"Samples with one digit in all rows (%, n = {n})"


def changed(run, name: str, key, make, **props) -> dict:
    """{name: its update} where the page lacks it: the value ``make()``, unless ``key`` says it is the one this run
    sent last (None: send it anyway); with ``props`` (visible, title) only where the page does not show them yet:
    for a change of props Gradio builds a new component and its page config (a few ms each, on its event loop)."""
    if not run.sent.wants(name, key):
        return {}
    value = make()
    return {name: gr.update(value=value, **props) if run.sent.new_props(name, props) else value}


def figures(run, snap) -> dict:
    """The plots, the read-out table, the "what changed" view and the latent view, as they stand at ``snap``: those
    that changed since this run last sent them."""
    conditioned, n, M = run.player.conditioned, run.settings.n_samples, run.player.model.config.n_modalities
    stages = tuple(s.index for s in run.player.stage_last.values())
    out = changed(run, "energy_plot", len(run.energy_rows), run.energy_df, visible=True)
    out |= changed(run, "posterior_plot", len(run.post_rows), run.posterior_df, visible=True,
                   title="log p(z | input)" if conditioned else "log p(z) (no input)")
    out |= changed(run, "agreement_plot", stages, run.agreement_df, visible=True,
                   title=agreement_title(run.modality is not None, n, M, run.target))
    out |= changed(run, "readout", snap.index, lambda: run.readout(snap), visible=True)
    out |= changed(run, "trace_plot", len(run.trace_rows), run.trace, visible=True)
    if run.sent.wants("changes", snap.index):
        pic, caps, barely = run.changes(snap)
        out |= dict(changes=pic, changes_caps=caps, explain=run.explain(snap, barely))
    view = loaded().get("latent_view")
    if view is not None and run.model == IMAGES:   # the view and its axes are the five-image model's
        out |= changed(run, "latent_view", len(run.z_rows), lambda: picture(view, run.z_rows), visible=True)
    return out


def reveal_button(run, visible: bool) -> dict:
    """The lesson's Reveal button shown or hidden, where the page does not show it so already."""
    return {"reveal": gr.update(visible=visible)} if run.sent.new_props("reveal", {"visible": visible}) else {}


def keep_run(key: str, run):
    """``run`` as the visitor's current one, its page's props (what is visible, the titles) carried over from the
    visitor's run before."""
    old = SESSIONS.get(key)
    if old is not None and old is not run:
        run.sent.props = old.sent.props
    SESSIONS.put(key, run)


def energy_histogram(snap=None, run=None):
    """The shipped energy check's histogram, with the final energies of ``snap`` (a run's last frame) marked
    (gr.skip() when these weights have no check, or ``run`` is of the model with captions, whose energies it does
    not measure)."""
    check = loaded().get("energy_check")
    if check is None or (run is not None and run.model != IMAGES):
        return gr.skip()
    return histogram(check, None if snap is None else snap.energy)


def scrub_range(run) -> dict:
    """The scrub slider at the last kept frame, its range set where it changed."""
    n = len(run.player.frames)
    return changed(run, "scrub", None, lambda: n - 1, minimum=0, maximum=max(n - 1, 1), step=1, interactive=True)


@chain_event()
def run_chain(inputs: ChainInputs, request: gr.Request = None):
    """Stream the run frame by frame: one tuple per frame in the order of RUN_OUTPUTS, gr.skip() where an
    output does not change. The run is kept for this visitor (scrub, step on, downloads). The visitor's pace
    (demo.pace: speed, pause, lesson mode) is read at every frame."""
    run = new_run(inputs)
    player = run.player
    log.info("run: %s, modality %s, %d samples, seed %d", run.key[0], run.modality, player.settings.n_samples,
             player.settings.seed)
    key = session_key(request)
    keep_run(key, run)
    STREAMING[key] = run   # what the page's Stop reaches (stop_run)
    pace = PACES.get(key)
    server_interval = 1.0 / fps() if fps() > 0 else 0.0
    last_yield, last_plot, last_figs = 0.0, time.perf_counter(), time.perf_counter()
    status, snap, shown_stage, preview_sent = "", None, None, False
    timed = False   # the page sent its closing message: its finish is timed for the estimates
    try:
        with player.lock:
            try:
                for snaps in run_frames(run):
                    for n, snap in enumerate(snaps):
                        if run.halt.is_set():
                            break
                        run.record(snap)
                        last_of_look = n == len(snaps) - 1
                        if not last_of_look and not pace.every_frame():
                            continue   # a busy page shows the latest of the frames made meanwhile
                        if (run.job is not None and run.job.is_last(snap) and preview_sent
                                and snap.stage == shown_stage and not pace.every_frame()):
                            break   # the chain's last frame: the closing message shows it (pages finish sooner)
                        if pace.lesson and shown_stage is not None and snap.stage != shown_stage:
                            pace.ask()   # a stage boundary: the question first, the new stage once revealed
                            yield outputs(explain=texts.question(snap.stage, question_row(run), player.conditioned),
                                          status=f"**Before the {stage_title(snap.stage)}.** " + texts.REVEAL_HINT,
                                          **reveal_button(run, True))
                            run.sent.delivered()
                        yield from held(pace, run.halt)
                        now = time.perf_counter()
                        slow = now - last_plot >= PLOT_INTERVAL
                        few = frame_interval(run) < PLOT_INTERVAL   # else a class: read-outs and plots at stage ends
                        # a frame made before the latest (slow motion, lessons): the grid as the run stood then
                        pic, caps = run.strip(snap, classify_now=slow and few, upto=None if last_of_look else snap)
                        update = dict(grid=pic, captions=caps)   # the status (and its estimate): as it is shown
                        if run.model == CAPTIONS:
                            update["stage_captions"] = stage_captions(run, None if last_of_look else snap)
                        if slow:
                            last_plot = now
                        # the figures and the table cost the browser most: once a second, and as a stage ends
                        # (a stage that ended in the frames this look skipped counts too); a page of a class (not few)
                        # gets them with its closing message only (in a lesson, at stage ends too): thirty pages drawing
                        # them as their stage ended stalled the class's rounds for about two seconds
                        stage_end = any(s.step == (player.totals.get(s.stage) or 0) and s.index > 0
                                        for s in (snaps if last_of_look and not pace.every_frame() else [snap]))
                        if ((stage_end and (few or pace.lesson))
                                or (slow and few and now - last_figs >= FIGURE_INTERVAL)):
                            last_figs = now
                            update |= figures(run, snap)
                        if player.settings.compare and snap.noise_x is not None:
                            update["noise_grid"] = run.noise_picture(snap)
                        if snaps[0].index == 0 and (n == 0 or last_of_look) and not preview_sent:
                            update["input_preview"] = run.preview   # the first look (under load: several frames)
                            preview_sent = True
                        if snap.stage != shown_stage:   # the sentence beside the grid follows the running stage
                            shown_stage = snap.stage
                            if "explain" not in update:   # (figures of this frame made it already)
                                update["explain"] = run.explain(snap)
                            update |= reveal_button(run, False)
                        last_yield = yield from _pace_awake(last_yield, max(server_interval, pace.interval()), outputs,
                                                            run.halt)
                        # paused while this frame waited its turn: not shown until resumed
                        yield from held(pace, run.halt)
                        if run.halt.is_set():   # Stop during the wait: this frame is not shown
                            break
                        # its estimate counts from now, as it is shown (a page of a class waits up to seconds for
                        # its turn: an estimate made before the wait told that much too long)
                        update["status"] = streaming_status(run, snap)
                        yield outputs(**update)
                        run.shown = snap.index   # taken by Gradio (a Stop during the yield leaves the frame before)
                        run.sent.delivered()
                run.stopped = run.halt.is_set()   # Stop: Step goes on from the last frame the page showed
                z = f", {run.z_source()}" if run.z_source() else ""
                status = texts.STOPPED if run.stopped else (f"**Done:** {snap.index + 1} frames{z}. "
                                                            + run.coherence_line(snap))
            except ChainDiverged as e:
                # in the status line, where the stage's step was (a toast would cover the buttons)
                status = f"**Stopped: {e}** The frames up to that point are kept: scrub through them."
            except GeneratorExit:   # Gradio's cancel (or the page closed): as Stop
                run.stopped = True
                raise
            finally:
                if STREAMING.get(key) is run:
                    del STREAMING[key]
        trim_heap(TRIM_INTERVAL)
        if run.stopped:   # the page keeps what it shows (the scrub slider's range as the frames shown set it)
            yield outputs(status=status)
            return
        if snap is None:
            raise gr.Error(status or "The chain produced no frame.")
        scheduler = loaded().get("scheduler")
        if run.job is not None and scheduler is not None:
            # the pages ending together finish one at a time, each told its place (a page of thirty waits seconds)
            waiting = finish_text(run.job, scheduler, show_wait())
            if waiting:
                yield outputs(status=f"**Finishing:** {waiting}.")
            scheduler.finish_turn(run.job)
        pic, caps = run.strip(None, classify_now=True)
        _pace(last_yield, server_interval)
        run.sent.keys.clear()   # the last message carries every figure: the browser keeps only what it brings
        yield outputs(grid=pic, captions=caps, **figures(run, snap), status=status, **scrub_range(run),
                      share=share_html(run), **reveal_button(run, False), energy_hist=energy_histogram(snap, run),
                      **caption_update(run))
        run.sent.delivered()
        timed = True
    finally:   # every way out (Stop, an error, the page closed): the scheduler stops waiting for this page
        scheduler = loaded().get("scheduler")
        if run.job is not None and scheduler is not None:
            scheduler.page_finished(run.job, timed)


async def stop_run(request: gr.Request = None):
    """The page's Stop, unqueued: the run streaming for this visitor ends at once, woken from its wait for the next
    frame (Gradio's cancel of the event, which the page sends too, closes a generator only when it yields, and a
    page of a class waits seconds between its frames); its chain leaves the scheduler at the next round, the other
    visitors' chains go on. The page then shows what it showed, and Step goes on from its last frame."""
    run = STREAMING.get(session_key(request))
    if run is None:
        return
    run.halt.set()
    scheduler = loaded().get("scheduler")
    if run.job is not None and scheduler is not None:
        scheduler.cancel(run.job)


def streaming_status(run, snap) -> str:
    """The status line while a run streams: the same stage and step as the running stage's caption."""
    total = run.player.totals.get(snap.stage) or 0
    return (f"**{stage_title(snap.stage)}**, step {snap.step}/{total} · mean energy {snap.energy.mean():.3f}"
            + time_left(run, snap))


def held(pace, halt: threading.Event):
    """While the visitor's pace holds the run (paused, or a lesson question not yet revealed) and Stop (``halt``)
    was not pressed: empty updates twice a second, so that Gradio's own cancel still ends the run at once."""
    while pace.held() and not halt.wait(0.5):
        yield outputs()


def question_row(run) -> str:
    """The modality row a lesson question asks about: one that is generated (not the input's)."""
    names = modality_names(run.player.model.config)
    m = 2 % len(names) if run.modality is None or len(names) < 2 else (run.modality + 2) % len(names)
    return names[m]


def stepped(run, snaps, note=""):
    """Outputs of the step and reset events (in the order of RUN_OUTPUTS)."""
    player = run.player
    for snap in snaps:
        run.record(snap)
    snap = player.current
    pic, caps = run.strip(snap, classify_now=True)
    if snap is None:
        status = "The chain produced no frame."
    elif player.finished and not snaps:
        status = texts.CHAIN_ENDED
    elif snap.index == 0:
        z = f" ({run.z_source()})" if run.z_source() else ""
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
    run.shown = snap.index if snap is not None else -1
    update = dict(grid=pic, captions=caps, input_preview=run.preview, status=(note + " " + status) if note else status,
                  share=share_html(run), **scrub_range(run), **caption_update(run))
    if snap is not None:
        update |= figures(run, snap)
        if player.settings.compare and snap.noise_x is not None:
            update["noise_grid"] = run.noise_picture(snap)
        if player.finished or _at_end(player):
            update["energy_hist"] = energy_histogram(snap, run)
    run.sent.delivered()   # returned whole to Gradio
    return outputs(**update)


def caption_update(run, upto=None) -> dict:
    """The generated captions of every stage (demo.captions.stage_captions) for a run of the model with captions;
    nothing for the five-image model's."""
    return {"stage_captions": stage_captions(run, upto)} if run.model == CAPTIONS else {}


def replay(run, upto: int):
    """``run``'s chain advanced, computed here and recorded, up to its frame number ``upto``."""
    while run.player.current is None or run.player.current.index < upto:
        snap = run.player.next()
        if snap is None:
            return
        run.record(snap)


def _at_end(player) -> bool:
    s = player.current
    return s is not None and s.stage == "data" and s.step == player.settings.data_steps


@chain_event("k")
def step_chain(k, inputs: ChainInputs, request: gr.Request = None):
    """Step mode: advance this visitor's chain by k Langevin steps from where it is (the first press, or
    new inputs, start a chain and show its proposal)."""
    k = number("steps_per_press", k, True, (1, 100))
    fresh = new_run(inputs)
    key = session_key(request)
    run = SESSIONS.get(key)
    note = ""
    if run is None or run.key != fresh.key:
        note = "" if run is None else texts.NEW_CHAIN
        run = fresh
        keep_run(key, run)
        k = 0
    elif run.stopped:   # a stopped Run: the same chain again (same seed), silently up to the last frame shown
        replay(fresh, run.shown)
        k = k if fresh.player.current is not None else 0
        run = fresh
        keep_run(key, run)
    else:
        fresh.close()
    if not run.player.lock.acquire(blocking=False):
        raise gr.Error(texts.STEPPING_WHILE_RUNNING)
    try:
        snaps = list(player_frames(run, k if k > 0 else 1))  # k = 0: a new chain, show its proposal
        return stepped(run, snaps, note)
    except ChainDiverged as e:
        return stepped(run, [], f"**Stopped: {e}**")
    finally:
        run.player.lock.release()


@chain_event()
def reset_chain(inputs: ChainInputs, request: gr.Request = None):
    """Back to the proposal: the same seed, so the same steps follow."""
    run = new_run(inputs)
    keep_run(session_key(request), run)
    with run.player.lock:
        return stepped(run, list(player_frames(run, 1)), "**Reset.**")


def scrub(index, request: gr.Request = None):
    """A kept frame of this visitor's last run (no recomputation): (strip, captions, noise picture)."""
    run = SESSIONS.get(session_key(request))
    if run is None or not run.player.frames:
        raise rejected("Nothing recorded yet: press Run first.")
    frames = run.player.frames
    i = int(number("frame", index, False, (-math.inf, math.inf)))
    snap = frames[min(max(i, 0), len(frames) - 1)]
    pic, caps = run.strip(snap, classify_now=True, upto=snap)
    noise_pic = run.noise_picture(snap)
    return pic, caps, noise_pic if noise_pic is not None else gr.skip()


def downloads(request: gr.Request = None):
    """The chain as an animated GIF and the stages as a PNG, as links in the page (no file on the server)."""
    run = SESSIONS.get(session_key(request))
    if run is None or not run.player.frames:
        raise rejected("Nothing recorded yet: press Run first.")
    player, obs = run.player, run.modality
    frames = [render.grid(f.x, f"{stage_title(f.stage)} · step {f.step}", obs, scale=2) for f in player.frames]
    gif = render.gif_bytes(frames)
    stages = [st for st in run.expected_stages() if st in player.stage_last]
    lasts = [player.stage_last[st] for st in stages]
    lines = [[f"energy {s.energy.mean():.3f}"] + ([f"agree {a:.0%}"] if (a := agreement(run.pred(s), obs, run.target))
                                                 is not None else []) for s in lasts]
    png = render.png_bytes(render.labelled_strip([stage_title(st) for st in stages], [s.x for s in lasts], lines, obs),
                           level=6)
    return (f'<a download="mebm_chain_seed{player.settings.seed}.gif" href="{data_url(gif, "image/gif")}">'
            f'Chain as animated GIF ({len(gif) // 1024} kB)</a> · '
            f'<a download="mebm_stages_seed{player.settings.seed}.png" href="{data_url(png)}">'
            f'Stages as PNG ({len(png) // 1024} kB)</a>')


STATS_RUNNING: set[str] = set()   # visitors whose 50 samples are being counted (one at a time each)


@chain_event()
def fifty_samples(inputs: ChainInputs, request: gr.Request = None):
    """The "50 samples" button: the current input (or none) run with demo.stats.N_STATS samples, each stage's
    agreement with n and a 95 % interval; unconditional: from the ex-post prior and from N(0, I). Yields (the
    progress or the summary line, the table)."""
    run = new_run(inputs)
    run.close()
    key = session_key(request)
    if key in STATS_RUNNING:
        raise rejected(texts.STATS_BUSY)
    STATS_RUNNING.add(key)
    try:
        p, n = run.player, stats.N_STATS
        if p.conditioned:
            chains = [("given your input: ", "normal")]
        else:
            ex_post = [("ex-post prior: ", "ex-post")] if p.sampler.prior is not None else []
            chains = ex_post + [("N(0, I): ", "normal")]
        rows, last = [], 0.0
        for label, prior in chains:
            for line, got in stats.stage_rows(p.sampler, classify, run.x_obs, run.observed, run.modality,
                                              p.settings.seed, p.kw, prior, label, text=run.text,
                                              target=run.target):
                if got is not None:
                    rows += got
                elif line and time.perf_counter() - last >= PLOT_INTERVAL:
                    last = time.perf_counter()
                    yield f"**Counting {n} samples:** {line}", gr.skip()
                elif not line:
                    raise rejected("No classifier is loaded, so nothing can be counted.")
        M = p.model.config.n_modalities
        words = (texts.STATS_CAPTION.format(n=n, m=M, images=n * M, digit=run.target) if run.target is not None else
                 texts.STATS_CONDITIONAL.format(n=n, m=M - 1, images=n * (M - 1)) if p.conditioned and run.text is None
                 else texts.STATS_UNCONDITIONAL.format(n=n))
        yield f"**{n} samples, seed {p.settings.seed}.** " + words, gr.update(value=stats.table(rows), visible=True)
    finally:
        STATS_RUNNING.discard(key)


def set_pace(speed, lesson, request: gr.Request = None):
    """The visitor's speed (steps per second) and lesson mode, also while a run streams: the explanation box
    says what lesson mode does when it is switched on."""
    pace = PACES.get(session_key(request))
    pace.speed, pace.lesson = number("speed", speed, False, SPEEDS), flag("lesson", lesson)
    if not pace.lesson:
        pace.reveal()   # a question on screen goes away with lesson mode
    return texts.LESSON if pace.lesson else gr.skip()


def toggle_pause(request: gr.Request = None):
    """Pause or resume the visitor's streaming run: (the button's label, the status)."""
    pace = PACES.get(session_key(request))
    pace.paused = not pace.paused
    return (gr.update(value="Resume (key P)" if pace.paused else "Pause (key P)"),
            texts.status_html(texts.PAUSED) if pace.paused else gr.skip())


def reveal(request: gr.Request = None):
    """Lesson mode: the question on screen answered, the run goes on."""
    PACES.get(session_key(request)).reveal()


def forget(request: gr.Request = None):
    """The visitor left: drop their chain and frames at once, and hand the freed memory back."""
    SESSIONS.drop(session_key(request))
    PACES.drop(session_key(request))
    trim_heap(TRIM_INTERVAL)


def restore(request: gr.Request = None):
    """Open a shared link: the query parameters set the input, the modality, the settings and the seed."""
    params = dict(getattr(request, "query_params", None) or {})
    n_out = 13
    if not is_share_link(params):
        return (gr.skip(),) * n_out
    try:
        model, _ = read_caption_link(params, caption_tokenizer())
        cfg = model_config()
        src, m, s, digit = read_share_link(params, cfg, default_samples(cfg))
    except (gr.Error, InputError, ValueError) as e:
        # gr.Error's message has the visitor's values HTML-escaped already (demo.inputs.shown)
        msg = one_line(e.message) if isinstance(e, gr.Error) else html.escape(one_line(str(e)), quote=False)
        return (*(gr.skip(),) * (n_out - 1), texts.status_html(texts.NOT_RESTORED) + msg)
    has_prior = loaded().get("prior") is not None
    if model == CAPTIONS:   # the model with captions: its sources, the caption box (restore_caption)
        src = gr.update(choices=CAPTION_SOURCES, value=src)
    return (src, m, s.n_samples, s.latent_steps, s.latent_step_size, s.data_steps, s.data_step_size, s.noise, s.seed,
            s.compare, digit, s.ex_post_prior and has_prior, texts.status_html(texts.RESTORED))


def restore_caption(request: gr.Request = None):
    """Open a shared link of the model with captions: (model, caption, caption box, stage captions); gr.skip()
    for every other link (a bad one: restore says why)."""
    params = dict(getattr(request, "query_params", None) or {})
    try:
        model, caption = read_caption_link(params, caption_tokenizer()) if is_share_link(params) else (IMAGES, "")
    except (gr.Error, ValueError):
        model = IMAGES
    if model != CAPTIONS:
        return (gr.skip(),) * 4
    return CAPTIONS, caption, gr.update(visible=True), gr.update(visible=True)


def caption_tokenizer():
    """The tokenizer of the model with captions (None without that model)."""
    sampler = loaded().get("caption_sampler")
    return None if sampler is None else sampler.tokenizer


def choose_model(model):
    """The visitor chose a model: the sources (a typed caption with the model with captions), the caption box, the
    stage captions and the chain settings of its checkpoint."""
    model = model_choice(model, caption_tokenizer() is not None)
    chains = sampler_or_error(model).chains
    with_captions = model == CAPTIONS
    source = gr.update(choices=CAPTION_SOURCES) if with_captions else gr.update(choices=SOURCE_LABELS, value="draw")
    return (source, gr.update(visible=with_captions), gr.update(visible=with_captions, value=""),
            chains.latent.steps, chains.latent.step_size, chains.data.steps, chains.data.step_size,
            gr.update(label=noise_label(chains)))


def noise_label(chains) -> str:
    """The noise checkbox's label: the noise scales of the chosen model's chains."""
    return f"Langevin noise on (latent {chains.latent.noise:g}, data {chains.data.noise:g})"


def scrub_captions(index, request: gr.Request = None):
    """The stage captions as they stood at a kept frame of this visitor's run of the model with captions."""
    run = SESSIONS.get(session_key(request))
    if run is None or not run.player.frames or run.model != CAPTIONS:
        return gr.skip()
    frames = run.player.frames
    i = int(number("frame", index, False, (-math.inf, math.inf)))
    return stage_captions(run, frames[min(max(i, 0), len(frames) - 1)])


# ---------------------------------------------------------------- presets

def presets(cfg: ModelConfig) -> dict:
    """name -> (latent_steps, latent_step_size, data_steps, data_step_size, noise, what to watch)."""
    lat, dat = cfg.chains.latent, cfg.chains.data
    settings = {"Default": (lat.steps, lat.step_size, dat.steps, dat.step_size, True),
                "Step size too large": (lat.steps, LEAPING_STEP * lat.step_size, dat.steps, 30 * dat.step_size, True),
                "Step size too small": (lat.steps, lat.step_size / 100, dat.steps, dat.step_size / 100, True),
                "No latent revision": (0, lat.step_size, dat.steps, dat.step_size, True)}
    return {name: (*v, texts.WATCH[name]) for name, v in settings.items()}


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

def example_paths() -> list[str]:
    return sorted(str(p) for p in ASSETS.glob("example_*.png"))


def modality_strip(cfg: ModelConfig) -> np.ndarray:
    """One digit in each modality, numbered: the look of each conditioning choice."""
    path = ASSETS / "digit_3.png"
    digit = np.asarray(Image.open(path).convert("L")) if path.exists() else np.zeros((28, 28), np.uint8)
    cells = np.stack([to_modality(digit, m, cfg.n_modalities, seed=cfg.data_seed, rng=np.random.default_rng(m))
                      for m in range(cfg.n_modalities)])[None]
    return render.grid(cells, "", None, scale=2)


def modality_names(cfg: ModelConfig) -> list[str]:
    M = cfg.n_modalities
    return [MODALITY_NAMES[m] if m < len(MODALITY_NAMES) and M <= len(MODALITY_NAMES) else f"modality {m}"
            for m in range(M)]


def build_demo() -> gr.Blocks:
    cfg = model_config()
    names = modality_names(cfg)
    row_names = [f"{m}: {n}".replace("/", "/\u200b") for m, n in enumerate(names)]   # may wrap after a slash
    table = presets(cfg)
    pic0, caps0 = first_picture(cfg)
    prior = loaded().get("prior")
    caption_sampler = loaded().get("caption_sampler")
    caption_tokenizer = caption_sampler.tokenizer if caption_sampler is not None else None
    prior_label = ("Unconditional: z ~ N(0, I) (this checkpoint has no ex-post prior)" if prior is None else
                   f"Unconditional: draw z from the ex-post prior (a {prior.n_components}-component mixture fitted to "
                   f"the inferred latents of the training set); off: N(0, I)")
    # uploads (each Run sends the drawing) are bounded by upload_sweeper; streamed frames never become files
    with Page(title="Multimodal EBM: MCMC revision, step by step") as demo:
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300, elem_id="input_column"):
                gr.Markdown(texts.TITLE, elem_id="title")
                gr.HTML(texts.KEYS, elem_id="keys", padding=False)
                # the model with captions, when there is one: chosen here (hidden otherwise: the page as before)
                model = Radio(MODEL_CHOICES if caption_tokenizer else MODEL_CHOICES[:1], value=IMAGES, label="Model",
                              elem_id="model", visible=caption_tokenizer is not None)
                source = Radio(SOURCE_LABELS, value="draw", label="Input", elem_id="source")
                with gr.Column(visible=False, elem_id="caption_box") as caption_box:
                    caption = Textbox("", label="Caption (the input when 'Caption' is chosen above)",
                                      placeholder="e.g. a thin seven leaning right", elem_id="caption", lines=1)
                    gr.Examples([[c] for c in EXAMPLES], inputs=[caption], cache_examples=False,
                                label=f"Example captions (the first {HELD_IN} worded as in training, the others in "
                                      "wordings never seen in training)")
                    words = vocabulary(caption_tokenizer) if caption_tokenizer else ""
                    gr.Textbox(words, interactive=False, label=f"The words a caption may use ({len(words.split())})",
                               elem_id="vocabulary", lines=2)
                with gr.Tab("Draw"):
                    sketch = Sketchpad(type="numpy", canvas_size=(280, 280), elem_id="sketch", label="Draw a digit",
                                          brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                                          layers=False, transforms=(), height=330)
                    # what the chain events read: the canvas as it was when the button was pressed (see below)
                    drawing = Sketchpad(type="numpy", canvas_size=(280, 280), elem_id="drawing", visible=False,
                                        layers=False, transforms=())
                with gr.Tab("Upload"):
                    upload = gr.File(label="Upload an image of a digit", file_types=["image"], type="filepath",
                                     elem_id="upload")
                    gr.Examples(example_paths(), inputs=[upload], label="Examples (MNIST test digits)",
                                cache_examples=False)
                with gr.Tab("Settings"):
                    lesson = gr.Checkbox(False, label="Lesson mode: stop before each stage with a question for the "
                                                      "class (Reveal or key N goes on)", elem_id="lesson")
                    speed = gr.Slider(*SPEEDS, value=SPEEDS[1], step=1, label="Speed of a Run (steps per second; "
                                      f"{SPEEDS[1]:g} = full speed)", elem_id="speed")
                    pause_btn = gr.Button("Pause (key P)", elem_id="pause", size="sm")
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
                    noise = gr.Checkbox(True, label=noise_label(cfg.chains), elem_id="noise")
                    seed = NumberBox(0, label="Seed (same seed, same frames)", precision=0, elem_id="seed",
                                     minimum=LIMITS["seed"][0], maximum=LIMITS["seed"][1])
                    compare = gr.Checkbox(False, label="Also run the data steps from noise (below the grid; doubles "
                                                       "the work)", elem_id="compare")
                    ex_post_prior = gr.Checkbox(prior is not None, label=prior_label, interactive=prior is not None,
                                                elem_id="ex_post_prior")
                modality = Dropdown([(f"{m}: {n}", m) for m, n in enumerate(names)], value=0,
                                       label="Modality of your input", elem_id="modality")
                link_digit = Textbox("", visible=False, elem_id="link_digit")
            with gr.Column(scale=3, min_width=600, elem_id="stage_column"):
                with gr.Row(elem_id="buttons"):
                    run_btn = gr.Button("Run", variant="primary", elem_id="run", scale=2)
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                    step_btn = gr.Button("Step", elem_id="step", scale=1)
                    step5_btn = gr.Button("Step ×5", elem_id="step5", scale=1)
                    reset_btn = gr.Button("Reset", elem_id="reset", scale=1)
                    reveal_btn = gr.Button("Reveal (N)", variant="primary", elem_id="reveal", scale=1, visible=False)
                status = gr.HTML(texts.status_html(texts.FIRST_STATUS), elem_id="status", padding=False)
                explain = gr.Markdown(texts.FIRST_EXPLAIN, elem_id="explain", latex_delimiters=[])
                gr.HTML('<span id="key_hint_text"></span>', elem_id="key_hint", padding=False)
                captions = gr.HTML(caps0, elem_id="captions")
                grid = LiveImage(pic0, show_label=False, elem_id="grid", interactive=False, height=450, format="png",
                                 buttons=["fullscreen"])
                # the rows' names, placed beside the grid's rows by the page (demo/page.js)
                gr.HTML(f'<div id="row_names" data-names="{html.escape(json.dumps(row_names))}"></div>',
                        elem_id="rows", padding=False)
                # the model with captions: each sample's caption after every stage, as plain text
                stage_text = gr.Textbox("", label="Captions, per stage (sample 1, 2, ... as the grid's columns)",
                                        interactive=False, lines=6, max_lines=40, elem_id="stage_captions",
                                        visible=False)
        scrub_slider = Slider(0, 1, value=0, step=1, label="Scrub through the kept frames (after a run)",
                                 interactive=False, elem_id="scrub")
        with gr.Row(equal_height=False):
            trace_plot = gr.LinePlot(None, x="step", y="change", color="chain", elem_id="trace_plot", visible=False,
                                     title="What each stage descends: change since the stage began",
                                     x_title="frame", y_title="change", height=280, color_map=texts.TRACE_COLORS)
            with gr.Column(elem_id="changes_box"):
                changes_caps = gr.HTML("", elem_id="changes_caps")
                changes = LiveImage(None, show_label=False, elem_id="changes", interactive=False, height=220,
                                    format="png", buttons=[])
        with gr.Row():
            energy_plot = gr.LinePlot(None, x="step", y="energy", color="chain",
                                      title="EBM energy (lower: data-like, near generated tuples)", x_title="frame",
                                      y_title="energy", color_map=CHAIN_COLORS, height=260,
                                      elem_id="energy_plot", visible=False)
            posterior_plot = gr.LinePlot(None, x="step", y="log_posterior", color="chain", title="log p(z | input)",
                                         x_title="frame", y_title="log-posterior", color_map=CHAIN_COLORS, height=260,
                                         elem_id="posterior_plot", visible=False)
            agreement_plot = gr.BarPlot(None, x="stage", y="agreement", title="Classifier agreement (%)",
                                        y_lim=[0, 100], x_title="stage", y_title="%", height=260, sort=None,
                                        elem_id="agreement_plot", visible=False)
        check = loaded().get("energy_check")
        with gr.Accordion("Does a lower energy mean data-like? The energy check" + (
                f" ({check.n} test tuples)" if check is not None else ""), open=False, elem_id="energy_check"):
            gr.Markdown(sentence(check) + " " + where_from(check), elem_id="energy_words", latex_delimiters=[])
            energy_hist = LiveImage(None if check is None else histogram(check), show_label=False,
                                   elem_id="energy_hist", interactive=False, format="png", buttons=[],
                                   visible=check is not None)
        with gr.Row(equal_height=False):
            # the latent space: each sample's z from its proposal through the latent revisions (titled inside)
            latent_pic = LiveImage(None, show_label=False, elem_id="latent_view", interactive=False, height=500,
                                   format="png", buttons=[], visible=False, scale=1)
            readout = gr.Dataframe(label="Classifier read-out: digit · confidence per image", elem_id="readout",
                                   interactive=False, wrap=True, visible=False, scale=1)
        with gr.Row(equal_height=False):
            stats_btn = gr.Button(f"{stats.N_STATS} samples: each stage's agreement with n and a 95 % interval",
                                  elem_id="stats", size="sm", scale=1)
            stats_words = gr.Markdown("", elem_id="stats_words", latex_delimiters=[])
        stats_table = gr.Dataframe(label=f"Agreement over {stats.N_STATS} samples", elem_id="stats_table",
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
            gr.Markdown(texts.EXPLANATION, latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                                      {"left": "$", "right": "$", "display": False}])
            banner = gr.Markdown(weights_banner(), elem_id="weights")

        controls = dict(source=source, sketch=drawing, upload=upload, modality=modality, n_samples=n_samples,
                        latent_steps=latent_steps, latent_step_size=latent_step_size, data_steps=data_steps,
                        data_step_size=data_step_size, noise=noise, seed=seed, compare=compare, link_digit=link_digit,
                        ex_post_prior=ex_post_prior, model=model, caption=caption)
        chain_inputs = [controls[name] for name in CONTROLS]   # the order of ChainInputs (and of the HTTP API)
        chain_outputs = [grid, captions, noise_grid, input_preview, energy_plot, posterior_plot, agreement_plot,
                         readout, status, scrub_slider, share, explain, trace_plot, changes, changes_caps, reveal_btn,
                         energy_hist, latent_pic, stage_text]
        assert len(chain_outputs) == len(RUN_OUTPUTS)   # in that order
        # No .change/.input listener on the sketchpad: with one, Gradio 6.31's editor turns "realtime" and,
        # after every stroke, hands the next event a blob id whose images never reach the server (the
        # first Run after drawing then saw an empty canvas). The switch to "drawing" happens in the page (PAGE_JS).
        # Nor is the visible sketchpad an input of a server event: Gradio 6.31 asks every input of a running event
        # for its value again at each change of its loading status (several times per second while a chain
        # streams): the editor exported and uploaded the canvas each time (3 files) and took the upload back as
        # its value, which could land while the visitor was already drawing the next digit and replace what
        # was drawn. A page-side relay copies the canvas once per press into the hidden `drawing`, which the
        # chain events read.
        relay = dict(fn=None, inputs=[sketch], outputs=[drawing], js="(s) => s", queue=False, api_visibility="private")
        # every event of the "chain" group declares the group's limit: Gradio lowers a group's limit to the
        # lowest one pushed into it, so one Step with the default limit would cut the runs at once to 4
        chain = dict(concurrency_id="chain", concurrency_limit=chain_concurrency())
        # in the page at once, before the server answers: the previous run's "Done" must not stand for this one
        said = {name: json.dumps(texts.status_html(getattr(texts, name)))
                for name in ("RUN_PRESSED", "STOPPED", "NOT_RUN")}
        pressed = f"() => {{ window.mebmStopped = false; return {said['RUN_PRESSED']}; }}"
        run_btn.click(None, None, status, js=pressed, queue=False, api_visibility="private")
        run_event = run_btn.click(**relay).then(run_chain, chain_inputs, chain_outputs, api_name="run",
                                                show_progress="hidden", trigger_mode="always_last", **chain)
        # a refused input and a Stop both end the event as a failure: the status says which (not Gradio's "Error")
        run_event.failure(None, None, status, js=f"() => window.mebmStopped ? {said['STOPPED']} : {said['NOT_RUN']}",
                          queue=False)
        stop_btn.click(None, None, status, cancels=[run_event],
                       js=f"() => {{ window.mebmStopped = true; return {said['STOPPED']}; }}")
        # and the run itself, woken from its wait for the next frame (unqueued: not behind the class's runs)
        stop_btn.click(stop_run, None, None, queue=False, api_name="stop", show_progress="hidden")
        one, five = gr.Number(1, visible=False), gr.Number(5, visible=False)
        step_btn.click(**relay).then(step_chain, [one, *chain_inputs], chain_outputs, api_name="step",
                                     show_progress="hidden", trigger_mode="always_last", **chain)
        step5_btn.click(**relay).then(step_chain, [five, *chain_inputs], chain_outputs, api_visibility="private",
                                      show_progress="hidden", trigger_mode="always_last", **chain)
        reset_btn.click(**relay).then(reset_chain, chain_inputs, chain_outputs, api_name="reset",
                                      show_progress="hidden", **chain)
        scrub_slider.release(scrub, scrub_slider, [grid, captions, noise_grid], api_name="scrub",
                             show_progress="hidden")
        scrub_slider.input(scrub, scrub_slider, [grid, captions, noise_grid], api_visibility="private",
                           show_progress="hidden", trigger_mode="always_last")
        if caption_tokenizer is not None:   # the captions of the scrubbed frame
            for listen in (scrub_slider.release, scrub_slider.input):
                listen(scrub_captions, scrub_slider, stage_text, api_visibility="private", show_progress="hidden",
                       trigger_mode="always_last")
            model.input(choose_model, model, [source, caption_box, stage_text, latent_steps, latent_step_size,
                                              data_steps, data_step_size, noise], queue=False, api_visibility="private")
        # the pace is the visitor's own and changes while a run streams: not queued behind the chains
        for control in (speed, lesson):
            control.change(set_pace, [speed, lesson], explain, queue=False, api_visibility="private")
        pause_btn.click(toggle_pause, None, [pause_btn, status], queue=False, api_visibility="private")
        reveal_btn.click(reveal, None, None, queue=False, api_visibility="private")
        get_downloads.click(downloads, None, links, api_name="downloads", **chain)
        stats_btn.click(**relay).then(fifty_samples, chain_inputs, [stats_words, stats_table], api_name="fifty_samples",
                                      show_progress="minimal", **chain)
        preset.change(apply_preset, preset, [latent_steps, latent_step_size, data_steps, data_step_size, noise, watch],
                      api_name="preset")
        upload.change(None, upload, source, js="(f) => f ? 'upload' : 'draw'")
        demo.load(None, None, None, js=texts.PAGE_JS)
        restored = [c for name, c in controls.items() if name not in ("sketch", "upload", "model", "caption")]
        demo.load(restore, None, restored + [status], api_visibility="private")
        demo.load(weights_banner, None, banner, api_visibility="private")
        if caption_tokenizer is not None:
            demo.load(restore_caption, None, [model, caption, caption_box, stage_text], api_visibility="private")
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
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="port to serve on (default: $GRADIO_SERVER_PORT, else 7860)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on; 0.0.0.0 for every network (default: $GRADIO_SERVER_NAME, else "
                        "127.0.0.1)")
    p.add_argument("--share", action="store_true", help="a public gradio.live link (needs internet)")
    p.add_argument("--repo-id", default=None, help="Hub repo of the weights (or MEBM_REPO_ID)")
    p.add_argument("--revision", default=None, help="Hub revision, ideally a 40-hex commit (or MEBM_REVISION)")
    p.add_argument("--checkpoint", default=None, help="bundled weights folder (or MEBM_CHECKPOINT)")
    p.add_argument("--classifier", default=None, help="classifier folder (or MEBM_CLASSIFIER)")
    p.add_argument("--caption-checkpoint", default=None,
                   help="weights folder of the model with captions, offered as a second model in the page (or "
                        "MEBM_CAPTION_CHECKPOINT; default: mebm_captions beside the --checkpoint folder, used when "
                        "it exists)")
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
    setup(a.checkpoint, a.repo_id, a.revision, a.classifier, device=device, caption_checkpoint=a.caption_checkpoint)
    warm_up()
    demo = build_demo()
    upload_sweeper().start()
    demo.queue(max_size=a.max_queue, default_concurrency_limit=4)
    demo.launch(server_name=a.host, server_port=a.port, share=a.share, **launch_options())


def launch_options() -> dict:
    """demo.launch's settings beyond the address: the look, the upload limit, the page states kept (Gradio
    keeps 10,000 by default, ~0.3 MB each: memory grew with every visitor) and the guard on long addresses."""
    return dict(css=texts.PAGE_CSS, theme=gr.themes.Default(text_size="lg"), max_file_size="10mb", footer_links=["api"],
                state_session_capacity=SESSION_STATES, max_threads=max(40, 2 * chain_concurrency()),
                app_kwargs={"middleware": [Middleware(URLLengthLimit, limit=MAX_URL_BYTES, message=texts.LONG_URL)]})


if __name__ == "__main__":
    main()
