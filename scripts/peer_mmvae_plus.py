"""The peer: MMVAE+ (or MoPoE) from the published MultiVae library (multivae==1.0.3), trained on our
PolyMNIST-style tensors (model.data.load_polymnist) under a wall-clock budget, its coherence logged
over time, its generations dumped in the format model.evaluate reads (model.evaluate.save_dump).

    python -m venv .venv-peer && .venv-peer/bin/pip install -r requirements.txt -r requirements-peer.txt
    .venv-peer/bin/python -m scripts.peer_mmvae_plus --mnist ../shared/data/mnist.npz --minutes 95 \
        --out runs/peer_mmvaeplus
    .venv/bin/python -m model.evaluate --samples runs/peer_mmvaeplus/samples.npz --mnist ../shared/data/mnist.npz \
        --out runs/peer_mmvaeplus/eval

MMVAE+ settings are the published PolyMNIST recipe (see shared notes): latent 32 shared + 32
modality-specific, Laplace decoders of scale 0.75, Laplace posteriors with softmax scales, beta 2.5,
K = 1, 'iwae_looser', learned modality priors, Adam 1e-3 (amsgrad), batch 128. The networks are
MultiVae's MoPoE-size conv nets (EncoderConvMMNIST_multilatents / DecoderConvMMNIST), not its ResNets
(--resnet): on CPU the ResNets cost several times more per iteration. The loss is the library's
own (``model(batch).loss``); the loop is ours so that it can stop on a wall-clock budget and log
coherence (judged by our classifiers) as it goes. Decoder outputs (Laplace means, unbounded) are
clipped to [0, 1] for scoring.

On 2 CPU cores the published decoder scale 0.75 left MMVAE+ at chance coherence for the 20 minutes we
gave it (0.114 / 0.118 from one modality at 10 / 20 min, 0.0 joint); the README's comparison uses
``--decoder-scale 0.1`` (recon weighed 7.5x more against the KL, everything else as published), and
says so. ``--dump-at`` also writes dumps (and the weights) at intermediate budgets.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.evaluate import eval_indices, save_dump, subsets


def names(M):
    return [f"m{m}" for m in range(M)]


def as_multivae(x, y=None, device="cpu"):
    """Our tensors [B, M, 3, 28, 28] as MultiVae's dataset, on ``device`` (the model's: ``model.device``)."""
    from multivae.data import MultimodalBaseDataset

    return MultimodalBaseDataset(data={f"m{m}": x[:, m].to(device) for m in range(x.shape[1])},
                                 labels=(y if y is not None else torch.zeros(len(x), dtype=torch.long)).to(device))


def build(kind: str, M: int, latent: int, style: int, scale: float, beta: float, resnet: bool):
    from multivae.models import MMVAEPlus, MMVAEPlusConfig, MoPoE, MoPoEConfig
    from multivae.models.base import BaseAEConfig
    from multivae.models.nn import mmnist

    dims = {n: (3, 28, 28) for n in names(M)}
    common = dict(n_modalities=M, latent_dim=latent, input_dims=dims,
                  decoders_dist={n: "laplace" for n in names(M)},
                  decoder_dist_params={n: {"scale": scale} for n in names(M)}, beta=beta)
    if kind == "mmvaeplus":
        cfg = MMVAEPlusConfig(**common, modalities_specific_dim=style, prior_and_posterior_dist="laplace_with_softmax",
                              K=1, loss="iwae_looser", learn_modality_prior=True)
        enc_cfg, dec_cfg = BaseAEConfig(latent_dim=latent, style_dim=style), BaseAEConfig(latent_dim=latent + style)
        Enc, Dec = ((mmnist.EncoderResnetMMNIST, mmnist.DecoderResnetMMNIST) if resnet
                    else (mmnist.EncoderConvMMNIST_multilatents, mmnist.DecoderConvMMNIST))
        enc = {n: Enc(enc_cfg) for n in names(M)} if not resnet else \
            {n: Enc(private_latent_dim=style, shared_latent_dim=latent) for n in names(M)}
        dec = {n: Dec(dec_cfg) for n in names(M)} if not resnet else \
            {n: Dec(latent_dim=latent + style) for n in names(M)}
        return MMVAEPlus(cfg, encoders=enc, decoders=dec)
    cfg = MoPoEConfig(**common)
    enc_cfg, dec_cfg = BaseAEConfig(latent_dim=latent), BaseAEConfig(latent_dim=latent)
    return MoPoE(cfg, encoders={n: mmnist.EncoderConvMMNIST_adapted(enc_cfg) for n in names(M)},
                 decoders={n: mmnist.DecoderConvMMNIST(dec_cfg) for n in names(M)})


@torch.no_grad()
def conditional(model, x, cond):
    """Generate every modality outside ``cond`` from ``cond``: [B, M - |cond|, 3, 28, 28] in [0, 1]."""
    M = x.shape[1]
    gen = [m for m in range(M) if m not in cond]
    out = model.predict(as_multivae(x, device=model.device), cond_mod=[f"m{m}" for m in cond],
                        gen_mod=[f"m{m}" for m in gen])
    return torch.stack([out[f"m{m}"] for m in gen], 1).clamp(0, 1).cpu()


@torch.no_grad()
def prior(model, n, M, ex_post=None):
    """n unconditional samples: z from the model's prior, or from ``ex_post`` (a model.prior.GaussianMixture)."""
    z = model.generate_from_prior(n)
    if ex_post is not None:
        z["z"] = ex_post.sample(n).to(model.device)
    out = model.decode(z, names(M))
    return torch.stack([out[k] for k in names(M)], 1).clamp(0, 1).cpu()


