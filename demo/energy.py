"""The energy check in the page: a histogram of the EBM energy of real test tuples, the sampler's proposals and
revised samples, data chains from noise and uniform noise, read from a small file beside the weights
(ENERGY_FILE, made from ``python -m model.energy_check``'s energy.json by this module), with a visitor's own run's
final energies marked, and one sentence that says what holds and what does not, from the file's numbers.

    python -m model.energy_check --checkpoint checkpoints/mebm --n 100 --noise-steps 30,100,300 --out runs/energy
    python -m demo.energy runs/energy/energy.json --out checkpoints/mebm/energy_check.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.cli import HelpFormatter
from model.hub import ENERGY_CHECK_FILE

ENERGY_FILE = ENERGY_CHECK_FILE
MAX_BYTES = 2 ** 20        # a larger file is not read (it is a few kB)
COND = "conditional (1 observed)"
# the groups the page shows: energy.json's name -> the page's
GROUPS = {"real": "real test tuples", f"{COND}: proposal": "proposals", f"{COND}: final": "revised samples",
          "data chain from noise, 30 steps": "chains from noise, 30 steps",
          "data chain from noise, 100 steps": "chains from noise, 100 steps", "uniform noise": "uniform noise"}
# read and shown when the check has them (model.energy_check --noise-steps 30,100,300)
OPTIONAL = {"data chain from noise, 300 steps": "chains from noise, 300 steps"}
NOISE_STEPS = (30, 100, 300)
# read when the check has it, for one clause of the sentence (not drawn: it lies on the real tuples' outline)
MISMATCHED = "mismatched: one modality from another digit"
COLORS = {"real test tuples": "#2ca02c", "proposals": "#ff7f0e", "revised samples": "#1f4e9c",
          "chains from noise, 30 steps": "#d62728", "chains from noise, 100 steps": "#9467bd",
          "chains from noise, 300 steps": "#8c564b", "uniform noise": "#7f7f7f"}


class EnergyFileError(ValueError):
    """An energy check file that is missing a group or is not one (one-line message)."""


@dataclass
class EnergyCheck:
    """The shipped check: the page's groups -> their energies, how many test tuples, and what made it."""

    energies: dict[str, np.ndarray]
    n: int
    source: str
    mismatched: np.ndarray | None = None   # real tuples with one modality from another digit (None: not checked)

    def mean(self, group: str) -> float:
        return float(self.energies[group].mean())

    def below_real(self, group: str) -> float:
        """The share of (real, group) pairs in which the group's member has the lower energy."""
        from model.energy_check import auroc
        return 1.0 - auroc(self.energies["real test tuples"], self.energies[group])


def slim(report: dict, source: str) -> dict:
    """What the page needs of an energy.json (model.energy_check): the energies of GROUPS (3 decimals), n, the
    settings and ``source`` (the command that made it)."""
    missing = [g for g in GROUPS if g not in report.get("energies", {})]
    if missing:
        raise EnergyFileError(f"the energy check has no group {missing[0]!r} (run it with --noise-steps 30,100)")
    return {"source": source, "n": report["settings"]["n"], "checkpoint": report.get("checkpoint"),
            "settings": {k: report["settings"].get(k) for k in ("seed", "prior_used", "data_step_size", "data_noise")},
            "energies": {name: [round(float(e), 3) for e in report["energies"][g]]
                         for g, name in {**GROUPS, **OPTIONAL}.items() if g in report["energies"]},
            **({"mismatched": [round(float(e), 3) for e in report["energies"][MISMATCHED]]}
               if MISMATCHED in report["energies"] else {})}


def load_energy_check(folder) -> EnergyCheck | None:
    """The check shipped in ``folder`` (None when there is none, or it is too large or not a check)."""
    path = Path(folder) / ENERGY_FILE if folder is not None else None
    if path is None or not path.is_file() or path.stat().st_size > MAX_BYTES:
        return None
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
        energies = {g: np.asarray(r["energies"][g], float).ravel()
                    for g in COLORS if g in GROUPS.values() or g in r["energies"]}   # in COLORS' order
        mis = np.asarray(r["mismatched"], float).ravel() if "mismatched" in r else None
        if any(len(e) < 2 or not np.isfinite(e).all() for e in [*energies.values(), *([mis] if mis is not None
                                                                                    else [])]):
            return None
        return EnergyCheck(energies, int(r["n"]), str(r.get("source", ""))[:300], mis)
    except (ValueError, KeyError, TypeError, OSError):
        return None


def sentence(check: EnergyCheck | None) -> str:
    """What the check shows, plainly: whether real < revised < proposal holds, and for how many steps data chains
    from uniform noise stay above the real tuples (every number from the file)."""
    if check is None:
        return "No energy check is shipped with these weights (`python -m demo.energy` makes one)."
    real, rev, prop = (check.mean(g) for g in ("real test tuples", "revised samples", "proposals"))
    order = real < rev < prop
    holds = (f"**{'Holds' if order else 'Does not hold'}:** real test tuples (mean {real:.1f}) "
             f"{'<' if real < rev else '≥'} revised samples ({rev:.1f}) {'<' if rev < prop else '≥'} proposals "
             f"({prop:.1f}).")
    steps = [s for s in NOISE_STEPS if f"chains from noise, {s} steps" in check.energies]
    above, words = {}, []
    for s in steps:
        g = f"chains from noise, {s} steps"
        below = check.below_real(g)
        above[s] = check.mean(g) >= real
        where = ("above the real tuples' mean" + ("" if below == 0 else f", lower than a real tuple in {below:.1%} "
                                                                        "of the (real, chain) pairs")
                 if above[s] else "below every real tuple" if below == 1 else f"below {below:.0%} of the real tuples")
        words.append(f"after {s} steps their mean is {check.mean(g):.1f}, {where}")
    detail = "; ".join(words)
    if all(above.values()):
        chains = (f"**Holds:** data chains from uniform noise stay above real tuples for {steps[-1]} steps "
                  f"({detail}).")
    elif not above[steps[0]]:
        chains = (f"**Does not hold:** data chains from uniform noise fall below real tuples within {steps[0]} steps "
                  f"while they still look like noise ({detail}): away from generated tuples, lower is not more "
                  "data-like.")
    else:
        good = steps[:[above[s] for s in steps].index(False)]
        bad = next(s for s in steps if not above[s])
        chains = (f"**Holds for {good[-1]} steps, not for {bad}:** data chains from uniform noise stay above real "
                  f"tuples for {good[-1]} steps, then fall below them while they still look mostly like noise "
                  f"({detail}): far from the samples it was trained on, lower is not more data-like.")
    return (f"{holds} {chains}{coherence(check)} ({check.n} test tuples, as many of each group; the page's run is "
            "marked below.)")


