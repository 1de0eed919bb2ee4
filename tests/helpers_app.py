"""Shared helpers for the app tests: a tiny random model on disk, drawings, and a served app."""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=8, ebm_width=8, ebm_features=16, latent_dim=4, ebm_latent_steps=0,
            ebm_latent_cond_steps=0)  # stage counts pinned; ebm_latent has its own tests


def save_tiny_model(path, **config) -> Path:
    import torch
    from model.config import ModelConfig
    from model.networks import MultimodalEBMVAE

    torch.manual_seed(0)
    MultimodalEBMVAE(ModelConfig.from_dict({**TINY, **config})).save_pretrained(str(path))
    return Path(path)


def save_tiny_caption_model(path, **config) -> Path:
    """A tiny random model with the caption modality (the folder ``mebm_captions`` the app finds beside
    ``mebm``)."""
    return save_tiny_model(path, text={"embed_dim": 4, "hidden": 16}, **config)


def stroke_sketch(size=(280, 280), transparent=True, thickness=12) -> dict:
    """What gr.Sketchpad returns after drawing a '7': strokes in layers[0]'s alpha, composite black on white."""
    h, w = size
    layer = np.zeros((h, w, 4), np.uint8)
    t = thickness // 2
    y0, y1, x0, x1 = int(h * .3), int(h * .75), int(w * .35), int(w * .65)
    layer[y0 - t:y0 + t, x0:x1, 3] = 255                        # top bar
    for y in range(y0, y1):                                     # diagonal
        x = int(x1 - (y - y0) * (x1 - x0) / (y1 - y0) * 0.8)
        layer[y, max(x - t, 0):x + t, 3] = 255
    composite = np.full((h, w, 4), 255, np.uint8)
    composite[layer[..., 3] > 0, :3] = 0
    background = np.zeros((h, w, 4), np.uint8) if transparent else np.full((h, w, 4), 255, np.uint8)
    return {"background": background, "layers": [layer], "composite": composite}


EMPTY_SKETCH = {"background": None, "layers": [], "composite": None}


def blank_png(path, width, height, rgba=True) -> Path:
    """A transparent (or black) PNG of any size written row by row: a 9380x9380 one is ~350 kB on disk and
    never held in memory here (what a decompression-bomb drawing looks like)."""
    channels = 4 if rgba else 1
    z, row, parts = zlib.compressobj(9), b"\0" * (1 + width * channels), []
    for _ in range(height):
        parts.append(z.compress(row))
    parts.append(z.flush())

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6 if rgba else 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
                           + chunk(b"IEND", b""))
    return Path(path)


def rss_mb(pid, field="VmRSS") -> float:
    """Resident memory of a process in MB (VmHWM: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(checkpoint, tmp, extra_env=None):
    """`python app.py` in a subprocess on a free port; returns (process, url) once it answers."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "GRADIO_TEMP_DIR": str(Path(tmp) / "gradio"), "MEBM_CHECKPOINT": str(checkpoint),
           "MEBM_FPS": "60", "OMP_NUM_THREADS": "1", **(extra_env or {})}
    env.pop("MEBM_REPO_ID", None)
    log = open(Path(tmp) / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 150   # a busy machine (training jobs beside the tests) can take over a minute
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("app exited: " + (Path(tmp) / "app.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except Exception:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("app did not start: " + (Path(tmp) / "app.log").read_text()[-3000:])


def stop_app(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
