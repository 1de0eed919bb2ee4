"""Data-parallel training under torchrun (DistributedDataParallel, gloo on CPU): 2 processes, a few
iterations; the processes end with identical weights, rank 0 alone writes the run and reports, DDP does not
warn, the checkpoint loads and --resume continues it."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.networks import MultimodalEBMVAE
from model.train import find_resumable

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow   # two torchrun launches


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, mnist_file, iters, resume=""):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()),
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "run"), str(mnist_file), str(tmp_path / "cache"),
           str(iters), resume]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=170, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("saved ") == 1 and "Loading weights" not in r.stdout   # the first process alone reports
    assert "Warning" not in r.stderr and "warn" not in r.stderr.lower(), r.stderr[-3000:]
    return r


def _weights_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_train_identical_weights_and_resume(tmp_path, mnist_file):
    _torchrun(tmp_path, mnist_file, 3)
    run = tmp_path / "run"
    w0, w1 = (torch.load(run / f"rank{r}.pt") for r in (0, 1))
    assert _weights_equal(w0, w1)                       # gradients were averaged across the processes
    init = MultimodalEBMVAE(MultimodalEBMVAE.from_pretrained(str(run / "final")).config).state_dict()
    assert not _weights_equal(w0, init)
    final = MultimodalEBMVAE.from_pretrained(str(run / "final"), strict=True)
    assert _weights_equal(final.state_dict(), w0)       # rank 0 wrote what every rank holds
    found, model, state, _ = find_resumable(run)
    assert state["iteration"] == 3 and _weights_equal(model.state_dict(), w0)
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["iteration"] for entry in lines] == [0, 1, 2]  # one log, written once (by rank 0)

    _torchrun(tmp_path, mnist_file, 5, "resume")
    w0, w1 = (torch.load(run / f"rank{r}.pt") for r in (0, 1))
    assert _weights_equal(w0, w1)
    _, _, state, _ = find_resumable(run)
    assert state["iteration"] == 5
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["iteration"] for entry in lines] == [0, 1, 2, 3, 4]
