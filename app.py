"""Gradio demo: draw or upload a digit, pick its modality, and watch the MCMC revisions step by step.

    python app.py [--port 7860] [--share] [--repo-id ORG/NAME --revision COMMIT] [--checkpoint DIR]

Stages shown (model/langevin.py): the inference model's proposal z ~ q(z | x_S) decoded by the
generator; latent Langevin revision of z on the generator posterior p(z | x_S); data-space Langevin
revision of all modalities on the joint EBM with the observed modality clamped.

Settings by environment (for Spaces and tests): MEBM_CHECKPOINT (bundled folder, default
checkpoints/mebm), MEBM_CLASSIFIER (default checkpoints/classifier), MEBM_REPO_ID, MEBM_REVISION,
MEBM_FPS (most frames streamed per second, default 40; 0 = no pacing), HF_HUB_OFFLINE.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFont

import gradio as gr
from model.config import ModelConfig
from model.data import to_modality
from model.hub import CheckpointUnavailable, load_model
from model.langevin import ChainDiverged, conditional_sampling
from model.networks import observed_mask
from model.preprocess import InputError, digit_from_sketch, digit_from_upload

log = logging.getLogger("mebm.app")
ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
SOURCES = ("draw", "upload", "unconditional")
SOURCE_LABELS = [("Draw on the sketchpad", "draw"), ("Uploaded image / example", "upload"),
                 ("Nothing: unconditional (z from the prior)", "unconditional")]
MODALITY_NAMES = ("plain ink", "orange blobs", "blue stripes", "yellow/green checks", "purple speckle", "sand rings")
STAGE_LABELS = {"proposal": "proposal (inference model -> generator)", "latent": "latent revision",
                "data": "data revision on the EBM"}
RUN_OUTPUTS = ("grid", "noise_grid", "input_preview", "energy_plot", "posterior_plot", "readout", "status",
               "record", "scrub", "gif", "png")
LIMITS = {  # name: (min, max) accepted from the controls and from API callers
    "n_samples": (1, 16), "latent_steps": (0, 100), "latent_step_size": (0.0, 10.0),
    "data_steps": (0, 100), "data_step_size": (0.0, 100.0), "seed": (0, 2 ** 31 - 1)}
SCALE = 3                  # server-side upscaling of the 28-px cells (text stays readable)
PLOT_INTERVAL = 0.25       # seconds between plot / read-out updates while streaming


def fps() -> float:
    try:
        return max(0.0, float(os.environ.get("MEBM_FPS", 40)))
    except ValueError:
        return 40.0


# ---------------------------------------------------------------- weights

_LOADED: dict = {}


def setup(checkpoint=None, repo_id=None, revision=None, classifier=None, offline=None) -> dict:
    """Load the model (Hub, Hub cache or bundled) and the classifiers; never raises. Arguments
    default to the MEBM_* environment variables."""
    checkpoint = checkpoint or os.environ.get("MEBM_CHECKPOINT", str(ROOT / "checkpoints/mebm"))
    repo_id = repo_id or os.environ.get("MEBM_REPO_ID") or None
    revision = revision or os.environ.get("MEBM_REVISION") or None
    classifier = classifier or os.environ.get("MEBM_CLASSIFIER", str(ROOT / "checkpoints/classifier"))
    _LOADED.clear()
    try:
        lm = load_model(repo_id, revision, bundled=checkpoint, offline=offline)
        _LOADED.update(model=lm.model, weights=lm.describe(), error=None)
        log.info("weights in use: %s", lm.describe())
    except CheckpointUnavailable as e:
        _LOADED.update(model=None, weights=None, error=str(e))
        log.error("%s", e)
    try:
        from model.classifier import Classifiers
        _LOADED["classifier"] = Classifiers.from_pretrained(classifier, strict=True).eval()
    except Exception as e:
        _LOADED["classifier"] = None
        log.warning("classifier unavailable (%s): the read-out will say so", e)
    return _LOADED


def loaded() -> dict:
    return _LOADED if _LOADED else setup()


def model_or_error():
    state = loaded()
    if state["model"] is None:
        raise gr.Error("No model checkpoint could be loaded, so nothing can be generated. "
                       + (state["error"] or ""), duration=None)
    return state["model"]


def weights_banner() -> str:
    state = loaded()
    if state["model"] is None:
        return f"**No model loaded.** {state['error']}"
    clf = "loaded" if state["classifier"] is not None else "unavailable (no read-out)"
    return f"Weights in use: **{state['weights']}** · classifier: {clf}"


# ---------------------------------------------------------------- inputs

@dataclass
class Settings:
    source: str
    modality: int
    n_samples: int
    latent_steps: int
    latent_step_size: float
    data_steps: int
    data_step_size: float
    noise: bool
    seed: int
    compare: bool


def _number(name, value, integer):
    label = name.replace("_", " ")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"'{label}' must be a number (got {value!r}).")
    if not math.isfinite(v):
        raise gr.Error(f"'{label}' must be a finite number (got {value!r}).")
    lo, hi = LIMITS[name]
    if not lo <= v <= hi:
        raise gr.Error(f"'{label}' must be between {lo:g} and {hi:g} (got {v:g}).")
    if integer:
        if v != int(v):
            raise gr.Error(f"'{label}' must be a whole number (got {v:g}).")
        return int(v)
    return v


def validate(source, modality, n_samples, latent_steps, latent_step_size, data_steps, data_step_size,
             noise, seed, compare, n_modalities) -> Settings:
    """Check every control on the server (API callers can send anything); gr.Error says what is wrong."""
    if source not in SOURCES:
        raise gr.Error(f"Input source must be one of {SOURCES} (got {source!r}).")
    try:
        modality = int(modality)
    except (TypeError, ValueError):
        raise gr.Error(f"Pick a modality between 0 and {n_modalities - 1} (got {modality!r}).")
    if not 0 <= modality < n_modalities:
        raise gr.Error(f"Pick a modality between 0 and {n_modalities - 1} (got {modality}).")
    return Settings(source, modality, _number("n_samples", n_samples, True), _number("latent_steps", latent_steps, True),
                    _number("latent_step_size", latent_step_size, False), _number("data_steps", data_steps, True),
                    _number("data_step_size", data_step_size, False), bool(noise), _number("seed", seed, True),
                    bool(compare))


def prepare_input(s: Settings, sketch, upload, cfg: ModelConfig):
    """-> (x_obs [1, M, 3, 28, 28] or None, observed bool [M] or None, preview image or None)."""
    if s.source == "unconditional":
        return None, None, None
    try:
        digit = digit_from_sketch(sketch) if s.source == "draw" else digit_from_upload(upload)
    except InputError as e:
        raise gr.Error(str(e))
    M = cfg.n_modalities
    img = to_modality(digit, s.modality, M, seed=cfg.data_seed, rng=np.random.default_rng(s.seed))
    x_obs = torch.zeros(1, M, 3, 28, 28)
    x_obs[0, s.modality] = torch.from_numpy(img)
    grey = np.repeat(digit[None], 3, 0)
    preview = np.concatenate([grey, np.full((3, 28, 2), 128, np.uint8), np.round(img * 255).astype(np.uint8)], 2)
    preview = np.kron(preview.transpose(1, 2, 0), np.ones((4, 4, 1), np.uint8))
    return x_obs, observed_mask([s.modality], M), preview


def preview_input(source, sketch, upload, modality, seed):
    """Live preview of what the model will be given (None while there is nothing usable)."""
    model = loaded().get("model")
    cfg = model.config if model is not None else ModelConfig()
    try:
        s = validate(source, modality, 1, 0, 0.0, 0, 0.0, False, seed, False, cfg.n_modalities)
        return prepare_input(s, sketch, upload, cfg)[2]
    except gr.Error:
        return None


def preview_drawing(sketch, modality, seed):
    return preview_input("draw", sketch, None, modality, seed)


def preview_upload(upload, modality, seed):
    return preview_input("upload", None, upload, modality, seed) if upload else gr.skip()


# ---------------------------------------------------------------- pictures

@functools.lru_cache(maxsize=16)
def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType
        return ImageFont.load_default()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def render_grid(x: np.ndarray, title: str, observed: int | None = None, scale: int = SCALE) -> np.ndarray:
    """Samples as rows, modalities as columns, the title on a band above. x: uint8 [B, M, 3, 28, 28]."""
    B, M = x.shape[:2]
    gap, head = 2, 20
    h, w = head + B * (28 + gap) + gap, M * (28 + gap) + gap
    canvas = np.full((h, w, 3), 40, np.uint8)
    if observed is not None:  # frame the clamped (given) column in yellow
        c0 = observed * (28 + gap)
        canvas[head:, c0:c0 + 28 + 2 * gap] = (250, 200, 40)
    for b in range(B):
        for m in range(M):
            r, c = head + gap + b * 30, gap + m * 30
            canvas[r:r + 28, c:c + 28] = x[b, m].transpose(1, 2, 0)
    img = Image.fromarray(np.repeat(np.repeat(canvas, scale, 0), scale, 1))
    draw = ImageDraw.Draw(img)
    font = _font(13 * scale // 2)
    draw.text((4 * scale, 2 * scale), title, fill=(255, 255, 255), font=font)
    for m in range(M):  # modality numbers above the columns
        draw.text(((gap + m * 30 + 24) * scale, 12 * scale), str(m), fill=(170, 170, 170), font=_font(5 * scale))
    return np.asarray(img)


def modality_strip(cfg: ModelConfig, digit: np.ndarray | None = None) -> np.ndarray:
    """One digit in each modality, numbered: the look of each conditioning choice."""
    if digit is None:
        path = ASSETS / "digit_3.png"
        digit = np.asarray(Image.open(path).convert("L")) if path.exists() else np.zeros((28, 28), np.uint8)
    cells = np.stack([to_modality(digit, m, cfg.n_modalities, seed=cfg.data_seed, rng=np.random.default_rng(m))
                      for m in range(cfg.n_modalities)])[None]
    return render_grid(np.round(cells * 255).astype(np.uint8), "the modalities", None, scale=2)


def frame_title(stage, step, total_steps, t, n_frames):
    return f"{STAGE_LABELS[stage]} · step {step}/{total_steps}   [{t + 1}/{n_frames}]"


# ---------------------------------------------------------------- read-outs

def classify(x: torch.Tensor):
    clf = loaded().get("classifier")
    if clf is None:
        return None
    try:
        digits, conf = clf.predict(x)
        return digits.numpy(), conf.numpy()
    except Exception as e:  # wrong shape (other M), ...: keep the demo running
        log.warning("classifier failed: %s", e)
        return None


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
    digits, _ = pred
    if observed is not None:
        target = int(digits[0, observed])
        gen = np.delete(digits, observed, axis=1)
        ok = (gen == target).mean()
        return f"Classifier: the input reads as **{target}**; {ok:.0%} of the generated images read as {target}."
    agree = [(row == np.bincount(row, minlength=10).argmax()).mean() for row in digits]
    return f"Classifier: on average {np.mean(agree):.0%} of a sample's modalities show the same digit."


# ---------------------------------------------------------------- the chain

def _tmpdir(sub: str = "", max_age: float = 3600) -> Path:
    """A temp folder for downloads (sub='') or streamed frames (sub='frames'); old files are removed."""
    d = Path(tempfile.gettempdir()) / "mebm_demo" / sub
    d.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - max_age
    for f in d.glob("*.*"):
        try:
            if f.stat().st_mtime < cutoff:
                f.unlink()
        except OSError:
            pass
    return d


_FRAME_COUNTER = iter(range(10 ** 18))


def png_file(img: np.ndarray, folder: Path) -> str:
    """Write a picture as a fast PNG (zlib level 1) and return its path: Gradio then only copies the
    file, instead of encoding it again at its slower default level (11 ms -> 4 ms a frame)."""
    path = folder / f"{os.getpid()}_{next(_FRAME_COUNTER)}.png"
    Image.fromarray(img).save(path, compress_level=1)
    return str(path)


def render_record(record: dict, i: int, scale: int = SCALE):
    """(grid, noise grid) of recorded frame i."""
    obs = record["observed"]
    grid = render_grid(record["frames"][i], record["titles"][i], obs, scale)
    noise = None
    if record["noise"] and record["noise"][i] is not None:
        noise = render_grid(record["noise"][i], record["noise_titles"][i], obs, scale)
    return grid, noise


def write_downloads(record: dict, tag: str):
    d = _tmpdir("downloads")
    gif, png = d / f"chain_{tag}.gif", d / f"final_{tag}.png"
    pics = [Image.fromarray(render_record(record, i, scale=2)[0]) for i in range(len(record["frames"]))]
    palette = pics[-1].quantize(255, dither=Image.Dither.NONE)  # one palette: fast, no flicker
    pics = [p.quantize(palette=palette, dither=Image.Dither.NONE) for p in pics]
    Image.fromarray(render_record(record, len(record["frames"]) - 1)[0]).save(png)
    durations = [60] * (len(pics) - 1) + [1500]
    pics[0].save(gif, save_all=True, append_images=pics[1:], duration=durations, loop=0, optimize=False)
    return str(gif), str(png)


def run_chain(source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
              data_step_size, noise, seed, compare):
    """Stream the conditional generation frame by frame. Yields one tuple per frame, in the order
    of RUN_OUTPUTS; gr.skip() where an output does not change."""
    model = model_or_error()
    cfg = model.config
    M = cfg.n_modalities
    s = validate(source, modality, n_samples, latent_steps, latent_step_size, data_steps, data_step_size,
                 noise, seed, compare, M)
    log.info("run: %s, modality %d, %d samples, seed %d", s.source, s.modality, s.n_samples, s.seed)
    x_obs, observed, preview = prepare_input(s, sketch, upload, cfg)
    conditioned = observed is not None
    obs_m = s.modality if conditioned else None
    kw = dict(latent_steps=s.latent_steps, latent_step_size=s.latent_step_size,
              latent_noise=cfg.latent_noise if s.noise else 0.0, data_steps=s.data_steps,
              data_step_size=s.data_step_size, data_noise=cfg.data_noise if s.noise else 0.0,
              ebm_latent_steps=0)  # research branch: the new "ebm_latent" stage is left to the app's own branch
    x_in = x_obs.expand(s.n_samples, -1, -1, -1, -1).contiguous() if conditioned else None
    chain = conditional_sampling(model, x_in, observed, n=s.n_samples,
                                 generator=torch.Generator().manual_seed(s.seed), **kw)
    noise_chain = None
    if s.compare:
        noise_chain = conditional_sampling(model, x_in, observed, n=s.n_samples, data_init="noise",
                                           generator=torch.Generator().manual_seed(s.seed), **{**kw, "latent_steps": 0})
        next(noise_chain)  # its proposal frame: unused, the noise chain starts at the data stage
        pending = next(noise_chain)  # its data step 0 (the noise), shown once the data stage begins
        noise_start = float(pending.energy.mean())
    latent_frames = s.latent_steps + 1 if conditioned and s.latent_steps > 0 else 0
    n_frames = 1 + latent_frames + s.data_steps + 1
    totals = {"proposal": 0, "latent": s.latent_steps, "data": s.data_steps}
    record = {"frames": [], "noise": [], "titles": [], "noise_titles": [], "observed": obs_m}
    energy_rows, post_rows = [], []
    noise_x = noise_title = None
    interval = 1.0 / fps() if fps() > 0 else 0.0
    last_yield = 0.0
    last_plot = time.perf_counter()  # the first plots come a moment after the first frame
    frames_dir = _tmpdir("frames", max_age=600)
    status = ""
    pred = None
    try:
        for t, frame in enumerate(chain):
            if noise_chain is not None:
                if frame.stage == "data":
                    nf, pending = (pending, None) if pending is not None else (next(noise_chain), None)
                    noise_x = to_uint8(nf.x)
                    noise_title = f"same steps from noise · step {nf.step}/{s.data_steps}"
                    energy_rows.append((t, float(nf.energy.mean()), "from noise: mean", "data"))
                else:  # flat until the data stage: the noise is waiting
                    noise_title = "from noise: waits for the data stage"
                    energy_rows.append((t, noise_start, "from noise: mean", frame.stage))
            x8 = to_uint8(frame.x)
            title = frame_title(frame.stage, frame.step, totals[frame.stage], t, n_frames)
            record["frames"].append(x8)
            record["titles"].append(title)
            record["noise"].append(noise_x)
            record["noise_titles"].append(noise_title)
            energy_rows += summary_rows(t, frame.energy, frame.stage)
            if frame.log_posterior is not None:
                post_rows += summary_rows(t, frame.log_posterior, frame.stage)
            last = t == n_frames - 1
            status = f"**{STAGE_LABELS[frame.stage]}**, step {frame.step}/{totals[frame.stage]} · " \
                     f"mean energy {frame.energy.mean():.2f}"
            now = time.perf_counter()
            plots, readout = (gr.skip(), gr.skip()), gr.skip()
            if last or now - last_plot >= PLOT_INTERVAL:
                last_plot = now
                pred = classify(frame.x)
                plots = (_energy_df(energy_rows), _posterior_df(post_rows))
                readout = readout_table(pred, obs_m, M)
            if last:
                break  # the final frame is yielded after the loop, with the record
            grid = png_file(render_grid(x8, title, obs_m), frames_dir)
            ngrid = gr.skip()
            if noise_x is not None and t % 2 == 0:  # the comparison at half rate: it halves its cost
                ngrid = png_file(render_grid(noise_x, noise_title, obs_m), frames_dir)
            wait = last_yield + interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            last_yield = time.perf_counter()
            if t == 0:
                log.info("first frame ready")
            yield (grid, ngrid, preview if t == 0 else gr.skip(), *plots, readout, status,
                   gr.skip(), gr.skip(), gr.skip(), gr.skip())
        status = f"**Done:** {n_frames} frames. " + coherence_line(pred, obs_m) + \
                 " Drag the slider below the grid to scrub through the steps."
    except ChainDiverged as e:
        status = f"**Stopped: {e}** The frames up to that point are kept (scrub through them)."
        gr.Warning(str(e))
        pred = classify(torch.from_numpy(record["frames"][-1]).float() / 255) if record["frames"] else None
    finally:
        chain.close()
        if noise_chain is not None:
            noise_chain.close()
    if not record["frames"]:
        raise gr.Error(status or "The chain produced no frame.")
    k = len(record["frames"]) - 1
    grid, ngrid = render_record(record, k)
    wait = last_yield + interval - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    yield (png_file(grid, frames_dir), png_file(ngrid, frames_dir) if ngrid is not None else gr.skip(),
           preview if k == 0 else gr.skip(), _energy_df(energy_rows), _posterior_df(post_rows),
           readout_table(pred, obs_m, M), status, record,
           gr.update(minimum=0, maximum=max(k, 1), value=k, step=1, interactive=True), gr.skip(), gr.skip())
    gif, png = write_downloads(record, f"{s.seed}_{time.time_ns()}")  # after the last frame is shown
    yield (*[gr.skip()] * (len(RUN_OUTPUTS) - 2), gif, png)


SERIES = ("samples: mean", "samples: lowest", "samples: highest", "from noise: mean")
CHAIN_COLORS = dict(zip(SERIES, ("#1f4e9c", "#7fa7e0", "#0b1f4a", "#d62728")))


def summary_rows(t, values: torch.Tensor, stage: str):
    """Mean, lowest and highest over the samples: a fixed set of series (Gradio 6.31's LinePlot keeps
    the colour domain of its first data, so the series must not change from run to run)."""
    return [(t, float(values.mean()), SERIES[0], stage), (t, float(values.min()), SERIES[1], stage),
            (t, float(values.max()), SERIES[2], stage)]


def _long_df(rows, value):
    """Long format for gr.LinePlot, typed even when empty (an untyped empty frame makes the x axis nominal)."""
    df = pd.DataFrame(rows, columns=["step", value, "chain", "stage"])
    return df.astype({"step": "int64", value: "float64", "chain": "object", "stage": "object"})


def _energy_df(rows):
    return _long_df(rows, "energy")


def _posterior_df(rows):
    return _long_df(rows, "log_posterior")


def scrub(index, record):
    """The recorded frame ``index`` (no recomputation): (grid, noise grid)."""
    if not record or not record.get("frames"):
        raise gr.Error("Nothing recorded yet: press Run first.")
    try:
        i = int(float(index))
    except (TypeError, ValueError):
        raise gr.Error(f"Step index must be a number (got {index!r}).")
    i = min(max(i, 0), len(record["frames"]) - 1)
    grid, noise = render_record(record, i)
    folder = _tmpdir("frames", max_age=600)
    return png_file(grid, folder), png_file(noise, folder) if noise is not None else gr.skip()


# ---------------------------------------------------------------- presets

def presets(cfg: ModelConfig) -> dict:
    """name -> (latent_steps, latent_step_size, data_steps, data_step_size, noise, what to watch)."""
    return {
        "Default": (cfg.latent_steps, cfg.latent_step_size, cfg.data_steps, cfg.data_step_size, True,
                    "The proposal already shows the digit; the latent revision pulls every sample towards the "
                    "input, the data revision sharpens strokes and textures while the energy falls."),
        "Step size too large": (cfg.latent_steps, 3.0, cfg.data_steps, 30.0, True,
                                "Watch the latent chain leap off the posterior: it blows up within a few steps "
                                "and the run stops with a message."),
        "Step size too small": (cfg.latent_steps, cfg.latent_step_size / 100, cfg.data_steps,
                                cfg.data_step_size / 100, True,
                                "Watch nothing move: every frame equals the proposal and the energy curves stay flat."),
        "No latent revision": (0, cfg.latent_step_size, cfg.data_steps, cfg.data_step_size, True,
                               "The proposal goes straight to the EBM: compare with Default how well the "
                               "samples match the input digit."),
    }


def apply_preset(name):
    cfg = model_config()
    table = presets(cfg)
    if name not in table:
        raise gr.Error(f"Unknown preset {name!r}; choose one of {list(table)}.")
    ls, lss, ds, dss, noise, watch = table[name]
    return ls, lss, ds, dss, noise, f"**What to watch:** {watch}"


def model_config() -> ModelConfig:
    model = loaded().get("model")
    return model.config if model is not None else ModelConfig()


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

The **classifier** read-out gives each image's digit as judged by a separate classifier per
modality: when the samples agree with your digit, the modalities are *coherent*.
"""

