"""Time one training iteration of each variant: python -m benchmarks.bench_train [--batch 64] [--repeats 10]

Random data of the real shape (batch x M x 3 x 28 x 28), the default TrainConfig chains (30 data-space
and 10 latent Langevin steps), after warm-up (so the EBM and both revisions run).
"""
import argparse
import time

import torch

from model.config import VARIANTS, ModelConfig, TrainConfig
from model.networks import MultimodalEBMVAE
from model.train import make_optimizers, train_step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--modalities", type=int, default=5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}, M = {a.modalities}")
    for variant in VARIANTS:
        cfg = TrainConfig(model=ModelConfig(n_modalities=a.modalities), variant=variant, warmup_iters=0)
        model = MultimodalEBMVAE(cfg.model)
        opt = make_optimizers(model, cfg)
        x = torch.rand(a.batch, a.modalities, 3, 28, 28)
        train_step(model, opt, x, cfg, 0)  # warm-up call
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            train_step(model, opt, x, cfg, 0)
            times.append(time.perf_counter() - t)
        times.sort()
        print(f"{variant:>20}: median {times[len(times) // 2]:.3f} s/iter  (min {times[0]:.3f}, max {times[-1]:.3f})")


if __name__ == "__main__":
    main()
