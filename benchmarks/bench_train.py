"""Time one training iteration of each variant:
    python -m benchmarks.bench_train [--batch 64] [--repeats 10] [--device auto|cpu|cuda|mps] [--amp]
                                     [--variants full,vae]

Random data of the real shape (batch x M x 3 x 28 x 28), the default TrainConfig chains (30 data-space
and 10 latent Langevin steps), after warm-up (so the EBM and both revisions run).
"""
import argparse
import time

import torch

from model.config import VARIANTS, ModelConfig, TrainConfig
from model.device import resolve_device
from model.networks import MultimodalEBMVAE
from model.train import make_optimizers, train_step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=64, help="tuples per training step (default 64)")
    p.add_argument("--modalities", type=int, default=5, help="image modalities of the model (default 5)")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per variant (default 10)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants to time")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {device} ({name}), batch {a.batch}, M = {a.modalities}"
          + (", bfloat16 autocast" if a.amp and device.type == "cuda" else ""))
    for variant in a.variants.split(","):
        cfg = TrainConfig(model=ModelConfig(n_modalities=a.modalities), variant=variant, warmup_iters=0)
        model = MultimodalEBMVAE(cfg.model).to(device)
        opt = make_optimizers(model, cfg)
        x = torch.rand(a.batch, a.modalities, 3, 28, 28, device=device)
        train_step(model, opt, x, cfg, 0, amp=a.amp)  # warm-up call
        times = []
        for _ in range(a.repeats):
            _sync(device)
            t = time.perf_counter()
            train_step(model, opt, x, cfg, 0, amp=a.amp)
            _sync(device)
            times.append(time.perf_counter() - t)
        times.sort()
        print(f"{variant:>20}: median {times[len(times) // 2]:.3f} s/iter  (min {times[0]:.3f}, max {times[-1]:.3f})")


if __name__ == "__main__":
    main()