CSS = """
.gradio-container {max-width: 1500px !important}
#grid img, #noise_grid img, #modalities img, #input_preview img {image-rendering: pixelated}
#status {font-size: 1.1em}
"""

SELECT_BRUSH = """() => { let tries = 0; const pick = () => {
  const b = document.querySelector('#sketch button[aria-label=Brush]');
  if (b) { if (!b.classList.contains('highlight')) b.click(); } else if (tries++ < 50) setTimeout(pick, 200); };
  setTimeout(pick, 300); }"""


def example_paths() -> list[str]:
    return sorted(str(p) for p in ASSETS.glob("example_*.png"))


def build_demo() -> gr.Blocks:
    cfg = model_config()
    M = cfg.n_modalities
    names = [MODALITY_NAMES[m] if m < len(MODALITY_NAMES) and M <= len(MODALITY_NAMES) else f"modality {m}"
             for m in range(M)]
    table = presets(cfg)
    with gr.Blocks(title="Multimodal EBM: MCMC revision, step by step", delete_cache=(600, 600)) as demo:
        gr.Markdown("# Multimodal EBM + VAE: watch the MCMC revisions\n"
                    "Give a digit in one modality; the model generates it in all the others: a proposal from "
                    "the inference model, revised in latent space, then in data space on the energy-based model.")
        banner = gr.Markdown(weights_banner(), elem_id="weights")
        record = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2, min_width=340):
                gr.Image(modality_strip(cfg), label="The modalities (same digit, each look)", elem_id="modalities",
                         interactive=False, height=110, buttons=[])
                modality = gr.Radio([(f"{m}: {n}", m) for m, n in enumerate(names)], value=0,
                                    label="Modality of your input", elem_id="modality")
                source = gr.Radio(SOURCE_LABELS, value="draw", label="Input", elem_id="source")
                with gr.Tab("Draw"):
                    sketch = gr.Sketchpad(type="numpy", canvas_size=(280, 280), elem_id="sketch", label="Draw a digit",
                                          brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                                          layers=False, transforms=())
                with gr.Tab("Upload"):
                    upload = gr.File(label="Upload an image of a digit", file_types=["image"], type="filepath",
                                     elem_id="upload")
                    gr.Examples(example_paths(), inputs=[upload], label="Examples (MNIST test digits)",
                                cache_examples=False)
                input_preview = gr.Image(label="What the model is given (the digit, and in your modality)",
                                         elem_id="input_preview", interactive=False, height=120, buttons=[])
            with gr.Column(scale=4):
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id="run", size="lg")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", size="lg")
                status = gr.Markdown("Draw a digit (or pick an example) and press **Run**.", elem_id="status")
                with gr.Row():
                    grid = gr.Image(label="Samples (rows) × modalities (columns), from the generator's proposal",
                                    elem_id="grid", interactive=False, height=420, format="png", buttons=["fullscreen"])
                    noise_grid = gr.Image(label="Why it matters: the same data steps from noise",
                                          elem_id="noise_grid", interactive=False, height=420, format="png",
                                          buttons=["fullscreen"])
                scrub_slider = gr.Slider(0, 1, value=0, step=1, label="Scrub through the recorded steps (after a run)",
                                         interactive=False, elem_id="scrub")
                with gr.Row():
                    energy_plot = gr.LinePlot(None, x="step", y="energy", color="chain",
                                              title="EBM energy (lower = more data-like)", x_title="frame",
                                              color_map=CHAIN_COLORS,
                                              height=260, elem_id="energy_plot")
                    posterior_plot = gr.LinePlot(None, x="step", y="log_posterior", color="chain",
                                                 title="log-posterior of z (higher = explains the input)",
                                                 color_map=CHAIN_COLORS,
                                                 x_title="frame", height=260, elem_id="posterior_plot")
                readout = gr.Dataframe(label="Classifier read-out: digit · confidence per image", elem_id="readout",
                                       interactive=False, wrap=True)
                with gr.Row():
                    gif = gr.File(label="Chain as animated GIF", elem_id="gif", interactive=False)
                    png = gr.File(label="Final grid as PNG", elem_id="png", interactive=False)
            with gr.Column(scale=2, min_width=300):
                preset = gr.Radio(list(table), value="Default", label="Classroom presets", elem_id="preset")
                watch = gr.Markdown(f"**What to watch:** {table['Default'][5]}", elem_id="watch")
                n_samples = gr.Slider(*LIMITS["n_samples"], value=4, step=1, label="Number of samples", elem_id="n_samples")
                latent_steps = gr.Slider(*LIMITS["latent_steps"], value=cfg.latent_steps, step=1, label="Latent steps")
                latent_step_size = gr.Number(cfg.latent_step_size, label="Latent step size",
                                             minimum=LIMITS["latent_step_size"][0], maximum=LIMITS["latent_step_size"][1])
                data_steps = gr.Slider(*LIMITS["data_steps"], value=cfg.data_steps, step=1, label="Data steps")
                data_step_size = gr.Number(cfg.data_step_size, label="Data step size",
                                           minimum=LIMITS["data_step_size"][0], maximum=LIMITS["data_step_size"][1])
                noise = gr.Checkbox(True, label=f"Langevin noise on (latent {cfg.latent_noise:g}, data {cfg.data_noise:g})")
                seed = gr.Number(0, label="Seed (same seed, same frames)", precision=0,
                                 minimum=LIMITS["seed"][0], maximum=LIMITS["seed"][1])
                compare = gr.Checkbox(True, label="Side by side: the same data steps from noise", elem_id="compare")
        with gr.Accordion("How it works", open=False):
            gr.Markdown(EXPLANATION, latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                                      {"left": "$", "right": "$", "display": False}])

        inputs = [source, sketch, upload, modality, n_samples, latent_steps, latent_step_size, data_steps,
                  data_step_size, noise, seed, compare]
        outputs = [grid, noise_grid, input_preview, energy_plot, posterior_plot, readout, status, record,
                   scrub_slider, gif, png]
        run_event = run_btn.click(run_chain, inputs, outputs, api_name="run", show_progress="hidden",
                                  concurrency_limit=2, concurrency_id="chain")
        stop_btn.click(None, None, None, cancels=[run_event])
        scrub_slider.release(scrub, [scrub_slider, record], [grid, noise_grid], api_name="scrub",
                             show_progress="hidden")
        scrub_slider.input(scrub, [scrub_slider, record], [grid, noise_grid], api_visibility="private",
                           show_progress="hidden", trigger_mode="always_last")
        preset.change(apply_preset, preset, [latent_steps, latent_step_size, data_steps, data_step_size, noise, watch],
                      api_name="preset")
        sketch.change(None, None, source, js="() => 'draw'")
        upload.change(None, upload, source, js="(f) => f ? 'upload' : 'draw'")
        sketch.change(preview_drawing, [sketch, modality, seed], input_preview, api_visibility="private",
                      show_progress="hidden", trigger_mode="always_last")
        upload.change(preview_upload, [upload, modality, seed], input_preview, api_visibility="private",
                      show_progress="hidden", trigger_mode="always_last")
        modality.change(preview_input, [source, sketch, upload, modality, seed], input_preview,
                        api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        demo.load(None, None, None, js=SELECT_BRUSH)
        demo.load(weights_banner, None, banner, api_visibility="private")
    return demo


def warm_up():
    """One tiny chain at start-up, so that the first visitor does not pay for lazy initialisation."""
    if loaded().get("model") is None:
        return
    try:
        for _ in run_chain("unconditional", None, None, 0, 1, 1, 0.03, 1, 1.0, True, 0, True):
            pass
    except Exception as e:  # never block start-up
        log.warning("warm-up failed: %s", e)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--share", action="store_true", help="a public gradio.live link (needs internet)")
    p.add_argument("--repo-id", default=None, help="Hub repo of the weights (or MEBM_REPO_ID)")
    p.add_argument("--revision", default=None, help="Hub revision, ideally a 40-hex commit (or MEBM_REVISION)")
    p.add_argument("--checkpoint", default=None, help="bundled weights folder (or MEBM_CHECKPOINT)")
    p.add_argument("--classifier", default=None, help="classifier folder (or MEBM_CLASSIFIER)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)  # one thread per chain; the queue runs two chains on a 2-core machine
    setup(a.checkpoint, a.repo_id, a.revision, a.classifier)
    warm_up()
    demo = build_demo()
    demo.queue(max_size=32, default_concurrency_limit=4)
    demo.launch(server_name=a.host, server_port=a.port, share=a.share, css=CSS,
                theme=gr.themes.Default(text_size="lg"), max_file_size="10mb", footer_links=["api"])


if __name__ == "__main__":
    main()
