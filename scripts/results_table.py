"""The README's results table from sample dumps scored by both judge families.

    python -m scripts.results_table NAME [NAME ...] --eval-dir runs/eval --dump-dir runs/dumps --out runs/eval/results

For every NAME it reads EVAL_DIR/NAME_A/metrics.json and EVAL_DIR/NAME_B/metrics.json (written by
``python -m model.evaluate --samples DUMP_DIR/NAME.npz --classifier checkpoints/classifier`` and
``--classifier checkpoints/classifier_b``) and DUMP_DIR/NAME.npz (its meta: the diversity figure,
written by ``python -m model.sample``). Writes OUT/results.md (one row per model and stage: conditional
coherence from one observed modality and joint coherence by judge A / judge B, the normalised entropy of
the digits of the coherent joint tuples by each judge, FD in judge A's feature space, diversity) and
OUT/plane.png (FD against joint and conditional coherence, both judges; hollow = proposal, filled = last
stage). A name whose files are missing is skipped with a message.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from model.cli import HelpFormatter
from model.langevin import stage_title
from model.report import pct


def _num(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v + 0.0).replace("-0.00", "0.00")   # an entropy of -1e-9 reads 0.00


def _prior_label(prior: str, n_joint: int) -> str:
    """'N(0, I)', 'ex-post GMM' (a prior file), '... (PoE)' where the file's fit says --latents poe, ', 10,000'."""
    label = prior
    if prior.endswith(".safetensors"):
        fit = Path(prior).with_suffix(".json")
        poe = fit.is_file() and json.loads(fit.read_text()).get("latents") == "poe"
        label = "ex-post GMM (PoE)" if poe else "ex-post GMM"
    elif prior.startswith("ex-post Gaussian mixture"):
        label = "ex-post GMM"
    return label + (f", {n_joint:,}" if n_joint and n_joint != 2000 else "")


def load(name, eval_dir, dump_dir, label=None):
    a, b = Path(eval_dir, f"{name}_A", "metrics.json"), Path(eval_dir, f"{name}_B", "metrics.json")
    if not a.is_file() or not b.is_file():
        print(f"skipping {name}: {a} or {b} missing", file=sys.stderr)
        return None
    meta = {}
    dump = Path(dump_dir, f"{name}.npz")
    if dump.is_file():
        with np.load(dump, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
    return {"name": label or name, "A": json.loads(a.read_text()), "B": json.loads(b.read_text()), "meta": meta}


def rows(r):
    A, B, meta = r["A"], r["B"], r["meta"]
    out = []
    for stage in A["stages"]:
        ca, cb = A["conditional"].get(stage), B["conditional"].get(stage)
        pa, pb = A["prior"].get(stage, {}), B["prior"].get(stage, {})
        out.append({
            "model": r["name"], "stage": stage,
            "prior": _prior_label(meta.get("prior", "N(0, I)"), A["settings"]["n_joint"]),
            "cond1_A": ca and ca["by_size"].get("1"), "cond1_B": cb and cb["by_size"].get("1"),
            "joint_A": pa.get("joint_coherence"), "joint_B": pb.get("joint_coherence"),
            "entropy_A": pa.get("coherent_digit_entropy"), "entropy_B": pb.get("coherent_digit_entropy"),
            "fd": pa.get("fd_mean"), "diversity": (meta.get("diversity") or {}).get(stage),
            "n_cond": A["settings"]["n_cond"], "n_joint": A["settings"]["n_joint"]})
    return out


def markdown(all_rows) -> str:
    lines = ["| model | joint samples from | stage | cond. 1 in, A | cond. 1 in, B | joint, A | joint, B | "
             "coherent-digit entropy A / B | FD (A features) | diversity |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for x in all_rows:
        lines.append(f"| {x['model']} | {x['prior']} | {stage_title(x['stage'])} | {pct(x['cond1_A'])} | "
                     f"{pct(x['cond1_B'])} | {pct(x['joint_A'])} | {pct(x['joint_B'])} | "
                     f"{_num(x['entropy_A'])} / {_num(x['entropy_B'])} | {_num(x['fd'], '{:.0f}')} | "
                     f"{_num(x['diversity'], '{:.3f}')} |")
    return "\n".join(lines) + "\n"


def plane(runs, path):
    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("joint", "cond1"), ("joint coherence (prior samples)",
                                                         "conditional coherence (1 observed)")):
        for i, r in enumerate(runs):
            color = f"C{i}" if len(runs) <= 10 else colormaps["tab20"](i % 20)   # eleven runs or more: twenty colours
            rs = [x for x in rows(r) if x["fd"] is not None and x[f"{key}_A"] is not None]
            if not rs:
                continue
            for judge, marker in (("A", "o"), ("B", "s")):
                first, last = rs[0], rs[-1]
                ax.scatter(first["fd"], first[f"{key}_{judge}"], facecolors="none", edgecolors=color, marker=marker,
                           s=50)
                ax.scatter(last["fd"], last[f"{key}_{judge}"], color=color, marker=marker, s=50)
                ax.plot([x["fd"] for x in rs], [x[f"{key}_{judge}"] for x in rs], color=color, alpha=0.4,
                        ls="-" if judge == "A" else "--")
            ax.scatter([], [], color=color, label=f"{r['name'].strip('*')}, {rs[0]['prior']}")
        ax.set_xlabel("Fréchet distance (judge A's hidden features)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, title="o judge A, □ judge B; hollow: proposal, filled: last stage", title_fontsize=7)
    fig.suptitle("Each model on the FD – coherence plane (upper left is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.results_table", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("names", nargs="+", help="dump names (DUMP_DIR/NAME.npz, EVAL_DIR/NAME_A, EVAL_DIR/NAME_B)")
    p.add_argument("--eval-dir", default="runs/eval", help="where the evaluations were written")
    p.add_argument("--dump-dir", default="runs/dumps", help="where the dumps are")
    p.add_argument("--out", default="runs/eval/results", help="output folder")
    p.add_argument("--labels", default=None, help="display names, '|'-separated, one per NAME (none = the names)")
    a = p.parse_args(argv)
    labels = a.labels.split("|") if a.labels else a.names
    if len(labels) != len(a.names):
        p.error(f"--labels has {len(labels)} names for {len(a.names)} dumps")
    runs = [r for r in (load(n, a.eval_dir, a.dump_dir, lab) for n, lab in zip(a.names, labels)) if r]
    if not runs:
        sys.exit("error: no complete evaluation among the names given")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    all_rows = [x for r in runs for x in rows(r)]
    md = markdown(all_rows)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(all_rows, indent=2))
    plane(runs, out / "plane.png")
    print(md)
    print(f"wrote {out}/results.md, results.json, plane.png")


if __name__ == "__main__":
    main()
