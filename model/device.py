"""Where the tensors live: ``--device auto|cpu|cuda|cuda:N|mps`` for every command.

    device = resolve_device("auto")     # cuda if available, else mps, else cpu
    model.to(device); g = torch.Generator(device).manual_seed(0)
"""
from __future__ import annotations

import contextlib

import torch


class DeviceError(ValueError):
    """The requested device does not exist on this machine (one-line message)."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto``: cuda if present, else mps, else cpu. ``cpu``, ``cuda``, ``cuda:N``, ``mps``: that device, or a
    DeviceError saying why it cannot be used here."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}, "
                              f"built with CUDA {torch.version.cuda}); use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"--device {name}: Apple's MPS is not available here; use --device cpu or auto")
    elif dev.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return dev


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA when ``enabled`` (mixed precision); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
