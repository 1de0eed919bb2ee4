"""Time the demo's whole default conditional chain in-process (proposal, latent revision, EBM latent
revision, data revision), one thread; the demo aims at 1.5 s or less for 4 samples.

    python -m scripts.time_chain [--checkpoint checkpoints/mebm] [--samples 4] [--repeats 5] [--ebm-latent-cond-steps N]
"""
import argparse
import statistics
import time

import torch

from model import Sampler
from model.cli import HelpFormatter, add_chain_args, chain_overrides
from model.networks import observed_mask


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.time_chain", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mebm", help="model directory (found from any folder) or "
                                                                    "ORG/NAME")
    p.add_argument("--samples", type=int, default=4, help="chains run at once (the demo's default: 4)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (after one warm-up run); the median is printed")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    add_chain_args(p)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    sampler = Sampler.from_pretrained(a.checkpoint, device=a.device, **chain_overrides(vars(a)))
    M = sampler.config.n_modalities
    x = torch.rand(a.samples, M, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    times = []
    for i in range(a.repeats + 1):
        t = time.perf_counter()
        out = sampler.conditional(x, observed_mask([0], M), generator=torch.Generator().manual_seed(i))
        if i:
            times.append(time.perf_counter() - t)
    print(f"stages {[s for s in out if s != 'final']}: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}) for {a.samples} samples, one thread")


if __name__ == "__main__":
    main()
