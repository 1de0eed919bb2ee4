"""The page's words: messages, the presets' "what to watch", the explanation (demo/explanation.md)."""
from __future__ import annotations

import html
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPLANATION = (HERE / "explanation.md").read_text(encoding="utf-8")
PAGE_CSS = (HERE / "page.css").read_text(encoding="utf-8")
PAGE_JS = (HERE / "page.js").read_text(encoding="utf-8")

TITLE = "**Multimodal EBM + VAE: watch the MCMC revisions, stage by stage**"
# the keyboard, one small line under the title (the page's own text: no visitor's text is ever rendered here)
KEYS = ("Keys: <kbd>S</kbd> step · <kbd>Shift+S</kbd> five · <kbd>R</kbd> back to the proposal · "
        "<kbd>N</kbd> reveal · <kbd>P</kbd> pause")
FIRST_STATUS = "Draw a digit (or pick an example) and press **Run**, or **Step** through it."
RUN_PRESSED = "**Run pressed:** starting the chain…"
STOPPED = "**Stopped.** The frames so far are kept: scrub through them, or press **Run** again."
NOT_RUN = "**Not run:** the message in the corner says why."
LONG_URL = ("This address is too long to be a link to this demo (a shared run's link is under 2 kB): "
            "open the demo's address without it.")
CHAIN_ENDED = ("**The chain has ended** (last step of the last stage). Press **Reset** to go back to the "
               "proposal, or **Run** to stream it.")
RESTORED = "**Shared run restored** (input, settings, seed): press **Run** to see the same frames."
NOT_RESTORED = "**This shared link could not be restored:** "
NEW_CHAIN = "*New chain (the input or the settings changed).*"
STEPPING_WHILE_RUNNING = "A run is streaming in this page: press Stop first, then Step."
STATS_BUSY = "Your 50 samples are still being counted: wait for them, then press the button again."
STATS_CONDITIONAL = ("Images read as the input's digit, {n} samples × {m} generated modalities = {images} images per "
                     "stage. The images of one sample are not independent, so the 95 % interval (Wilson) is narrower "
                     "than it should be.")
STATS_CAPTION = ("Images read as the caption's digit ({digit}), {n} samples × {m} generated modalities = {images} "
                 "images per stage. The images of one sample are not independent, so the 95 % interval (Wilson) is "
                 "narrower than it should be.")
STATS_UNCONDITIONAL = ("Samples with one digit in every modality, {n} per chain, the same chain settings and seed "
                       "from the ex-post prior and from N(0, I); 95 % intervals (Wilson).")

WATCH = {   # preset -> what to watch
    "Default": "The proposal already shows the digit; the latent revision pulls every sample towards the "
               "input, the data revision sharpens strokes and textures while the energy falls.",
    "Step size too large": "Watch the latent chain leap off the posterior at its first step (the trace of "
                           "−log p(z | input) shoots up and stays up), then the data chain's pixels fly out of range: "
                           "the run stops with a message in the status line.",
    "Step size too small": "Watch nothing move: every frame equals the proposal and the energy curves stay flat.",
    "No latent revision": "The proposal goes straight to the EBM: compare with Default how well the "
                          "samples match the input digit.",
}

# one or two plain sentences beside the grid for the stage that is running (conditional, unconditional)
FIRST_EXPLAIN = ("Each panel is a stage of the chain, for the same samples (columns); rows are the modalities, your "
                 "input's row framed in yellow.")
STAGE_SAYS = {
    "proposal": ("**Proposal:** the inference model guesses a latent code z from your digit; the generator draws "
                 "every modality from that z.",
                 "**Proposal:** z is drawn from the prior; the generator draws every modality from that z."),
    "latent": ("**Latent revision:** z is nudged to explain your digit better (−log p(z | input) falls in the trace "
               "below).", ""),
    "ebm_latent": ("**EBM latent revision:** z is nudged so that the EBM finds the tuple more data-like (U(z) falls).",
                   "**EBM latent revision:** z is nudged so that the EBM finds the tuple more data-like (U(z) falls)."),
    "data": ("**Data revision:** every generated pixel moves down the EBM's energy; your digit's row stays fixed.",
             "**Data revision:** every pixel moves down the EBM's energy."),
}
# the same for a typed caption (the model with captions): the caption is the input, every image is generated
CAPTION_SAYS = {
    "proposal": "**Proposal:** the inference model guesses a latent code z from your caption; the generator draws "
                "every image from that z.",
    "latent": "**Latent revision:** z is nudged to explain your caption better (−log p(z | caption) falls in the "
              "trace below).",
    # a model whose latent revision gives the caption's likelihood the weight 0 (TextConfig.latent_weight)
    "latent_without_caption": "**Latent revision:** this model leaves your caption out here (its text decoder is a "
                              "poor guide for wordings unlike its training captions): z only drifts a little toward "
                              "the prior's centre, with some noise; the caption acted through the proposal.",
    "data": "**Data revision:** every pixel moves down the EBM's energy; your caption stays fixed.",
}
# what each stage descends, for the trace under the grid (its series: stage, quantity, colour)
DESCENDS = {"latent": "−log p(z | input)", "ebm_latent": "U(z)", "data": "EBM energy"}
SHORT = {"proposal": "proposal", "latent": "latent", "ebm_latent": "EBM latent", "data": "data"}
TRACE_SERIES = {st: f"{SHORT[st]}: {q}" for st, q in DESCENDS.items()}
TRACE_COLORS = dict(zip(TRACE_SERIES.values(), ("#1f4e9c", "#9467bd", "#d62728")))
BARELY = 0.01   # mean absolute change per pixel (0-1) under which a stage "barely changed the pictures"

LESSON = ("**Lesson mode:** the run stops before each stage with a question for the class; press **Reveal** "
          "(key N) to go on.")
PAUSED = "**Paused.** Press **Resume** (key P) to go on."
REVEAL_HINT = "Press **Reveal** (key N) to see the answer."


def question(stage: str, row: str, conditioned: bool) -> str:
    """The question asked before ``stage`` (lesson mode), about the modality row named ``row``."""
    q = {"latent": f"The latent revision starts: will the digit in the **{row}** row change, and how much?",
         "ebm_latent": f"The EBM revises z next: which digit will the **{row}** row show after it?",
         "data": f"The EBM revises the pixels next: which digit will the **{row}** row show, and will it look "
                 f"sharper or noisier?"}.get(stage, f"What will the {row} row look like after the next stage?")
    if not conditioned and stage != "data":
        q = q.replace("the digit in", "the digit of")
    return f"**Predict:** {q} {REVEAL_HINT}"


def status_html(text: str) -> str:
    """A status line, written with **bold** and *italics*, as HTML (everything else escaped). The status is an
    HTML element: Gradio's Markdown element lagged seconds behind a run's frames in Chromium."""
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text, quote=False))
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", out)
