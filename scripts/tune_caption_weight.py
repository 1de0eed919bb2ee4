"""Choose the caption's weight in the latent revision (TextConfig.latent_weight, beta in
U(z) = ||z||^2 / 2 - beta log p(t | z)) of a model with captions, without the test set's held-out wordings.

Images from the caption alone, on N *training* tuples (a seeded draw), in two wordings: their training captions,
and NEW_WORDINGS, wordings of our own that no template of model.captions uses (sentences the text decoder never
saw, as the held-out test wordings are, but other ones). For every beta of the grid it prints the latent
revision's change of caption -> image coherence (paired, the same tuples and chain noise at the proposal and after
the latent revision) with its 95 % bootstrap interval, by judges A and B. Only the proposal and the latent
revision run (the EBM stages come after and do not change the comparison).

    python -m scripts.tune_caption_weight --checkpoint checkpoints/mebm_captions --mnist ../shared/data/mnist.npz \\
        --weights 1,0.5,0.25,0.1,0.05,0
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np
import torch

from model.captions import DIGIT_WORDS, NUMERALS, TEMPLATES, _fill
from model.cli import HelpFormatter, add_data_args
from model.data import load_dataset
from model.evaluate import EvalError, eval_indices, load_classifier, load_sampler
from model.metrics import bootstrap_interval
from model.sampler import seeded_generator

NEW_WORDINGS = ("the {thickness} digit {digit}", "{size} and {thickness}, the number {digit}",
                "a {digit}, {thickness}, written {slant}", "{digit} with a {thickness} stroke and {slant}",
                "a {size} {digit} that is {slant}", "the number {digit} {slant}")
assert not set(NEW_WORDINGS) & set(TEMPLATES.values())


def new_wordings(labels: np.ndarray, classes: np.ndarray, seed: int) -> list[str]:
    """One caption per tuple in a wording of NEW_WORDINGS (drawn uniformly), the digit as its word or numeral."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for label, c in zip(labels, classes):
        digit = NUMERALS[label] if rng.random() < 0.5 else DIGIT_WORDS[label]
        out.append(_fill(NEW_WORDINGS[rng.integers(len(NEW_WORDINGS))], digit, c))
    return out


def _weights(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights are numbers, comma-separated, got {text!r}") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.tune_caption_weight", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mebm_captions", help="a model directory with the caption "
                   "modality (found from any folder)")
    add_data_args(p)
    p.add_argument("--classifier", default="checkpoints/classifier", help="judge A (the bundled one)")
    p.add_argument("--classifier-b", default="checkpoints/classifier_b", help="judge B (the bundled one)")
    p.add_argument("--weights", type=_weights, default=[1.0, 0.5, 0.25, 0.1, 0.05, 0.0],
                   help="the caption weights beta to score, comma-separated")
    p.add_argument("--n", type=int, default=1000, help="training tuples")
    p.add_argument("--batch", type=int, default=250, help="chains run at once")
    p.add_argument("--seed", type=int, default=5, help="seeds the tuples, their new wordings, the chains and the "
                   "bootstrap")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (none = torch's default)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default=None, help="also write the results as JSON here (none = print only)")
    return p.parse_args(argv)


@torch.no_grad()
def latent_change(sampler, judges: dict, texts, labels, args) -> dict:
    """{judge: {"proposal", "latent", "change", "low", "high"}}: caption -> image coherence at the proposal and
    after the latent revision, and the paired change with its 95 % bootstrap interval."""
    hits = {s: {j: [] for j in judges} for s in ("proposal", "latent")}
    for i in range(0, len(texts), args.batch):
        y = torch.as_tensor(labels[i:i + args.batch])
        frames = sampler.frames(None, None, text=sampler.encode(list(texts[i:i + args.batch])), every=10 ** 9,
                                generator=seeded_generator(args.seed, 31, i), ebm_latent_cond_steps=0, data_steps=0)
        last = {f.stage: f for f in frames}
        for stage in hits:
            for j, clf in judges.items():
                hits[stage][j].append((clf.predict(last[stage].x.cpu())[0] == y[:, None]).float().mean(1).numpy())
    out = {}
    for j in judges:
        p, lat = (np.concatenate(hits[s][j]) for s in ("proposal", "latent"))
        low, high = bootstrap_interval(lat - p, 2000, args.seed)
        out[j] = {"proposal": float(p.mean()), "latent": float(lat.mean()), "change": float((lat - p).mean()),
                  "low": low, "high": high}
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        sampler = load_sampler(args.checkpoint, device=args.device)
        cfg = sampler.config
        if cfg.text is None:
            raise EvalError(f"the checkpoint {args.checkpoint!r} has no caption modality")
        if sampler.chains.latent.steps == 0:
            raise EvalError(f"the checkpoint {args.checkpoint!r} runs no latent revision (latent steps 0)")
        judges = {"A": load_classifier(args.classifier, cfg.n_modalities, cfg.data_seed),
                  "B": load_classifier(args.classifier_b, cfg.n_modalities, cfg.data_seed)}
        train = load_dataset("train", cfg.n_modalities, cfg.data_seed, args.mnist, args.cache_dir, args.dataset,
                             args.data_dir, captions=True)
    except (EvalError, OSError, RuntimeError, ValueError) as e:
        sys.exit(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    idx = eval_indices(len(train), args.n, args.seed)
    labels = train.y.numpy()[idx]
    wordings = {"training": np.asarray(train.captions.text)[idx],
                "new": np.asarray(new_wordings(labels, train.captions.classes[idx], args.seed))}
    text_cfg, rows = cfg.text, []
    for beta in args.weights:
        sampler.model.config.text = dataclasses.replace(text_cfg, latent_weight=beta)
        row = {"weight": beta, **{w: latent_change(sampler, judges, texts, labels, args)
                                  for w, texts in wordings.items()}}
        rows.append(row)
        print(f"beta {beta:g}: " + "; ".join(
            f"{w} wordings " + ", ".join(f"{j} {100 * c['change']:+.2f} [{100 * c['low']:+.2f}, {100 * c['high']:+.2f}]"
                                         for j, c in row[w].items()) for w in wordings), flush=True)
    sampler.model.config.text = text_cfg
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "n": len(idx), "seed": args.seed,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
