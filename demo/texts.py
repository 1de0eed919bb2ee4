"""The page's words: messages, the presets' "what to watch", the explanation (demo/explanation.md)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPLANATION = (HERE / "explanation.md").read_text(encoding="utf-8")
PAGE_CSS = (HERE / "page.css").read_text(encoding="utf-8")
PAGE_JS = (HERE / "page.js").read_text(encoding="utf-8")

TITLE = ("**Multimodal EBM + VAE: watch the MCMC revisions, stage by stage** · keys: S = one step, "
         "Shift+S = five, R = back to the proposal")
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

WATCH = {   # preset -> what to watch
    "Default": "The proposal already shows the digit; the latent revision pulls every sample towards the "
               "input, the data revision sharpens strokes and textures while the energy falls.",
    "Step size too large": "Watch the latent chain leap off the posterior: it blows up within a few steps "
                           "and the run stops with a message.",
    "Step size too small": "Watch nothing move: every frame equals the proposal and the energy curves stay flat.",
    "No latent revision": "The proposal goes straight to the EBM: compare with Default how well the "
                          "samples match the input digit.",
}
