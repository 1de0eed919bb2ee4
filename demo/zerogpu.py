"""ZeroGPU hosting: the chain's model work runs in a function decorated with ``spaces.GPU`` when the app runs on
a ZeroGPU Space, and as it is everywhere else.

    work = gpu_function(chain_work, duration=20)   # decided at setup, never at import

ZeroGPU Spaces set ``SPACES_ZERO_GPU`` (the ``spaces`` package reads the same variable); the package is optional
(``pip install .[zerogpu]``; a ZeroGPU Space has it installed). Without it, or off ZeroGPU, nothing is wrapped.
``spaces.GPU`` accepts generator functions: the frames stream while the GPU is held, for at most ``duration``
seconds per call. The decorated function runs in a process of its own: its arguments and what it yields are
pickled, so it takes plain tensors and settings and yields plain frames.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Callable, Mapping

log = logging.getLogger("mebm.zerogpu")
TRUE = ("1", "true", "yes", "on")


def on_zerogpu(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs on a ZeroGPU Space (``SPACES_ZERO_GPU`` set to a true value)."""
    environ = os.environ if environ is None else environ
    return str(environ.get("SPACES_ZERO_GPU", "")).strip().lower() in TRUE


def gpu_function(fn: Callable, duration: float, environ: Mapping[str, str] | None = None) -> Callable | None:
    """``fn`` decorated with ``spaces.GPU(duration=duration)`` on ZeroGPU; None elsewhere, or when the ``spaces``
    package is missing there (then the work runs where the model is, and the log says so)."""
    if not on_zerogpu(environ):
        return None
    try:
        spaces = importlib.import_module("spaces")
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the spaces package is missing (pip install .[zerogpu]): "
                    "the chains run without a GPU")
        return None
    return spaces.GPU(duration=int(max(1, round(duration))))(fn)