@torch.no_grad()
def quick_coherence(model, clf, test, n, M) -> dict:
    """From one observed modality (mean over the M choices) and joint coherence of n prior samples."""
    from model.metrics import coherence, joint_coherence

    x, y = test.batch(torch.arange(min(n, len(test))))
    cond = []
    for m in range(M):
        full = x.clone()
        full[:, [k for k in range(M) if k != m]] = conditional(model, x, [m])
        cond.append(coherence(clf, full, y, [k for k in range(M) if k != m]))
    return {"coherence_cond1": float(np.mean(cond)), "coherence_joint": joint_coherence(clf, prior(model, n, M))}


@torch.no_grad()
def dump(model, test, a, out: Path, it: int, minutes: float, ex_post=None):
    """Write the evaluator's dump: conditionals for the evaluator's test tuples, and prior samples."""
    model.eval()
    M = a.modalities
    out.mkdir(parents=True, exist_ok=True)
    idx = eval_indices(len(test), a.n_cond, a.seed)
    conds = {s: {"proposal": []} for s in subsets(M)} if len(idx) else {}
    for i in tqdm(range(0, len(idx), 500), desc="dump: conditionals"):
        x, _ = test.batch(torch.as_tensor(idx[i:i + 500]))
        for s in subsets(M):
            conds[s]["proposal"].append(conditional(model, x, list(s)))
    conds = {s: {"proposal": torch.cat(v["proposal"])} for s, v in conds.items()}
    torch.manual_seed(a.seed)
    joint = torch.cat([prior(model, min(500, a.n_prior - i), M, ex_post) for i in tqdm(range(0, a.n_prior, 500),
                                                                                       desc="dump: prior")])
    name = {"mmvaeplus": "MMVAE+ (MultiVae)", "mopoe": "MoPoE (MultiVae)"}[a.model]
    save_dump(out / "samples.npz", conds, idx, {"proposal": joint},
              {"name": name, "n_modalities": M, "data_seed": a.data_seed, "iterations": it,
               "train_minutes": minutes, "library": "multivae==1.0.3",
               "prior": f"ex-post Gaussian mixture, {ex_post.n_components} components" if ex_post else "N(0, I)"})
    print(f"wrote {out}/samples.npz ({it} iterations, {minutes:.1f} min); score it with: python -m model.evaluate "
          f"--samples {out}/samples.npz --mnist {a.mnist or 'PATH'} --n-cond {a.n_cond} --n-joint {a.n_prior} "
          f"--n-fid {a.n_prior} --seed {a.seed} --out {out}/eval", flush=True)


