"""Time the demo's whole default conditional chain in-process (proposal, latent revision, EBM latent
revision, data revision), one thread: the issue-9 speed target is at most 1.5 s for 4 samples.

    python -m scripts.time_chain [--checkpoint checkpoints/mebm] [--samples 4] [--repeats 5] [--ebm-latent-steps N]
"""
import argparse
import statistics
import time

import torch

from model import MultimodalEBMVAE
from model.langevin import conditional_generate
from model.networks import observed_mask


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.time_chain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mebm", help="model directory")
    p.add_argument("--samples", type=int, default=4, help="chains run at once (the demo's default: 4)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (after one warm-up run); the median is printed")
    p.add_argument("--ebm-latent-steps", type=int, default=None, help="override the checkpoint's EBM latent steps")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model = MultimodalEBMVAE.from_pretrained(a.checkpoint).eval()
    M = model.config.n_modalities
    x = torch.rand(a.samples, M, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    kw = {} if a.ebm_latent_steps is None else {"ebm_latent_steps": a.ebm_latent_steps}
    times = []
    for i in range(a.repeats + 1):
        t = time.perf_counter()
        out = conditional_generate(model, x, observed_mask([0], M), generator=torch.Generator().manual_seed(i), **kw)
        if i:
            times.append(time.perf_counter() - t)
    print(f"stages {[s for s in out if s != 'final']}: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}) for {a.samples} samples, one thread")


if __name__ == "__main__":
    main()
