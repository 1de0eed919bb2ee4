"""The evaluation's report: the markdown table of one metrics.json, the comparison of several, and the figures
(sampling-efficiency curve, trends, the FD-coherence plane, a grid of prior samples). Reads what
``model.evaluate`` writes; metrics.json files of earlier versions (``coherence_joint`` in the summary) read too."""
from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from . import render
from .langevin import stage_title


class ReportError(ValueError):
    """A metrics file that is missing or does not fit the others (one-line message)."""


def stage_label(r: dict, stage: str) -> str:
    """A stage's name in tables (model.langevin.stage_title), saying when the data chain started from noise."""
    if stage == "data" and (r["settings"].get("chains") or {}).get("data_init") == "noise":
        return "EBM chain from noise (observed clamped)"
    return stage_title(stage)


def write_report(folder, stem: str, r: dict, md: str) -> Path:
    """A command's result ``r`` as FOLDER/STEM.json and its tables ``md`` as FOLDER/STEM.md (the folder created)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(r, indent=2))
    (out / f"{stem}.md").write_text(md)
    return out


def read_metrics(path) -> dict:
    """A metrics.json, its summary in the current keys (``joint_coherence``; earlier files: ``coherence_joint``)."""
    if not Path(path).is_file():
        raise ReportError(f"metrics file not found: {str(path)!r}")
    r = json.loads(Path(path).read_text())
    for s in (r.get("summary") or {}).values():
        if "coherence_joint" in s:   # the key of earlier versions
            s.setdefault("joint_coherence", s.pop("coherence_joint"))
    return r


def pct(v) -> str:
    """A fraction as a percentage with one decimal ("–" for none)."""
    return "–" if v is None else f"{100 * v:.1f}"


def two_decimals(v) -> str:
    """A number with two decimals ("–" for none)."""
    return "–" if v is None else f"{v:.2f}"


def markdown(r: dict) -> str:
    M = r["settings"]["n_modalities"]
    lines = [f"# Evaluation: {r['name']}", "",
             f"Source: `{r['source']}`. Test tuples conditioning: {r['settings']['n_cond']}; prior samples: "
             f"joint coherence {r['settings']['n_joint']}, Fréchet distance {r['settings']['n_fid']} per modality "
             f"against {r['settings']['n_fid_real']} real test images. Seed {r['settings']['seed']}.",
             "Digit entropy: entropy of the digits read in prior samples / log 10 (1 = all digits equally often; "
             "a collapsed generator scores high joint coherence with a low digit entropy).",
             f"Fréchet distance feature space: **{r['settings']['feature_space']}** (comparable only within "
             f"this space; not an FID).", "",
             "Coherence in %. Conditional: mean over the subsets of each size of the accuracy of the generated "
             "missing modalities. FD: mean over modalities.", "",
             "| stage | " + " | ".join(f"cond. {k} in" for k in range(1, M))
             + " | cond. mean | joint | digit entropy | FD |",
             "|---|" + "---|" * (M + 3)]
    for stage in r["stages"]:
        c = r["conditional"].get(stage)
        p = r["prior"].get(stage, {})
        row = [stage_label(r, stage)] + [pct(c["by_size"].get(str(k))) if c else "–" for k in range(1, M)]
        row += [pct(c["mean"]) if c else "–", pct(p.get("joint_coherence")), two_decimals(p.get("digit_entropy")),
                two_decimals(p.get("fd_mean"))]
        lines.append("| " + " | ".join(row) + " |")
    if "latent" in r["stages"]:
        lines += ["", "Prior samples have no latent revision (the posterior is the prior): their latent-revised "
                      "joint and FD are the proposal's."]
    fixes = [(stage, c) for stage, c in r["conditional"].items() if c.get("n_wrong") is not None][1:]
    if fixes:   # every stage against the proposal (older metrics.json files have no fix and break rates)
        lines += ["", "Conditional generation against the proposal, over every generated modality: fix rate = share "
                      "of those read wrong at the proposal that the stage reads right; break rate = the reverse.", "",
                  "| stage | fix rate % | n wrong at the proposal | break rate % | n right at the proposal |",
                  "|---|---|---|---|---|"]
        lines += [f"| {stage_label(r, stage)} | {pct(c['fix_rate'])} | {c['n_wrong']} | {pct(c['break_rate'])} | "
                  f"{c['n_right']} |" for stage, c in fixes]
    ones = [(stage, c["one_to_one"]) for stage, c in r["conditional"].items() if c.get("one_to_one")]
    if ones:
        pairs = list(ones[0][1])
        lines += ["", "1 -> 1 coherence % (modality m observed alone -> modality j):", "",
                  "| stage | " + " | ".join(p.replace(">", " → ") for p in pairs) + " |", "|---|" + "---|" * len(pairs)]
        lines += [f"| {stage_label(r, stage)} | " + " | ".join(pct(o.get(p)) for p in pairs) + " |"
                  for stage, o in ones]
    lines += ["", "Fréchet distance per modality:", "",
              "| stage | " + " | ".join(f"m{m}" for m in range(M)) + " |", "|---|" + "---|" * M]
    for stage, p in r["prior"].items():
        if "fd" in p:
            lines.append(f"| {stage_label(r, stage)} | " + " | ".join(two_decimals(v) for v in p["fd"]) + " |")
    ref = r.get("reference", {})
    if ref:
        lines += ["", f"Reference, real test tuples: joint coherence {pct(ref['joint_coherence_real'])} %, "
                      f"classifier accuracy per modality {[round(100 * a, 1) for a in ref['classifier_accuracy']]} %."]
    cv = r.get("curve")
    if cv:
        lines += ["", f"Sampling-efficiency curve ({cv['n']} prior samples, {cv['n']} one-modality conditionals):", "",
                  "| data steps | " + " | ".join(str(s) for s in cv["steps"]) + " |",
                  "|---|" + "---|" * len(cv["steps"])]
        for init in ("generator", "noise"):
            for key, fmt in (("joint_coherence", pct), ("coherence_cond1", pct), ("fd_mean", two_decimals)):
                lines.append(f"| {key} ({init} init) | " + " | ".join(fmt(v) for v in cv[init][key]) + " |")
    lines += ["", f"Evaluation took {r['minutes']:.1f} min."]
    return "\n".join(lines) + "\n"


def plot_curve(cv: dict, path):
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(axes, ("coherence_cond1", "joint_coherence", "fd_mean"),
                              ("conditional coherence (1 observed)", "joint coherence", "Fréchet distance (mean)")):
        for init, style in (("generator", "o-"), ("noise", "s--")):
            ax.plot(cv["steps"], cv[init][key], style, label=f"chain from {init}")
        ax.set_xlabel("data-space Langevin steps")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def save_sample_grid(images: dict, path):
    """Prior samples {stage: [n, M, 3, 28, 28]} side by side, one grid per stage, as a PNG."""
    Image.fromarray(render.side_by_side([render.sample_grid(x) for x in images.values()], gap=6)).save(path)


def plot_trend(runs, xs, xlabel, path):
    """Each summary metric (proposal and revised) against a number per run, e.g. the training data steps."""
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(axes, ("coherence_cond1", "joint_coherence", "fd_mean"),
                              ("coherence, 1 observed modality", "joint coherence", "Fréchet distance")):
        for stage, style in (("proposal", "o--"), ("revised", "s-")):
            pts = [(x, r["summary"][stage].get(key)) for x, r in zip(xs, runs)
                   if r["summary"][stage].get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=stage)
        ax.set_xlabel(xlabel)
        ax.set_xticks(xs)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def compare(paths, out, names=None, x=None, xlabel="training data-space Langevin steps") -> str:
    """The combined table of several metrics.json files and the headline plane (FD vs coherence).
    With ``x`` (one number per file), also each metric against it (trend.png), e.g. the step ablation."""
    runs = []
    for i, p in enumerate(paths):
        r = read_metrics(p)
        if names:
            r["name"] = names[i]
        runs.append(r)
    if x is not None and len(x) != len(runs):
        raise ReportError(f"--x has {len(x)} numbers for {len(runs)} metrics files")
    spaces = {r["settings"]["feature_space"] for r in runs}
    M = runs[0]["settings"]["n_modalities"]
    lines = ["# Models compared", "", f"Fréchet distance feature space: {' / '.join(sorted(spaces))}."
             + (" **The runs use different feature spaces: their FDs do not compare.**" if len(spaces) > 1 else ""),
             "Coherence in %; FD mean over modalities; 'revised' = the last stage of each model.", "",
             "| model | samples | " + " | ".join(f"cond. {k} in" for k in range(1, M))
             + " | cond. mean | joint | digit entropy | FD |",
             "|---|---|" + "---|" * (M + 3)]
    for r in runs:
        for stage in r["stages"]:
            c, p = r["conditional"].get(stage), r["prior"].get(stage, {})
            row = [r["name"], stage_label(r, stage)]
            row += [pct(c["by_size"].get(str(k))) if c else "–" for k in range(1, M)]
            row += [pct(c["mean"]) if c else "–", pct(p.get("joint_coherence")), two_decimals(p.get("digit_entropy")),
                    two_decimals(p.get("fd_mean"))]
            lines.append("| " + " | ".join(row) + " |")
    md = "\n".join(lines) + "\n"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(md)

    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("coherence_cond", "joint_coherence"),
                              ("conditional coherence (mean over subset sizes)", "joint coherence")):
        for i, r in enumerate(runs):
            color = f"C{i % 10}"
            a, b = r["summary"]["proposal"], r["summary"]["revised"]
            if a.get("fd_mean") is None or a.get(key) is None:
                continue
            ax.scatter(a["fd_mean"], a[key], facecolors="none", edgecolors=color, s=60)
            if b["stage"] != a["stage"] and b.get(key) is not None:
                ax.scatter(b["fd_mean"], b[key], color=color, s=60)
                ax.annotate("", (b["fd_mean"], b[key]), (a["fd_mean"], a[key]),
                            arrowprops=dict(arrowstyle="->", color=color, alpha=0.6))
            ax.scatter([], [], color=color, label=r["name"])
        ax.set_xlabel(f"Fréchet distance ({'/'.join(sorted(spaces))})" if len(spaces) == 1 else "Fréchet distance")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="hollow: proposal, filled: revised", title_fontsize=8)
    fig.suptitle("Each model on the Fréchet distance – coherence plane (upper left is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "headline.png", dpi=120)
    (out / "comparison.json").write_text(json.dumps({r["name"]: r["summary"] for r in runs}, indent=2))
    if x is not None:
        plot_trend(runs, x, xlabel, out / "trend.png")
    return md




def energy_markdown(r: dict) -> str:
    """The table of one energy check (model.energy_check): every group's mean energy, its sd and the AUROC of the
    energy separating real test tuples from it."""
    st = r["settings"]
    lines = [f"# Energy check: {r['checkpoint']}", "",
             f"{st['n']} test tuples (seed {st['seed']}); as many samples and noise tuples per group. Joint samples "
             f"from {'the ex-post prior' if st['prior_used'] == 'ex-post' else 'N(0, I)'}; conditional samples "
             f"given one observed modality; data chains from uniform noise with the checkpoint's data step size "
             f"{st['data_step_size']:g} and noise {st['data_noise']:g}.",
             "AUROC: the share of (real, group) pairs in which the real tuple has the lower energy (1.0: every "
             "real tuple lower; 0.0: every member of the group lower).", "",
             "| group | n | mean energy | sd | AUROC real vs group |", "|---|---|---|---|---|"]
    for name, g in r["groups"].items():
        auc = "–" if g["auroc"] is None else f"{g['auroc']:.4f}"
        lines.append(f"| {name} | {g['n']} | {g['mean']:.2f} | {g['sd']:.2f} | {auc} |")
    paired = [(name, g["paired"]) for name, g in r["groups"].items() if g.get("paired") is not None]
    lines += ["", *(f"{name}, each against its own real tuple: the real tuple is the lower in {p:.1%} of the tuples "
                    "(50 %: the energy does not tell them apart)." for name, p in paired)] if paired else []
    return "\n".join(lines) + "\n"
