"""The model work of a class, without Gradio, HTTP or pictures: N visitors' default chains advanced together by the
app's scheduler (demo/scheduler.py), against the same chains run one after another, on any device.

    python -m benchmarks.class_chains [--users 30] [--device auto] [--checkpoint checkpoints/mebm] [--repeats 2]

Each visitor observes MNIST example 7 as modality 0 (default chain settings, 3 samples, its own seed). Printed per
repeat: the batched class (all submitted at once, time until every chain ended, and the time to each chain's first
frame, p50 / p95), the same chains one after another through their own players (no scheduler), and the ratio of
the two. This is the lower bound of what the page can reach: load_app measures the app as visitors see it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets/example_7.png"


def players(sampler, users: int):
    from model.data import to_modality
    from model.networks import observed_mask
    from model.player import ChainPlayer, ChainSettings
    from model.preprocess import digit_from_upload

    cfg, ch = sampler.config, sampler.chains
    digit = digit_from_upload(str(EXAMPLE))
    out = []
    for seed in range(users):
        x = torch.zeros(1, cfg.n_modalities, 3, 28, 28)
        x[0, 0] = torch.from_numpy(to_modality(digit, 0, cfg.n_modalities, seed=cfg.data_seed,
                                               rng=np.random.default_rng(seed)))
        s = ChainSettings(3, ch.latent.steps, ch.latent.step_size, ch.data.steps, ch.data.step_size, True, seed)
        out.append(ChainPlayer(sampler, x, observed_mask([0], cfg.n_modalities), s))
    return out


def batched(sampler, users: int) -> tuple[float, list[float]]:
    from demo.scheduler import Scheduler

    scheduler = Scheduler(sampler).start()
    t0 = time.perf_counter()
    jobs = [scheduler.submit(p) for p in players(sampler, users)]
    first = [None] * len(jobs)

    def read(i, job):   # a visitor's page: it reads its own frames as they come
        for _ in job.stream():
            if first[i] is None:
                first[i] = time.perf_counter() - t0

    readers = [threading.Thread(target=read, args=(i, j)) for i, j in enumerate(jobs)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    total = time.perf_counter() - t0
    scheduler.close()
    return total, first


def one_by_one(sampler, users: int) -> float:
    t0 = time.perf_counter()
    for p in players(sampler, users):
        for _ in p:
            pass
    return time.perf_counter() - t0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=30, help="visitors pressing Run at once (default: 30)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or cuda:N "
                                                    "(default: auto)")
    p.add_argument("--checkpoint", default="checkpoints/mebm", help="the model (default: checkpoints/mebm)")
    p.add_argument("--repeats", type=int, default=2, help="measurements of each path after one warm-up class "
                                                          "(default: 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from model import Sampler
    from model.device import DeviceError

    try:
        sampler = Sampler.from_pretrained(a.checkpoint, device=a.device)
    except (DeviceError, OSError, ValueError) as e:
        sys.exit(f"class_chains: {e}")
    dev = torch.device(sampler.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {a.users} users x 3 samples, threads {torch.get_num_threads()}")
    batched(sampler, 2)                 # warm-up: kernels, allocator
    one_by_one(sampler, 1)
    for r in range(a.repeats):
        sync(dev)
        total, first = batched(sampler, a.users)
        sync(dev)
        alone = one_by_one(sampler, a.users)
        q = statistics.quantiles(first, n=20)
        print(f"repeat {r + 1}: batched class all done {total:.2f} s (first frame p50 {statistics.median(first):.2f} "
              f"/ p95 {q[-1]:.2f} s); one after another {alone:.2f} s ({alone / a.users:.3f} s a chain); "
              f"ratio {alone / total:.1f}x")


if __name__ == "__main__":
    main()
