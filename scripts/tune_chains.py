"""Choose the test-time latent chains of a checkpoint on a validation split, not on the test set.

Conditional generation from one observed modality, on N *training* tuples per modality (never the test
tuples that the results table uses), scored by ONE judge (default: judge A, checkpoints/classifier), so
that the other judge (B) stays independent for the table. For every setting of the grid it prints the
coherence of each stage and the change a stage brings over the one before it, plus the diversity of the
final stage (mean pairwise RMS distance between R samples from one input; model.sample.diversity).

    python -m scripts.tune_chains --checkpoint checkpoints/mebm --mnist ../shared/data/mnist.npz \
        --latent 20:0.03:0.03,20:0.03:0.01,20:0.1:0.03 --ebm-latent 10:0.03:0.03 --data-steps 30

A setting is STEPS:STEP_SIZE:NOISE (model.config: temperature (noise / step_size)^2).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np
import torch
from tqdm import tqdm

from model.cli import HelpFormatter, add_data_args
from model.data import load_dataset
from model.evaluate import EvalError, load_classifier, load_sampler
from model.metrics import hits
from model.networks import observed_mask
from model.sample import diversity
from model.sampler import seeded_generator


def _setting(text: str) -> tuple[int, float, float]:
    try:
        steps, s, n = text.split(":")
        return int(steps), float(s), float(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is STEPS:STEP_SIZE:NOISE, got {text!r}") from None


def _settings(text: str) -> list[tuple[int, float, float]]:
    return [_setting(t) for t in text.split(",") if t.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.tune_chains", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mebm", help="a model directory (config.json + "
                   "model.safetensors; found from any folder)")
    add_data_args(p)
    p.add_argument("--classifier", default="checkpoints/classifier", help="the one judge used for choosing (the "
                   "bundled judge A, found from any folder)")
    p.add_argument("--latent", type=_settings, default=None,
                   help="latent-revision settings STEPS:STEP_SIZE:NOISE, comma-separated (none = the checkpoint's)")
    p.add_argument("--ebm-latent", type=_settings, default=None,
                   help="conditional EBM latent-chain settings STEPS:STEP_SIZE:NOISE, comma-separated "
                        "(none = the checkpoint's)")
    p.add_argument("--data-steps", type=int, default=None, help="data-revision steps (none = the checkpoint's)")
    p.add_argument("--n", type=int, default=200, help="validation (training) tuples per observed modality")
    p.add_argument("--repeats", type=int, default=4, help="samples per input for the diversity figure")
    p.add_argument("--n-diverse", type=int, default=20, help="inputs for the diversity figure")
    p.add_argument("--batch", type=int, default=200, help="chains run at once")
    p.add_argument("--seed", type=int, default=0, help="seeds the validation tuples and the chains")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (none = torch's default)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default=None, help="also write the results as JSON here (none = print only)")
    return p.parse_args(argv)


@torch.no_grad()
def score(sampler, clf, data, idx, kw, args) -> tuple[dict, float]:
    """Coherence per stage (mean over the single observed modalities), and the final stage's diversity."""
    M = sampler.config.n_modalities
    tally = {}
    for m in range(M):
        observed = observed_mask((m,), M)
        for i in range(0, len(idx), args.batch):
            x, y = data.batch(torch.as_tensor(idx[i:i + args.batch]))
            out = sampler.conditional(x, observed, generator=seeded_generator(args.seed, 11, m, i), **kw)
            for stage, xg in out.items():
                xg = xg.cpu()
                digit, _ = clf.predict(xg)
                right = hits(digit, y, observed)
                h = tally.setdefault(stage, [0.0, 0])
                h[0] += right.sum().item()
                h[1] += right.numel()
    x, _ = data.batch(torch.as_tensor(idx[:args.n_diverse]))
    div = []
    for m in range(M):
        observed = observed_mask((m,), M)
        rep = x.repeat_interleave(args.repeats, 0)
        final = sampler.conditional(rep, observed, generator=seeded_generator(args.seed, 15, m), **kw)["final"].cpu()
        div.append(diversity(final.view(len(x), args.repeats, *final.shape[1:]), observed))
    return {s: h[0] / h[1] for s, h in tally.items()}, float(np.mean(div))


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        sampler = load_sampler(args.checkpoint, device=args.device)
        cfg = sampler.config
        clf = load_classifier(args.classifier, cfg.n_modalities, cfg.data_seed)
        train = load_dataset("train", cfg.n_modalities, cfg.data_seed, args.mnist, args.cache_dir, args.dataset,
                             args.data_dir)
    except (EvalError, OSError, RuntimeError, ValueError) as e:
        sys.exit(f"error: {e}")
    idx = np.sort(np.random.default_rng([args.seed, 4242]).permutation(len(train))[:args.n])
    c = sampler.chains
    latent = args.latent or [(c.latent.steps, c.latent.step_size, c.latent.noise)]
    ebm = args.ebm_latent or [(c.ebm_latent_cond.steps, c.ebm_latent_cond.step_size, c.ebm_latent_cond.noise)]
    rows = []
    for (ls, lss, ln), (es, ess, en) in tqdm(list(itertools.product(latent, ebm)), desc="settings", dynamic_ncols=True):
        kw = dict(latent_steps=ls, latent_step_size=lss, latent_noise=ln, ebm_latent_cond_steps=es,
                  ebm_latent_cond_step_size=ess, ebm_latent_cond_noise=en, data_steps=args.data_steps)
        coh, div = score(sampler, clf, train, idx, kw, args)
        rows.append({"latent": [ls, lss, ln], "ebm_latent": [es, ess, en], "coherence": coh, "diversity": div})
        stages = [s for s in coh if s != "final"]
        steps = " ".join(f"{s} {100 * coh[s]:.1f}" + (f" ({100 * (coh[s] - coh[p]):+.1f})" if p else "")
                         for p, s in zip([None] + stages[:-1], stages))
        tqdm.write(f"latent {ls}:{lss:g}:{ln:g}  ebm_latent {es}:{ess:g}:{en:g}  |  {steps}  |  diversity {div:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "classifier": args.classifier, "n": args.n, "seed": args.seed,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