def main(argv=None):
    from model.cli import HelpFormatter, add_data_args

    p = argparse.ArgumentParser(prog="python -m scripts.peer_mmvae_plus", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", choices=("mmvaeplus", "mopoe"), default="mmvaeplus", help="the peer model")
    add_data_args(p)
    p.add_argument("--modalities", type=int, default=5)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default runs/peer_<model>")
    p.add_argument("--minutes", type=float, default=95.0, help="wall-clock training budget")
    p.add_argument("--max-cpu-minutes", type=float, default=None,
                   help="also stop after this much CPU time of this process (a fair budget on a shared machine)")
    p.add_argument("--max-iters", type=int, default=10 ** 9)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--style", type=int, default=32, help="MMVAE+ modality-specific latent size")
    p.add_argument("--decoder-scale", type=float, default=0.75, help="Laplace decoder scale (published: 0.75)")
    p.add_argument("--beta", type=float, default=2.5)
    p.add_argument("--resnet", action="store_true", help="MultiVae's ResNet nets (MMVAE+ paper; slow on CPU)")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--eval-every-min", type=float, default=5.0, help="log coherence every N minutes")
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--classifier", default="checkpoints/classifier", help="the judges of the coherence log (the "
                   "bundled judge A, found from any folder)")
    # the dump (must match the evaluator's --n-cond / --n-joint / --n-fid / --seed)
    p.add_argument("--n-cond", type=int, default=1000)
    p.add_argument("--n-prior", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (the "
                   "model, its batches and its sampling)")
    p.add_argument("--dump-at", default="", help="comma-separated training minutes at which to also write a dump "
                   "to OUT/at<N>min/ (its time is not counted in the budget), e.g. the ablations' budget; CPU "
                   "minutes when --max-cpu-minutes is given, else wall-clock minutes")
    p.add_argument("--ckpt-every-min", type=float, default=10.0,
                   help="write OUT/checkpoint (weights, optimiser, clocks, RNG states) every N minutes of the "
                        "budget's clock, for --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint with this command's budget (e.g. a larger --max-cpu-minutes)")
    p.add_argument("--from-model", default=None,
                   help="a saved MultiVae model folder (e.g. OUT/model): skip training, only write the dump")
    p.add_argument("--ex-post-prior", type=int, default=0, metavar="K",
                   help="prior samples from a K-component Gaussian mixture fitted to z ~ q(z | all modalities) of "
                        "the training tuples (model.prior.GaussianMixture; MultiVae's ex-post prior trick) instead "
                        "of the model's prior; 0 = the model's prior. MoPoE only (one latent space)")
    a = p.parse_args(argv)
    try:
        run(a)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


def train_state(it: int, minutes: float, cpu_minutes: float, opt_state: dict, g: torch.Generator, dumps_due) -> dict:
    """What --resume needs, as tensors and plain values only, so that it loads with torch.load(weights_only=True)
    (a run folder is shared: its state.pt must never be unpickled). numpy's RNG state becomes a dict."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"iteration": int(it), "minutes": float(minutes), "cpu_minutes": float(cpu_minutes), "optimizer": opt_state,
            "torch_rng": torch.get_rng_state(), "batch_rng": g.get_state(), "dumps_due": [float(d) for d in dumps_due],
            "numpy_rng": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached": float(cached)}}


def load_train_state(path: Path, g: torch.Generator) -> dict:
    """train_state() read back with weights_only=True; sets the torch, numpy and batch RNGs. A state.pt in any
    other form (an older pickle, a crafted file) is refused with one line."""
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:
        raise SystemExit(f"error: {path} is not a state this script wrote ({type(e).__name__}); it is not loaded "
                         f"because unpickling it could run code") from None
    torch.set_rng_state(state["torch_rng"])
    r = state["numpy_rng"]
    np.random.set_state((r["name"], r["keys"].numpy().astype(np.uint32), r["pos"], r["has_gauss"], r["cached"]))
    g.set_state(state["batch_rng"])
    return state


def save_checkpoint(model, opt, g, out: Path, it: int, minutes: float, cpu_minutes: float, dumps_due):
    """OUT/checkpoint: written to checkpoint.tmp, then renamed, so a kill leaves a whole copy."""
    import shutil

    tmp, final, old = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp / "model"))
    torch.save(train_state(it, minutes, cpu_minutes, opt.state_dict(), g, dumps_due), tmp / "state.pt")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


@torch.no_grad()
def fit_ex_post(model, train, a):
    """The ex-post prior (None unless --ex-post-prior K): one z ~ q(z | x_1..x_M) per training tuple (MultiVae's
    joint posterior, all modalities observed), a K-component Gaussian mixture fitted to them by model.prior."""
    if not a.ex_post_prior:
        return None
    from model.prior import GaussianMixture

    if getattr(model, "multiple_latent_spaces", False):
        raise ValueError("--ex-post-prior needs one latent space (MoPoE), not MMVAE+'s shared + private latents")
    model.eval()
    torch.manual_seed(a.seed)
    z = torch.cat([model.encode(as_multivae(train.batch(torch.arange(i, min(len(train), i + 500)))[0],
                                            device=model.device), cond_mod="all").z.cpu()
                   for i in tqdm(range(0, len(train), 500), desc="ex-post prior: inferring latents")])
    gmm = GaussianMixture.fit(z, a.ex_post_prior, seed=a.seed)
    print(f"ex-post prior: {a.ex_post_prior} components on {len(z)} latents, train log-likelihood "
          f"{gmm.train_log_likelihood:.2f}", flush=True)
    return gmm


def run(a):
    from model.classifier import Classifiers
    from model.data import load_dataset
    from model.device import resolve_device
    from model.paths import find_checkpoint

    a.device = str(resolve_device(a.device))
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out or f"runs/peer_{a.model}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)   # MultiVae picks experts with np.random
    M = a.modalities
    train = load_dataset("train", M, a.data_seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
    test = load_dataset("test", M, a.data_seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
    if a.train_size:
        train.x, train.y = train.x[:a.train_size], train.y[:a.train_size]
    judges = find_checkpoint(a.classifier)
    clf = Classifiers.from_pretrained(str(judges)) if (judges / "config.json").is_file() else None

    if a.from_model:
        from multivae.models import AutoModel

        if not Path(a.from_model, "model_config.json").is_file():
            raise FileNotFoundError(f"--from-model: no saved MultiVae model in {a.from_model!r}")
        model = AutoModel.load_from_folder(a.from_model).to(a.device).eval()
        model.device = torch.device(a.device)
        info = json.loads(Path(a.from_model).parent.joinpath("log.jsonl").read_text().splitlines()[-1]) \
            if Path(a.from_model).parent.joinpath("log.jsonl").is_file() else {"iteration": -1, "minutes": -1}
        dump(model, test, a, out, info["iteration"], info["minutes"], fit_ex_post(model, train, a))
        return
    start, minutes0, cpu0 = 0, 0.0, 0.0
    dumps_due = sorted(float(m) for m in a.dump_at.split(",") if m.strip())
    g = torch.Generator().manual_seed(a.seed)
    if a.resume:
        from multivae.models import AutoModel

        ck = next((c for c in (out / "checkpoint", out / "checkpoint.old") if (c / "state.pt").is_file()),
                  out / "checkpoint")
        if not (ck / "state.pt").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint in {ck}")
        model = AutoModel.load_from_folder(str(ck / "model"))
        state = load_train_state(ck / "state.pt", g)
        start, minutes0, cpu0 = state["iteration"], state["minutes"], state["cpu_minutes"]
        dumps_due = [d for d in dumps_due if d in state["dumps_due"]]
    else:
        model = build(a.model, M, a.latent, a.style, a.decoder_scale, a.beta, a.resnet)
    model = model.to(a.device)
    model.device = torch.device(a.device)   # MultiVae draws its prior samples on model.device
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, amsgrad=True)
    if a.resume:
        opt.load_state_dict(state["optimizer"])
        print(f"resumed from {ck} at iteration {start} ({minutes0:.1f} min, {cpu0:.1f} CPU-min)")
    (out / "config.json").write_text(json.dumps(vars(a), indent=2))
    log = open(out / "log.jsonl", "a" if a.resume else "w")
    t0, c0, it = time.time() - 60 * minutes0, time.process_time() - 60 * cpu0, start
    cpu_clock = a.max_cpu_minutes is not None

    def clock():  # the budget's clock, in minutes
        return (time.process_time() - c0 if cpu_clock else time.time() - t0) / 60

    next_eval = (clock() // a.eval_every_min + 1) * a.eval_every_min
    next_ckpt = (clock() // a.ckpt_every_min + 1) * a.ckpt_every_min
    bar = tqdm(desc=f"{a.model} ({a.max_cpu_minutes or a.minutes} {'CPU-' if cpu_clock else ''}min)",
               initial=start, dynamic_ncols=True)

    def pause(since_wall, since_cpu):  # what ran between these instants is not training time
        nonlocal t0, c0
        t0 += time.time() - since_wall
        c0 += time.process_time() - since_cpu

    while it < a.max_iters and time.time() - t0 < 60 * a.minutes and \
            (a.max_cpu_minutes is None or time.process_time() - c0 < 60 * a.max_cpu_minutes):
        model.train()
        x, y = train.batch(torch.randint(len(train), (a.batch,), generator=g))
        loss = model(as_multivae(x, y, model.device), epoch=1).loss
        if not torch.isfinite(loss):
            print(f"non-finite loss at iteration {it}; stopping", flush=True)
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        bar.update()
        rec = {"iteration": it, "minutes": (time.time() - t0) / 60, "cpu_minutes": (time.process_time() - c0) / 60,
               "loss": loss.item()}
        if clf is not None and clock() >= next_eval:
            model.eval()
            rec.update(quick_coherence(model, clf, test, a.eval_samples, M))
            next_eval += a.eval_every_min
            bar.set_postfix(loss=f"{loss.item():.4g}", cond1=f"{rec['coherence_cond1']:.3f}",
                            joint=f"{rec['coherence_joint']:.3f}")
        if it % 10 == 0 or "coherence_cond1" in rec:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if dumps_due and clock() >= dumps_due[0]:
            w, c = time.time(), time.process_time()
            at = out / f"at{dumps_due.pop(0):g}min"
            dump(model, test, a, at, it, (w - t0) / 60)
            model.save(str(at / "model"))
            pause(w, c)
        if clock() >= next_ckpt:
            w, c = time.time(), time.process_time()
            save_checkpoint(model, opt, g, out, it, (w - t0) / 60, (c - c0) / 60, dumps_due)
            next_ckpt += a.ckpt_every_min
            pause(w, c)
    bar.close()
    save_checkpoint(model, opt, g, out, it, (time.time() - t0) / 60, (time.process_time() - c0) / 60, dumps_due)
    model.eval()
    final = {"iteration": it, "minutes": (time.time() - t0) / 60, "cpu_minutes": (time.process_time() - c0) / 60}
    if clf is not None:
        final.update(quick_coherence(model, clf, test, a.eval_samples, M))
    log.write(json.dumps(final) + "\n")
    log.close()
    print(f"trained {it} iterations in {final['minutes']:.1f} min: {final}")
    model.save(str(out / "model"))

    dump(model, test, a, out, it, final["minutes"], fit_ex_post(model, train, a))


if __name__ == "__main__":
    main()
