"""The cost table: what the revision chains buy per unit of cost.

    python -m benchmarks.cost_table --mnist ../shared/data/mnist.npz --out runs/cost_table

For one checkpoint (default the shipped checkpoints/mebm), every cell of the grid data-revision steps
(--data-grid, default 0, 10, 30, 60) x EBM latent revision steps (--ebm-latent-grid, default 0, 10, 30), with every
other chain setting as the checkpoint ships it, reports:

- the cost of one sample: wall-clock seconds (batch, threads and load average stated) and network evaluations;
- conditional coherence from one observed modality (the mean over the M single observed modalities, as
  model.evaluate's "cond. 1 in"), by judge A (--classifier) and judge B (--classifier-b);
- joint coherence of prior samples (the ex-post prior shipped beside the weights, or --prior normal), by both
  judges, the normalised entropy of the digits of the coherent ones, and the Fréchet distance in judge A's
  feature space against as many real test tuples (model.evaluate's FD; it grows as the sample shrinks).

Conditional samples run the chains as the Sampler does: the latent revision, the conditional EBM latent chain
(the shipped one has 0 steps: then the EBM latent column does not change them, and they are run once per data
step count), then the data revision with the observed modalities clamped. Prior samples run the EBM latent
chain (--ebm-latent-grid) and the data revision.

A network evaluation is one forward pass of one network for one sample: the generator (all M decoders on one z,
or the observed ones inside the likelihood), the energy model (one tuple), one inference expert (one observed
image). Evaluations whose gradient a Langevin step takes are counted again under "backward" (a backward pass
costs about two forward passes). They are counted with forward and backward hooks while sampling.

The "MoE VAE" row: --vae CHECKPOINT (a separately trained MoE VAE; its own ex-post prior when it has one) sampled
with no revision at all; without it, the checkpoint's own generator and inference model with no revision at all
(0 latent, 0 EBM latent, 0 data steps): its proposal stage, not a separately trained VAE.

Outputs in --out: cost_table.json (every number, the settings, the machine) and cost_table.md (the table).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from model.cli import HelpFormatter, add_data_args
from model.data import load_dataset
from model.device import DeviceError
from model.evaluate import (EvalError, ModelSampler, conditional_coherence, eval_indices, load_classifier,
                            load_sampler, ordered_stages, prior_metrics, real_features)
from model.metrics import ClassifierFeatures, wilson_interval
from model.report import write_report

NETWORKS = ("generator", "energy", "inference")
NO_REVISION = {"latent_steps": 0, "ebm_latent_steps": 0, "ebm_latent_cond_steps": 0, "data_steps": 0}


# ---------------------------------------------------------------- counting network evaluations

@contextmanager
def count_evaluations(model):
    """Count the model's network evaluations while the block runs: yields a dict {network: samples passed
    forward, network + "_backward": samples whose gradient was taken} (a pass on a batch of B counts B)."""
    counts = {k: 0 for n in NETWORKS for k in (n, n + "_backward")}
    modules = {"generator": [model.generator], "energy": [model.energy], "inference": list(model.inference.experts)}
    handles = []
    for name, mods in modules.items():
        def forward(module, args, output, name=name):
            counts[name] += len(args[0])

        def backward(module, grad_input, grad_output, name=name):
            counts[name + "_backward"] += len(grad_output[0])

        for m in mods:
            handles += [m.register_forward_hook(forward), m.register_full_backward_hook(backward)]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


def expected_evaluations(chains, conditioned: bool) -> dict:
    """The network evaluations per sample that model.langevin.conditional_sampling makes, by construction, for
    one observed modality (``conditioned``) or a prior sample: each Langevin chain of k steps evaluates its energy
    k + 1 times (k with a gradient); a stage that runs also decodes and scores its first and last state for the
    frames, and the decoded images are scored once after the proposal."""
    latent = chains.latent.steps if conditioned else 0
    ebm, data = chains.ebm_latent_for(conditioned).steps, chains.data.steps
    g = 1 + conditioned                           # proposal: decode (+ the likelihood of the observed modality)
    e = 1                                         # the proposal's energy
    g_back = e_back = 0
    if latent:                                    # the posterior energy reads the generator
        g, e, g_back = g + latent + 1 + 2, e + 2, g_back + latent
    if ebm:                                       # E(G(z)): both networks
        g, e, g_back, e_back = g + ebm + 3, e + ebm + 3, g_back + ebm, e_back + ebm
    g += 1                                        # the decode the data revision starts from
    if data:
        e, e_back = e + data + 1, e_back + data
    return {"generator": g, "generator_backward": g_back, "energy": e, "energy_backward": e_back,
            "inference": int(conditioned), "inference_backward": 0}


# ---------------------------------------------------------------- sampling once, judging twice

class Recorder:
    """A model.evaluate sampler that runs a ``model.Sampler``'s chains once per batch, times them, counts their
    network evaluations and keeps the last stage ("final"), so a second judge reads the same samples."""

    def __init__(self, sampler, prior: str, subsets):
        self.inner = ModelSampler(sampler, prior=prior)
        self.model = sampler.model
        self.subsets = set(subsets)   # model.evaluate.conditional_coherence scores only these
        self.kept, self.seconds, self.cpu_seconds, self.samples = {}, 0.0, 0.0, 0
        self.counts = {k: 0 for n in NETWORKS for k in (n, n + "_backward")}

    def _run(self, key, n, make):
        if key not in self.kept:
            with count_evaluations(self.model) as counts:
                t, cpu = time.perf_counter(), time.process_time()
                out = make()
                self.seconds += time.perf_counter() - t
                self.cpu_seconds += time.process_time() - cpu
            for k, v in counts.items():
                self.counts[k] += v
            self.samples += n
            self.kept[key] = {"final": out[ordered_stages(out)[-1]]}
        return self.kept[key]

    def conditional(self, idx, x, observed, g):
        key = ("conditional", tuple(observed.nonzero().flatten().tolist()), int(idx[0]))
        return self._run(key, len(idx), lambda: self.inner.conditional(idx, x, observed, g))

    def prior(self, start, n, g):
        return self._run(("prior", start), n, lambda: self.inner.prior(start, n, g))

    def cost(self) -> dict:
        per = max(self.samples, 1)
        return {"seconds_per_sample": self.seconds / per, "cpu_seconds_per_sample": self.cpu_seconds / per,
                "samples": self.samples,
                "evaluations_per_sample": {k: v / per for k, v in self.counts.items()}}


def share(rate: float, n: int) -> dict:
    """A share with its Wilson 95 % interval (model.metrics.wilson_interval)."""
    lo, hi = wilson_interval(round(rate * n), n)
    return {"value": rate, "n": n, "low": lo, "high": hi}


def conditional_cell(sampler, judges, test, idx, seed, batch) -> dict:
    """Conditional coherence from each single observed modality, by every judge, and the cost of a sample."""
    M = sampler.config.n_modalities
    rec = Recorder(sampler, "ex-post", [(m,) for m in range(M)])
    res = {}
    for name, clf in judges.items():
        c = conditional_coherence(rec, clf, test, idx, seed, batch, progress=False)["final"]
        # pooled over every generated image (the interval takes them as independent: it is too narrow)
        res[name] = share(c["by_size"]["1"], len(idx) * M * (M - 1))
    return {"coherence_cond1": res, **rec.cost()}


def joint_cell(sampler, prior, judges, features, real, n, seed, batch) -> dict:
    """Joint coherence and coherent-digit entropy of n prior samples by every judge, their FD (judge A's
    features, against the real tuples), and the cost of a sample."""
    rec = Recorder(sampler, prior, [])
    res = {"joint_coherence": {}, "coherent_digit_entropy": {}}
    for i, (name, clf) in enumerate(judges.items()):
        p = prior_metrics(rec, clf, features, real, n, n if i == 0 else 0, seed, batch, progress=False)["final"]
        res["joint_coherence"][name] = share(p["joint_coherence"], n)
        res["coherent_digit_entropy"][name] = p["coherent_digit_entropy"]
        res.setdefault("fd", p.get("fd_mean"))
    return {**res, **rec.cost()}


# ---------------------------------------------------------------- the table

def cost_table(sampler, judges, test, data_grid, ebm_grid, n_cond, n_joint, seed=0, batch=300, prior="ex-post",
               vae=None, vae_prior="ex-post", progress=True, on_cell=None) -> dict:
    """Every cell of data steps x EBM latent steps, and the "MoE VAE" row (``vae``: a separately trained one,
    else ``sampler`` with no revision). {"cells": [...], "vae": {...}}. ``on_cell``: called with the cells done so
    far after each one (to keep a partial table)."""
    idx = eval_indices(len(test), n_cond, seed)
    features = ClassifierFeatures(judges["A"])
    real = real_features(features, test, eval_indices(len(test), n_joint, seed + 1))
    cells, cond_by = [], {}
    todo = [(d, k) for d in data_grid for k in ebm_grid]
    for d, k in tqdm(todo, desc="cost table", disable=not progress, dynamic_ncols=True):
        s = sampler.with_chains(data_steps=d, ebm_latent_steps=k)
        load = os.getloadavg()[0]
        if n_cond and d not in cond_by:   # the shipped conditional chain has no EBM latent steps: run once per d
            cond_by[d] = conditional_cell(s, judges, test, idx, seed, batch)
            cond_by[d]["expected_evaluations"] = expected_evaluations(s.chains, conditioned=True)
        cell = {"data_steps": d, "ebm_latent_steps": k, "chains": s.chains.flat(), "load_average_start": load,
                "conditional": cond_by.get(d), "joint": None}
        if n_joint:
            cell["joint"] = joint_cell(s, prior, judges, features, real, n_joint, seed, batch)
            cell["joint"]["expected_evaluations"] = expected_evaluations(s.chains, conditioned=False)
        cell["load_average_end"] = os.getloadavg()[0]
        cells.append(cell)
        if on_cell:
            on_cell(cells)
    v = (vae or sampler).with_chains(**NO_REVISION)
    v_prior = vae_prior if vae is not None else prior
    row = {"separately_trained": vae is not None, "chains": v.chains.flat(),
           "conditional": conditional_cell(v, judges, test, idx, seed, batch) if n_cond else None,
           "joint": joint_cell(v, v_prior, judges, features, real, n_joint, seed, batch) if n_joint else None}
    return {"cells": cells, "vae": row}


def _pct(s: dict | None) -> str:
    return "–" if s is None else f"{100 * s['value']:.1f} ({100 * s['low']:.1f}-{100 * s['high']:.1f})"


def _evals(c: dict | None) -> str:
    """'G + E + q = total (backward b)' per sample."""
    if c is None:
        return "–"
    e = c["evaluations_per_sample"]
    fwd = [e[n] for n in NETWORKS]
    back = e["generator_backward"] + e["energy_backward"] + e["inference_backward"]
    return f"{fwd[0]:.0f} + {fwd[1]:.0f} + {fwd[2]:.0f} = {sum(fwd):.0f} ({back:.0f})"


def _row(label_d, label_k, c, j) -> str:
    g = lambda d, *k: None if d is None else d[k[0]][k[1]] if len(k) == 2 else d[k[0]]
    ent = "–" if j is None else " / ".join(f"{v:.2f}" for v in j["coherent_digit_entropy"].values())
    ms = lambda d: "–" if d is None else \
        f"{1000 * d['seconds_per_sample']:.1f} / {1000 * d['cpu_seconds_per_sample']:.1f}"
    fd = "–" if j is None or j["fd"] is None else f"{j['fd']:.0f}"
    return (f"| {label_d} | {label_k} | {ms(c)} | {_evals(c)} | {_pct(g(c, 'coherence_cond1', 'A'))} | "
            f"{_pct(g(c, 'coherence_cond1', 'B'))} | {ms(j)} | {_evals(j)} | {_pct(g(j, 'joint_coherence', 'A'))} | "
            f"{_pct(g(j, 'joint_coherence', 'B'))} | {ent} | {fd} |")


def markdown(r: dict) -> str:
    """The table: the MoE VAE row, then one row per cell."""
    st, m = r["settings"], r["machine"]
    vae = r["vae"]
    vae_label = "MoE VAE, no revision" if vae["separately_trained"] else "MoE VAE = this model's proposal"
    vae_note = ("The MoE VAE row: a separately trained MoE VAE ({}), no revision at all.".format(st["vae"])
                if vae["separately_trained"] else "The MoE VAE row is this model's own generator and inference "
                "model with no revision at all (0 latent, 0 EBM latent, 0 data steps), its proposal stage: not a "
                "separately trained VAE.")
    lines = [
        f"Cost table: {st['checkpoint']}, joint samples from {st['prior']}; n = {st['n_cond']} test tuples per "
        f"observed modality ({st['n_cond'] * st['n_modalities']} conditionals), {st['n_joint']} joint samples, FD "
        f"against {st['n_joint']} real test tuples (judge A's features); batch {st['batch']}, {m['threads']} "
        f"thread(s), {m['device']}, {m['cpu']}; load average {m['load_average_start']:.2f} at the start, "
        f"{m['load_average_end']:.2f} at the end; {r['minutes']:.1f} minutes in all; seed {st['seed']}.",
        "",
        "ms: wall-clock / CPU milliseconds per sample (the CPU time of this process: less sensitive to the load). "
        "Evaluations per sample: generator + energy + inference expert "
        "forward passes = total (of which with a backward pass). Coherence in % with the Wilson 95 % interval (the "
        "conditional one pools every generated image as if independent: too narrow). " + vae_note,
        "",
        "| data steps | EBM latent steps | cond. ms | cond. evaluations | cond. 1 in, A | cond. 1 in, B | joint ms | "
        "joint evaluations | joint, A | joint, B | coherent-digit entropy A / B | FD (A features) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        _row(vae_label, 0, vae["conditional"], vae["joint"]),
    ]
    lines += [_row(c["data_steps"], c["ebm_latent_steps"], c["conditional"], c["joint"]) for c in r["cells"]]
    return "\n".join(lines) + "\n"


def machine(device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(device),
            "torch": torch.__version__}


def grid(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated step counts, got {text!r}") from None
    if not steps or min(steps) < 0:
        raise argparse.ArgumentTypeError(f"expected step counts of 0 or more, got {text!r}")
    return steps


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cost_table", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mebm", help="model directory (found from any folder)")
    p.add_argument("--classifier", default="checkpoints/classifier", help="judge A's folder")
    p.add_argument("--classifier-b", default="checkpoints/classifier_b", help="judge B's folder")
    p.add_argument("--prior", default="ex-post", help="joint samples from: ex-post (the prior beside the weights), "
                                                      "normal = N(0, I), or an ex-post prior file")
    p.add_argument("--vae", default=None, help="a separately trained MoE VAE checkpoint for the VAE row (none: the "
                                               "checkpoint's own proposal stage)")
    p.add_argument("--data-grid", type=grid, default=grid("0,10,30,60"), help="data-revision step counts")
    p.add_argument("--ebm-latent-grid", type=grid, default=grid("0,10,30"), help="EBM latent step counts of the "
                                                                                 "prior samples' chain")
    p.add_argument("--n-cond", type=int, default=300, help="test tuples per single observed modality (0: none)")
    p.add_argument("--n-joint", type=int, default=300, help="joint samples per cell, and real tuples for the FD "
                                                            "(0: none)")
    p.add_argument("--batch", type=int, default=300, help="samples generated per call")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seeds the test tuples and the chains (the same in every cell)")
    p.add_argument("--out", default="runs/cost_table", help="output folder: cost_table.json, cost_table.md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_args(p)
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        if min(a.n_cond, a.n_joint) < 0 or a.batch < 1 or a.threads < 1:
            raise EvalError("--n-cond and --n-joint must be 0 or more, --batch and --threads 1 or more")
        torch.set_num_threads(a.threads)
        t0, load0 = time.time(), os.getloadavg()[0]
        sampler = load_sampler(a.checkpoint, device=a.device, prior=a.prior)
        vae = load_sampler(a.vae, device=a.device) if a.vae else None
        vae_prior = "ex-post" if vae is not None and vae.prior is not None else "normal"
        M, data_seed = sampler.config.n_modalities, sampler.config.data_seed
        judges = {"A": load_classifier(a.classifier, M, data_seed), "B": load_classifier(a.classifier_b, M, data_seed)}
        try:
            test = load_dataset("test", M, data_seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
        except Exception as e:
            raise EvalError(f"could not load the test split: {e}") from None
        prior = "ex-post" if a.prior != "normal" else "normal"
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        partial = lambda cells: (out / "cost_table.partial.json").write_text(json.dumps(cells, indent=2))
        r = cost_table(sampler, judges, test, a.data_grid, a.ebm_latent_grid, a.n_cond, a.n_joint, a.seed, a.batch,
                       prior, vae, vae_prior, not a.quiet, partial)
    except (EvalError, DeviceError, ValueError) as e:
        sys.exit(f"error: {e}")
    r["settings"] = {"checkpoint": a.checkpoint, "prior": "N(0, I)" if a.prior == "normal" else a.prior,
                     "vae": a.vae, "n_cond": min(a.n_cond, len(test)), "n_joint": a.n_joint, "batch": a.batch,
                     "seed": a.seed, "n_modalities": M, "data_grid": a.data_grid, "ebm_latent_grid": a.ebm_latent_grid}
    r["machine"] = {**machine(sampler.device), "load_average_start": load0, "load_average_end": os.getloadavg()[0]}
    r["minutes"] = (time.time() - t0) / 60
    write_report(out, "cost_table", r, markdown(r))
    print(markdown(r))
    print(f"wrote {out}/cost_table.json, cost_table.md")


if __name__ == "__main__":
    main()
