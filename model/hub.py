"""Load the model from a Hugging Face Hub repo, falling back to the bundled checkpoint.

Order: (1) the local Hub cache when the revision is a pinned commit (immutable, instant);
(2) the Hub itself, unless offline (``HF_HUB_OFFLINE=1`` or ``offline=True``), bounded by a
deadline so that start-up never hangs on a dead network; (3) the local Hub cache; (4) the bundled
folder (``checkpoints/mebm``). Every attempt is logged; ``LoadedModel.source`` says which weights
are in use ("Hub", "Hub cache" or "bundled"). The ex-post prior (``prior.safetensors``) comes along from
the same place when it is there (``LoadedModel.prior``; None otherwise, or when it does not load).

    python app.py --repo-id ORG/NAME --revision <40-hex commit>
    MEBM_REPO_ID=ORG/NAME MEBM_REVISION=main python app.py
"""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .networks import MultimodalEBMVAE
from .paths import REPO_ROOT
from .prior import PRIOR_FILE, GaussianMixture, load_prior

log = logging.getLogger("mebm.hub")
FILES = ("config.json", "model.safetensors")
ENERGY_CHECK_FILE = "energy_check.json"   # the energy check the demo draws as a histogram (demo/energy.py)
OPTIONAL_FILES = (PRIOR_FILE, ENERGY_CHECK_FILE)   # beside the weights when the checkpoint has them
BUNDLED = "checkpoints/mebm"


class CheckpointUnavailable(RuntimeError):
    """No weights could be loaded from anywhere; the message lists what was tried."""




def bundled_checkpoint(name: str = "mebm") -> Path:
    """The checkpoint shipped in the repository (``checkpoints/<name>``), found from the package's location,
    so that it loads from any working directory after ``pip install -e .``. A wheel installed without the
    checkout carries no weights: then this raises CheckpointUnavailable (load from the Hub instead)."""
    path = REPO_ROOT / "checkpoints" / name
    if not (path / "model.safetensors").is_file():
        raise CheckpointUnavailable(
            f"no bundled checkpoint at {path}: the weights ship with the repository checkout, not with the "
            f"installed package. Clone the repository and `pip install -e .`, or load published weights with "
            f"MultimodalEBMVAE.from_pretrained('ORG/NAME').")
    return path


@dataclass
class LoadedModel:
    model: MultimodalEBMVAE
    source: str                   # "Hub" | "Hub cache" | "bundled"
    location: str                 # repo@revision or folder
    notes: list[str] = field(default_factory=list)  # what was tried, for the log and the app
    prior: GaussianMixture | None = None  # the ex-post prior beside the weights (None: N(0, I) only)
    folder: Path | None = None    # the local folder the files were read from (a Hub cache snapshot or a checkout's)

    def describe(self) -> str:
        return f"{self.source} ({self.location})"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download(repo_id, revision, cache_dir, local_only) -> Path:
    from huggingface_hub import hf_hub_download

    paths = [hf_hub_download(repo_id, f, revision=revision, cache_dir=cache_dir, local_files_only=local_only)
             for f in FILES]
    for name in OPTIONAL_FILES:  # a repo (or a cache) without them still gives the model
        try:
            hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir, local_files_only=local_only)
        except Exception as e:
            log.info("no %s from %s: %s", name, repo_id, type(e).__name__)
    return Path(paths[0]).parent


def _download_with_deadline(repo_id, revision, cache_dir, timeout) -> Path:
    """The network try in a daemon thread, abandoned after ``timeout`` seconds."""
    box = {}

    def work():
        try:
            box["path"] = _download(repo_id, revision, cache_dir, local_only=False)
        except BaseException as e:  # reported to the caller
            box["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer from the Hub within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["path"]


def load_folder(path: str | Path, source: str = "folder", location: str | None = None) -> LoadedModel:
    """The weights in a folder (config.json + model.safetensors) and the ex-post prior beside them (when it loads
    and fits the latent; else None, with a note saying why). Raises what ``from_pretrained`` raises."""
    path = Path(path)
    model = MultimodalEBMVAE.from_pretrained(str(path), strict=True).eval()
    prior, prior_note = load_prior(path / PRIOR_FILE, model.config.latent_dim)
    return LoadedModel(model, source, location or str(path),
                       [f"weights in use: {source} ({location or path})", prior_note], prior, path)


def load_model(repo_id: str | None = None, revision: str | None = None, bundled: str | Path | None = BUNDLED,
               cache_dir: str | Path | None = None, offline: bool | None = None,
               timeout: float = 15.0) -> LoadedModel:
    """The model from ``repo_id`` (Hub, then Hub cache) or else from the ``bundled`` folder (None: no fallback).
    Never touches the network when offline. Raises CheckpointUnavailable if nothing loads."""
    offline = is_offline() if offline is None else offline
    notes: list[str] = []

    def note(msg):
        notes.append(msg)
        log.info(msg)

    def from_dir(path, source, location):
        loaded = load_folder(path, source, location)
        for n in loaded.notes:
            note(n)
        loaded.notes = notes
        return loaded

    if repo_id:
        where = f"{repo_id}@{revision or 'main'}"
        pinned = bool(revision and re.fullmatch(r"[0-9a-f]{40}", revision))
        attempts = (["cache"] if pinned else []) + ([] if offline else ["hub"]) + ([] if pinned else ["cache"])
        if offline:
            note("HF_HUB_OFFLINE is set: not contacting the Hub")
        for attempt in attempts:
            try:
                if attempt == "hub":
                    path = _download_with_deadline(repo_id, revision, cache_dir, timeout)
                    return from_dir(path, "Hub", where)
                path = _download(repo_id, revision, cache_dir, local_only=True)
                return from_dir(path, "Hub cache", where)
            except Exception as e:
                what = "the Hub" if attempt == "hub" else "the local Hub cache"
                reason = str(e).splitlines()[0][:200] if str(e) else ""
                note(f"could not load {where} from {what}: {type(e).__name__}: {reason}")
    if bundled is None:   # no fallback asked for
        raise CheckpointUnavailable(f"{repo_id}: " + " ; ".join(notes))
    bundled = Path(bundled)
    if (bundled / "model.safetensors").is_file() and (bundled / "config.json").is_file():
        if repo_id:
            note(f"falling back to the bundled checkpoint {bundled}")
        try:
            return from_dir(bundled, "bundled", str(bundled))
        except Exception as e:
            note(f"could not load the bundled checkpoint {bundled}: {type(e).__name__}: {e}")
    else:
        note(f"no bundled checkpoint at {bundled} (expected model.safetensors + config.json)")
    raise CheckpointUnavailable("No model weights could be loaded. " + " ; ".join(notes))