def coherence(check: EnergyCheck) -> str:
    """One clause: does the energy tell a real tuple from the same tuple with one modality from another digit? Each
    mismatched tuple against its own real tuple (the check stores both in one order)."""
    real = check.energies["real test tuples"]
    if check.mismatched is None or len(check.mismatched) != len(real):
        return ""
    from model.energy_check import paired_share
    a = paired_share(real, check.mismatched)
    said = ("reads" if a >= 0.9 else "barely reads" if a >= 0.6 else "does not read")
    return (f" **Agreement between the modalities:** real tuples with one modality taken from another digit get "
            f"mean {float(check.mismatched.mean()):.1f} (real: {check.mean('real test tuples'):.1f}); the real tuple "
            f"is the lower of the two in {a:.0%} of the tuples (50%: no difference), so the energy {said} whether the "
            "modalities show the same digit.")


def where_from(check: EnergyCheck | None) -> str:
    """The command that made the shipped check, as Markdown code (backticks and markup taken out)."""
    if check is None or not check.source:
        return ""
    return "Made by `" + check.source.replace("`", "'").replace("<", " ").replace(">", " ") + "`."


def histogram(check: EnergyCheck, marks=None) -> np.ndarray:
    """The histogram (RGB uint8, 1200 x 360): one outline per group on shared bins, ``marks`` (a run's final
    energies) as black dashed lines (at the axis' edge when off it). Labels at 14 px or more at the page's width.
    The groups are drawn once per check; a run's marks are drawn onto a copy."""
    base, (x0, x1), (left, right), (top, bottom) = _histogram_base(check)
    img = base.copy()
    for m in np.asarray([] if marks is None else marks, float).ravel():
        if not np.isfinite(m):
            continue
        col = int(round(left + (min(max(m, x0), x1) - x0) / (x1 - x0) * (right - left)))
        for y in range(int(top), int(bottom), 10):    # dashes of 6 px
            img[y:min(y + 6, int(bottom)), max(col - 1, 0):col + 1] = 0
    return img


_BASES: dict[int, tuple] = {}


def _histogram_base(check: EnergyCheck, width: int = 1200, height: int = 360) -> tuple:
    """(picture, the x axis' data range, its pixel columns, the plot's pixel rows), drawn once per check."""
    if id(check) in _BASES and _BASES[id(check)][0] is check:
        return _BASES[id(check)][1]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.concatenate([e for g, e in check.energies.items() if g != "uniform noise"])
    lo, hi = np.percentile(values, [0.5, 99.5])
    pad = 0.05 * (hi - lo or 1.0)
    bins = np.linspace(lo - pad, hi + pad, 50)
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_subplot()
    for g, e in check.energies.items():
        inside = e[(e >= bins[0]) & (e <= bins[-1])]
        label = f"{g} (mean {e.mean():.1f})" + ("" if len(inside) == len(e) else
                                               f", {len(e) - len(inside)} off the axis")
        ax.hist(np.clip(e, bins[0], bins[-1]), bins=bins, histtype="step", linewidth=2, color=COLORS[g], label=label)
    ax.plot([], [], color="black", linestyle="--", label="your run's final samples")
    ax.set_xlim(bins[0], bins[-1])
    ax.set_xlabel("EBM energy (lower: data-like, the model says)", fontsize=15)
    ax.set_ylabel("tuples", fontsize=15)
    ax.tick_params(labelsize=14)
    ax.legend(fontsize=14, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    (left, low), (right, high) = ax.transData.transform([(bins[0], ax.get_ylim()[0]), (bins[-1], ax.get_ylim()[1])])
    out = (img, (float(bins[0]), float(bins[-1])), (left, right), (height - high + 2, height - low - 1))
    _BASES.clear()   # one check per process
    _BASES[id(check)] = (check, out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m demo.energy", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("report", help="an energy.json written by python -m model.energy_check (with --noise-steps 30,100 "
                                  "or 30,100,300)")
    p.add_argument("--out", required=True, help=f"the file to write, e.g. checkpoints/mebm/{ENERGY_FILE}")
    p.add_argument("--source", default=None, help="the command that made the report, kept in the file (none = "
                                                   "rebuilt from the report's settings)")
    a = p.parse_args(argv)
    try:
        r = json.loads(Path(a.report).read_text(encoding="utf-8"))
        st = r["settings"]
        source = a.source or (f"python -m model.energy_check --checkpoint {st['checkpoint']} --n {st['n']} "
                              f"--noise-steps {st['noise_steps']} --seed {st['seed']}")
        Path(a.out).write_text(json.dumps(slim(r, source)) + "\n", encoding="utf-8")
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {type(e).__name__}: {e}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
