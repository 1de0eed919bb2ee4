"""Sample a checkpoint: every stage of conditional generation and of prior (joint) samples, written in
the dump format that ``python -m model.evaluate --samples`` scores.

    python -m model.sample --checkpoint checkpoints/mebm --mnist ../shared/data/mnist.npz --out runs/mebm.npz
    python -m model.evaluate --samples runs/mebm.npz --mnist ../shared/data/mnist.npz --out runs/mebm_eval

Stages, in order (a stage with 0 steps is left out; model.langevin.STAGES): "proposal" (inference
model, or z from the prior, decoded), "latent" (latent revision on the generator posterior; conditional
only), "ebm_latent" (the EBM's revision in latent space), "data" (data revision on the EBM). The last
stage is the final one. Default chain settings: the checkpoint's own (its config.json); every chain knob has a
flag (--latent-steps, --ebm-latent-cond-step-size, ...: model.config.Chains). Prior samples start from N(0, I)
(--prior normal, the default), the ex-post prior beside the weights (--prior ex-post) or a prior file.

Keys of the .npz (images uint8 [.., 3, 28, 28], 0-255):
  cond_index             int64 [N]: the test tuples that were conditioned on (model.evaluate.eval_indices)
  cond/<S>/<stage>       [N, M - |S|, 3, 28, 28]: the generated modalities outside S (increasing order), S a
                         comma-separated list of observed modalities ("0", ..., "4"; all proper subsets
                         with --subsets all)
  joint/<stage>          [K, M, 3, 28, 28]: prior samples
  diverse/<m>/<stage>    [D, R, M, 3, 28, 28]: R samples from each of the first D test tuples with only
                         modality m observed (--n-diverse D, --repeats R)
  meta                   JSON string: name, checkpoint, n_modalities, data_seed, seed, stages, the chain
                         settings, the prior, and "diversity": {stage: mean pairwise RMS distance}
A picture of R samples from one input (rows: stages; one block of R rows per stage) with --image.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .cli import HelpFormatter, add_chain_args, add_data_args, chain_overrides
from .config import VARIANTS
from .data import load_dataset
from .device import DeviceError
from .evaluate import EvalError, eval_indices, load_sampler, ordered_stages, save_dump, subsets
from .networks import observed_mask
from .sampler import PRIORS, seeded_generator


def _stages(out: dict) -> dict:
    return {s: x for s, x in out.items() if s != "final"}


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """x [R, ...] samples from one input: the mean over pairs of their RMS pixel distance."""
    flat = x.flatten(1).double()
    r = len(flat)
    if r < 2:
        return 0.0
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    return (d.sum() / (r * (r - 1))).item()


def diversity(samples: torch.Tensor, observed: torch.Tensor) -> float:
    """samples [D, R, M, 3, 28, 28] (R samples from each of D inputs): mean pairwise RMS distance of the
    generated (unobserved) modalities across the R samples of one input, averaged over inputs and modalities."""
    free = (~observed).nonzero().flatten().tolist()
    return float(np.mean([mean_pairwise_distance(samples[i, :, m]) for i in range(len(samples)) for m in free]))


def generate(sampler, test, args, progress=True) -> tuple[dict, np.ndarray, dict, dict, dict]:
    """Every stage of conditional generation (--n-cond tuples per subset), prior samples (--n-joint) and the
    diversity samples (--n-diverse x --repeats), with the seeds model.evaluate uses."""
    M, dev = sampler.config.n_modalities, sampler.device
    chosen = subsets(M) if args.subsets == "all" else [(m,) for m in range(M)]
    idx = eval_indices(len(test), args.n_cond, args.seed)
    cond = {}
    jobs = [(s, i) for s in chosen for i in range(0, len(idx), args.batch)] if args.n_cond else []
    for s, i in tqdm(jobs, desc="conditional", disable=not progress, dynamic_ncols=True):
        x, _ = test.batch(torch.as_tensor(idx[i:i + args.batch]))
        observed = observed_mask(s, M)
        out = sampler.conditional(x, observed, generator=seeded_generator(args.seed, 1, *s, i, device=dev))
        for stage, xg in _stages(out).items():
            cond.setdefault(s, {}).setdefault(stage, []).append(xg[:, ~observed.to(dev)].cpu())
    cond = {s: {st: torch.cat(v) for st, v in by.items()} for s, by in cond.items()}
    joint = {}
    for i in tqdm(range(0, args.n_joint, args.batch), desc="prior samples", disable=not progress or not args.n_joint,
                  dynamic_ncols=True):
        out = sampler.joint(min(args.batch, args.n_joint - i), prior=args.prior_kind,
                            generator=seeded_generator(args.seed, 2, i, device=dev))
        for stage, xg in _stages(out).items():
            joint.setdefault(stage, []).append(xg.cpu())
    joint = {st: torch.cat(v) for st, v in joint.items()}
    diverse, div = {}, {}
    if args.n_diverse:
        x, _ = test.batch(torch.as_tensor(idx[:args.n_diverse] if len(idx) >= args.n_diverse
                                          else eval_indices(len(test), args.n_diverse, args.seed)))
        d, r = len(x), args.repeats
        for m in tqdm(range(M), desc="diversity", disable=not progress, dynamic_ncols=True):
            observed = observed_mask((m,), M)
            out = sampler.conditional(x.repeat_interleave(r, 0), observed,
                                      generator=seeded_generator(args.seed, 5, m, device=dev))
            for stage, xg in _stages(out).items():
                diverse[(m, stage)] = xg.cpu().view(d, r, *xg.shape[1:])
                div.setdefault(stage, []).append(diversity(diverse[(m, stage)], observed))
        div = {stage: float(np.mean(v)) for stage, v in div.items()}
    return cond, idx, joint, diverse, div


def save_picture(diverse: dict, m: int, path, row: int = 0):
    """The R samples from test tuple ``row`` with modality m observed: one block of R rows per stage."""
    blocks = []
    for (mm, _stage), x in diverse.items():
        if mm != m:
            continue
        s = x[row]                                              # [R, M, 3, 28, 28]
        r, M = s.shape[:2]
        img = (s.clamp(0, 1).permute(0, 3, 1, 4, 2).reshape(r * 28, M * 28, 3) * 255).round().byte().numpy()
        blocks += [img, np.full((6, M * 28, 3), 255, np.uint8)]
    Image.fromarray(np.concatenate(blocks[:-1], 0)).resize((blocks[0].shape[1] * 2, sum(b.shape[0] for b in
                                                           blocks[:-1]) * 2), Image.NEAREST).save(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.sample", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mebm",
                   help="a model directory (config.json + model.safetensors; a relative path missing here is looked "
                        "up in the repository checkout) or an ORG/NAME Hub repo")
    p.add_argument("--out", required=True, help="the dump to write (.npz; its folder is created)")
    add_data_args(p)
    p.add_argument("--n-cond", type=int, default=1000, help="test tuples conditioned on, per observed subset")
    p.add_argument("--n-joint", type=int, default=10000, help="prior (joint) samples")
    p.add_argument("--subsets", choices=("single", "all"), default="single",
                   help="condition on each single modality or on every non-empty proper subset")
    p.add_argument("--n-diverse", type=int, default=20, help="test tuples for the diversity figure (0 = off)")
    p.add_argument("--repeats", type=int, default=4, help="samples per input for the diversity figure")
    p.add_argument("--image", default=None, help="also write a PNG of --repeats samples from one input "
                                                 "(modality 0 observed), every stage")
    p.add_argument("--prior", default="normal", help="where prior samples start: normal = N(0, I), ex-post = the "
                                                     "ex-post prior beside the weights, or an ex-post prior file "
                                                     "(python -m model.prior)")
    p.add_argument("--variant", default=None, choices=VARIANTS,
                   help="'vae': no EBM stages (its EBM is untrained); none = read from the checkpoint's "
                        "train_config.json")
    p.add_argument("--name", default=None, help="the model's name in tables (none = the checkpoint folder's name)")
    p.add_argument("--seed", type=int, default=0, help="seeds the test tuples chosen and every chain")
    p.add_argument("--batch", type=int, default=500, help="chains run at once")
    p.add_argument("--device", default="auto", help="where the chains run: auto (cuda, then mps, then cpu), cpu, "
                                                    "cuda, cuda:N or mps")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (none = torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_chain_args(p)
    a = p.parse_args(argv)
    a.chains = chain_overrides(vars(a))
    for name in ("n_cond", "n_joint", "n_diverse"):
        if getattr(a, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be at least 0")
    for name in ("batch", "repeats", "threads"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    for name, v in a.chains.items():
        if v < 0:
            p.error(f"--{name.replace('_', '-')} must be at least 0")
    if not a.out.endswith(".npz"):
        p.error("--out must end in .npz")
    a.prior_kind = a.prior if a.prior in PRIORS else "ex-post"   # a file: loaded as the ex-post prior
    return a


def main(argv=None):
    a = parse_args(argv)
    try:
        t0 = time.time()
        if a.threads:
            torch.set_num_threads(a.threads)
        sampler = load_sampler(a.checkpoint, a.variant, a.device, a.prior, a.chains)
        cfg = sampler.config
        try:
            test = load_dataset("test", cfg.n_modalities, cfg.data_seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
        except Exception as e:
            raise EvalError(f"could not load the test split: {e}") from None
        cond, idx, joint, diverse, div = generate(sampler, test, a, progress=not a.quiet)
        stages = ordered_stages([*(st for by in cond.values() for st in by), *joint])
        meta = {"name": a.name or Path(a.checkpoint).resolve().name, "checkpoint": str(a.checkpoint),
                "variant": sampler.variant, "n_modalities": cfg.n_modalities, "data_seed": cfg.data_seed,
                "seed": a.seed, "stages": stages, "prior": a.prior if a.prior != "normal" else "N(0, I)",
                "diversity": div, "repeats": a.repeats, "chains": sampler.chains.flat(),
                "command": "python -m model.sample " + " ".join(sys.argv[1:] if argv is None else argv)}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"diverse/{m}/{stage}": (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                  for (m, stage), x in diverse.items()}   # the diversity samples beside the dump's arrays
        save_dump(a.out, cond, idx, joint, meta, extra=arrays)
        if diverse and a.image:
            Path(a.image).parent.mkdir(parents=True, exist_ok=True)
            save_picture(diverse, 0, a.image)
        print(f"wrote {a.out}: stages {stages}; {len(idx)} test tuples x {len(cond)} subsets, "
              f"{a.n_joint} prior samples; diversity " + json.dumps({k: round(v, 4) for k, v in div.items()})
              + f"; {(time.time() - t0) / 60:.1f} min")
    except (EvalError, DeviceError) as e:
        sys.exit(f"error: {e}")
    except (OSError, ValueError) as e:
        sys.exit(f"error: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
