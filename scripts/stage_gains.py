"""What each revision stage changes in conditional coherence, paired, with a bootstrap interval.

    python -m scripts.stage_gains runs/dumps/NAME.npz --mnist ../shared/data/mnist.npz \
        --classifier checkpoints/classifier checkpoints/classifier_b --out runs/eval/NAME_gains.md

The dump (``python -m model.sample``) holds every stage of conditional generation from each single
observed modality over the same test tuples, so the stages can be compared sample by sample: for each
judge, each stage's coherence (mean over the observed modalities, as ``model.evaluate``), the change
from the stage before it, and a 95 % percentile-bootstrap interval of that change, resampling test
tuples (all of a tuple's generations move together; seeded). Also a second model's dump can be
compared the same way (``--versus``), e.g. the MoE VAE's proposals against our final stage: the two
dumps must hold the same test tuples. ``--joint`` does the same for the dump's prior (joint) samples,
which pass through the stages one by one too: a sample counts when the judge reads all M modalities as
one digit; the bootstrap resamples the prior samples.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from model.cli import HelpFormatter, add_data_args
from model.data import load_dataset
from model.evaluate import DumpSampler, EvalError, load_classifier
from model.metrics import bootstrap_interval as bootstrap, hits, one_digit
from model.networks import observed_mask


def correctness(dump: DumpSampler, clf, test, batch=500) -> dict[str, np.ndarray]:
    """{stage: float [N, M * (M - 1)]}: 1 where the judge reads a generated modality as the tuple's digit,
    per test tuple (row) and (observed modality, generated modality) pair (column)."""
    M = test.x.shape[1]
    idx = dump.f["cond_index"]
    cols = {}
    for m in range(M):
        observed = observed_mask((m,), M)
        if (m,) not in dump.subsets:
            raise EvalError(f"the dump has no generation from modality {m} alone")
        for i in range(0, len(idx), batch):
            b = idx[i:i + batch]
            x, y = test.batch(torch.as_tensor(b))
            for stage, xg in dump.conditional(b, x, observed, None).items():
                digit, _ = clf.predict(xg)
                cols.setdefault(stage, {}).setdefault(m, []).append(hits(digit, y, observed).numpy())
    return {s: np.concatenate([np.concatenate(v) for _, v in sorted(by.items())], axis=1) for s, by in cols.items()}


@torch.no_grad()
def joint_correctness(dump: DumpSampler, clf, batch=500) -> dict[str, np.ndarray]:
    """{stage: float [K, 1]}: 1 where the judge reads all modalities of a prior sample as one digit."""
    out = {}
    for i in range(0, dump.n_prior, batch):
        for stage, xg in dump.prior(i, min(batch, dump.n_prior - i), None).items():
            digit, _ = clf.predict(xg)
            out.setdefault(stage, []).append(one_digit(digit).float().numpy()[:, None])
    return {s: np.concatenate(v) for s, v in out.items()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.stage_gains", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("dump", help="a sample dump (.npz) from python -m model.sample")
    p.add_argument("--classifier", nargs="+", default=["checkpoints/classifier", "checkpoints/classifier_b"],
                   help="one or more judges (model.classifier folders; the bundled ones are found from any "
                        "folder); each gets its own rows")
    p.add_argument("--names", nargs="+", default=["A", "B"],
                   help="the judges' names in the table, in --classifier order")
    p.add_argument("--versus", default=None,
                   help="another dump of the same test tuples: its stage --versus-stage against this dump's --stage")
    p.add_argument("--versus-stage", default="proposal", help="the stage of --versus to compare with")
    p.add_argument("--stage", default=None,
                   help="with --versus: the stage of this dump to compare (none = its last stage, the final one)")
    p.add_argument("--joint", action="store_true",
                   help="the prior (joint) samples' stages instead of the conditionals'")
    add_data_args(p)
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (none = torch's default)")
    p.add_argument("--out", default=None, help="also write the table (markdown) here (none = print it only)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        dump = DumpSampler(args.dump)
        versus = DumpSampler(args.versus) if args.versus else None
        if versus is not None and not args.joint and not np.array_equal(versus.f["cond_index"], dump.f["cond_index"]):
            raise EvalError("the two dumps condition on different test tuples (make both with the same --n-cond "
                            "and --seed)")
        M, seed = dump.meta["n_modalities"], dump.meta.get("data_seed", 0)
        if args.joint:
            if not dump.n_prior:
                raise EvalError(f"{args.dump} holds no prior samples")
            if versus is not None and versus.n_prior != dump.n_prior:
                raise EvalError("the two dumps hold different numbers of prior samples")
            what = f"Joint coherence of {dump.n_prior} prior samples"
            unit = "prior samples"
        else:
            test = load_dataset("test", M, seed, args.mnist, args.cache_dir, args.dataset, args.data_dir)
            what = (f"Conditional coherence from one observed modality, {len(dump.f['cond_index'])} test tuples "
                    f"per modality")
            unit = "test tuples"
        score = joint_correctness if args.joint else (lambda d, clf: correctness(d, clf, test))
        lines = [f"{what} ({Path(args.dump).name}); change from the row above, with its 95 % bootstrap interval "
                 f"over {unit} ({args.boot} resamples).", "",
                 "| judge | stage | coherence | change | 95 % interval |", "|---|---|---|---|---|"]
        if len(args.names) < len(args.classifier):
            raise EvalError(f"--names needs a name for each of the {len(args.classifier)} judges")
        for path, judge in zip(args.classifier, args.names):
            clf = load_classifier(path, M, seed)
            right = score(dump, clf)
            stages = list(right)
            rows = [(Path(args.dump).stem, s, right[s]) for s in stages]
            if versus is not None:
                other = score(versus, clf)
                if args.versus_stage not in other:
                    raise EvalError(f"{args.versus} has no stage {args.versus_stage!r} (it has {', '.join(other)})")
                mine = rows[-1] if args.stage is None else next((r for r in rows if r[1] == args.stage), None)
                if mine is None:
                    raise EvalError(f"{args.dump} has no stage {args.stage!r} (it has {', '.join(stages)})")
                rows = [(Path(args.versus).stem, args.versus_stage, other[args.versus_stage]), mine]
            prev = None
            for name, stage, r in rows:
                cell = f"{100 * r.mean():.1f}"
                if prev is None:
                    lines.append(f"| {judge} | {name}: {stage} | {cell} | | |")
                else:
                    d = (r - prev).mean(axis=1)
                    lo, hi = bootstrap(d, args.boot, args.seed)
                    lines.append(f"| {judge} | {name}: {stage} | {cell} | {100 * d.mean():+.2f} | "
                                 f"[{100 * lo:+.2f}, {100 * hi:+.2f}] |")
                prev = r
    except (EvalError, OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
