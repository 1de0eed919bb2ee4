"""Training by MCMC revision: python -m model.train [--flags]   (see --help; every TrainConfig field
is a flag, ModelConfig fields are --model.<name>).

One iteration, in the method's order (variant 'full'):
  1. data revision:   z ~ N(0, I); X_gen = G(z); X_rev = Langevin on the EBM from X_gen.
  2. latent revision: z0 ~ q(z | X) (MoE over all modalities); z_rev = Langevin on
                      log p(z) + sum_m log p(x_m | z) from z0.
  3. generator:       loss_recon = -sum_m log p(x_m | z_rev)         (MLE on revised posterior samples)
                      loss_teach = ||G(z) - X_rev||^2 / (2 sigma^2)    (chase the EBM-revised samples)
  4. inference:       loss_infer = mean_m -log q_m(z_rev | x_m)        (each expert fits the revised latents;
                                   an upper bound on -log of the mixture, by Jensen)
                                 + lambda_I mean_m -log q_m(z | x_rev_m) (the latents behind X_rev)
  2-4 (our addition). loss_elbo = the MoE ELBO of G and q, weighted by elbo_weight, kept beside the
                      revision losses: without it the inference experts drifted (or collapsed to the
                      prior) within a few hundred iterations in our runs and coherence fell.
  5. EBM:             loss_energy = mean E(X) - mean E(X_rev) + alpha (E(X)^2 + E(X_rev)^2)
                      (X_rev of step 1 is reused: the predecessor regenerates it after the
                      generator update, which doubles the cost of the data chain)
Divergence guard: a non-finite loss, a diverged chain or |loss_energy| > explode_threshold stops
the run and keeps the last good checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .config import ModelConfig, TrainConfig
from . import render
from .langevin import ChainDiverged, data_revision, latent_revision, run
from .networks import MultimodalEBMVAE


class Diverged(RuntimeError):
    pass


# ---------------------------------------------------------------- losses

def moe_elbo(model, x, kl_weight=1.0):
    """Negative MoE ELBO, stratified over experts (MMVAE): every expert's sample reconstructs every
    modality. Returns (recon, kl) per sample, averaged over experts."""
    G, I = model.generator, model.inference
    mu, logvar, _ = I.experts_params(x)                        # [B, M, d]
    b, m, d = mu.shape
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    x_hat = G(z.reshape(b * m, d)).view(b, m, *x.shape[1:])   # [B, expert, modality, 3, 28, 28]
    recon = ((x[:, None] - x_hat) ** 2).flatten(2).sum(2).mean(1) / (2 * G.sigma ** 2)
    kl = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(2).mean(1)
    return recon, kl


def train_step(model, opt, x, cfg: TrainConfig, it: int) -> dict:
    """One iteration; returns the named losses and diagnostics (floats)."""
    G, I, E = model.generator, model.inference, model.energy
    v = cfg.variant
    warm = it < cfg.warmup_iters   # warm-up: the MoE VAE alone (see TrainConfig.warmup_iters)
    use_ebm = v != "vae" and not warm
    teach = use_ebm and v != "noise_init"
    elbo = v in ("vae", "no_latent_revision") or warm
    b = x.shape[0]
    log = {}

    # 1. generator proposals from the prior, revised by data-space Langevin on the EBM
    if use_ebm:
        z = torch.randn(b, G.latent_dim)
        x_gen = G(z)
        init = torch.rand_like(x_gen) if v == "noise_init" else x_gen.detach()
        first = None
        for st in data_revision(E, init, cfg.data_steps, cfg.data_step_size, cfg.data_noise):
            first = st if first is None else first
        x_rev = st.x
        log["data_move"] = (x_rev - init).abs().mean().item()
        log["data_energy_drop"] = (first.energy - st.energy).mean().item()

    # 2.-4. generator and inference model
    if elbo:
        recon, kl = moe_elbo(model, x)
        log["loss_recon"], log["kl"] = recon.mean().item(), kl.mean().item()
        loss_gi = (recon + cfg.kl_weight * kl).mean()
    else:
        z0 = I.sample(x).detach()
        first = None
        for st in latent_revision(G, z0, x, cfg.latent_steps, cfg.latent_step_size, cfg.latent_noise):
            first = st if first is None else first
        z_rev = st.x
        log["latent_logp_gain"] = (first.energy - st.energy).mean().item()  # log-posterior rise
        log["latent_move"] = (z_rev - z0).norm(dim=1).mean().item()
        recon = -G.log_likelihood(x, z_rev)
        infer = -I.expert_log_probs(z_rev, x).mean(1)
        log["loss_recon"], log["loss_infer"] = recon.mean().item(), infer.mean().item()
        loss_gi = recon.mean() + infer.mean()
        if cfg.elbo_weight > 0:  # the MoE ELBO kept beside the revision losses (see TrainConfig)
            recon_elbo, kl = moe_elbo(model, x)
            elbo_loss = (recon_elbo + cfg.kl_weight * kl).mean()
            log["loss_elbo"], log["kl"] = elbo_loss.item(), kl.mean().item()
            loss_gi = loss_gi + cfg.elbo_weight * elbo_loss
    if teach:
        teach_loss = ((x_gen - x_rev) ** 2).flatten(1).sum(1) / (2 * G.sigma ** 2)
        infer_rev = -I.expert_log_probs(z, x_rev).mean(1)
        log["loss_teach"], log["loss_infer_rev"] = teach_loss.mean().item(), infer_rev.mean().item()
        loss_gi = loss_gi + cfg.teach_weight * teach_loss.mean() + cfg.inference_teach_weight * infer_rev.mean()
    opt["generator"].zero_grad(set_to_none=True)
    opt["inference"].zero_grad(set_to_none=True)
    loss_gi.backward()
    opt["generator"].step()
    opt["inference"].step()

    # 5. EBM: maximum likelihood, data energy down, revised-sample energy up
    if use_ebm:
        e_pos, e_neg = E(x), E(x_rev)
        loss_e = e_pos.mean() - e_neg.mean() + cfg.energy_l2 * (e_pos ** 2 + e_neg ** 2).mean()
        opt["energy"].zero_grad(set_to_none=True)
        loss_e.backward()
        opt["energy"].step()
        log["loss_energy"] = loss_e.item()
        log["energy_data"], log["energy_revised"] = e_pos.mean().item(), e_neg.mean().item()
        if abs(loss_e.item()) > cfg.explode_threshold:
            raise Diverged(f"|loss_energy| = {abs(loss_e.item()):.3g} > {cfg.explode_threshold:g}")
    bad = [k for k, val in log.items() if not math.isfinite(val)]
    if bad:
        raise Diverged(f"non-finite {bad}")
    return log


# ---------------------------------------------------------------- bookkeeping

def make_optimizers(model, cfg: TrainConfig):
    return {
        "generator": torch.optim.Adam(model.generator.parameters(), cfg.lr_generator, betas=(cfg.beta1, 0.999)),
        "inference": torch.optim.Adam(model.inference.parameters(), cfg.lr_inference, betas=(cfg.beta1, 0.999)),
        "energy": torch.optim.Adam(model.energy.parameters(), cfg.lr_energy, betas=(cfg.beta1_energy, 0.999)),
    }


def save_checkpoint(out: Path, model, opt, cfg, it, elapsed):
    """Write out/checkpoint atomically: model (safetensors + config.json), train_config.json, state.pt."""
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    cfg.to_json(tmp / "train_config.json")
    torch.save({"iteration": it, "elapsed": elapsed, "optimizers": {k: o.state_dict() for k, o in opt.items()},
                "torch_rng": torch.get_rng_state()}, tmp / "state.pt")
    final = out / "checkpoint"
    old = out / "checkpoint.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def image_grid(x: torch.Tensor) -> np.ndarray:
    """[B, M, 3, 28, 28] in [0, 1] -> uint8 [B*28, M*28, 3] (rows: samples, columns: modalities)."""
    return render.sample_grid(x)


@torch.no_grad()
def save_samples(model, cfg: TrainConfig, path: Path, it: int, n=8, seed=1234):
    """Prior samples: generator proposals | EBM-revised (training chain), side by side."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.config.latent_dim, generator=g)
    x_gen = model.generator(z)
    panels = [image_grid(x_gen)]
    if cfg.variant != "vae" and it >= cfg.warmup_iters:
        x_rev = run(data_revision(model.energy, x_gen, cfg.data_steps, cfg.data_step_size, cfg.data_noise,
                                  generator=g)).x
        panels.append(image_grid(x_rev))
    Image.fromarray(render.side_by_side(panels)).resize((sum(p.shape[1] for p in panels) * 2, n * 56),
                                                      Image.NEAREST).save(path)


@torch.no_grad()
def quick_coherence(model, clf, test, n: int, seed=0) -> dict:
    """Generator proposals only (no chains): conditional coherence from each single modality, and
    joint coherence of prior samples. A cheap progress signal; model.evaluate gives the real table."""
    from .metrics import coherence, joint_coherence
    from .networks import observed_mask

    g = torch.Generator().manual_seed(seed)
    x, y = test.batch(torch.arange(min(n, len(test))))
    M = model.config.n_modalities
    cond = []
    for m in range(M):
        z = model.inference.sample(x, observed_mask([m], M), generator=g)
        cond.append(coherence(clf, model.generator(z), y, [k for k in range(M) if k != m]))
    x_prior = model.generator(torch.randn(n, model.config.latent_dim, generator=g))
    return {"coherence_cond1": float(np.mean(cond)), "coherence_joint": joint_coherence(clf, x_prior)}


# ---------------------------------------------------------------- main loop

def train(cfg: TrainConfig, resume: bool = False) -> Path:
    from .data import load_polymnist

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    data = load_polymnist("train", cfg.model.n_modalities, cfg.model.data_seed, cfg.mnist, cfg.cache_dir)
    if cfg.train_size:
        data.x, data.y = data.x[:cfg.train_size], data.y[:cfg.train_size]
    clf = test = None
    if cfg.classifier and cfg.eval_every and Path(cfg.classifier).exists():
        from .classifier import Classifiers

        clf = Classifiers.from_pretrained(cfg.classifier)
        test = load_polymnist("test", cfg.model.n_modalities, cfg.model.data_seed, cfg.mnist, cfg.cache_dir)

    model = MultimodalEBMVAE(cfg.model)
    opt = make_optimizers(model, cfg)
    start, elapsed = 0, 0.0
    ckpt = out / "checkpoint"
    if resume and ckpt.exists():
        model = MultimodalEBMVAE.from_pretrained(ckpt, strict=True)
        opt = make_optimizers(model, cfg)
        state = torch.load(ckpt / "state.pt", weights_only=False)
        for k, o in opt.items():
            o.load_state_dict(state["optimizers"][k])
        start, elapsed = state["iteration"], state["elapsed"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from {ckpt} at iteration {start} ({elapsed / 60:.1f} min)")
    cfg.to_json(out / "train_config.json")
    (out / "DIVERGED.txt").unlink(missing_ok=True)

    g = torch.Generator().manual_seed(cfg.seed + start)
    log_file = open(out / "log.jsonl", "a")
    t0 = time.time() - elapsed
    it = start
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc=cfg.variant, dynamic_ncols=True)
    try:
        for it in bar:
            idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
            x, _ = data.batch(idx)
            t_it = time.time()
            try:
                log = train_step(model, opt, x, cfg, it)
            except (Diverged, ChainDiverged) as e:
                msg = f"stopped at iteration {it}: {e}. The last good checkpoint is {ckpt} (resume with --resume, " \
                      f"after lowering the learning rates or step sizes)."
                (out / "DIVERGED.txt").write_text(msg + "\n")
                print(msg, file=sys.stderr)
                return ckpt
            log.update(iteration=it, seconds_per_iter=time.time() - t_it, minutes=(time.time() - t0) / 60)
            done = it + 1
            if clf is not None and (done % cfg.eval_every == 0):
                log.update(quick_coherence(model, clf, test, cfg.eval_samples))
            if done % cfg.log_every == 0 or "coherence_joint" in log:
                log_file.write(json.dumps(log) + "\n")
                log_file.flush()
                bar.set_postfix({k: f"{log[k]:.3g}" for k in ("loss_recon", "loss_energy", "data_move",
                                                              "coherence_joint") if k in log})
            if done % cfg.sample_every == 0:
                save_samples(model, cfg, out / "samples" / f"iter{done:06d}.png", done)
            if done % cfg.ckpt_every == 0 or done == cfg.warmup_iters:
                save_checkpoint(out, model, opt, cfg, done, time.time() - t0)
            if done == cfg.warmup_iters:  # keep the end of the warm-up: every variant can start from it
                shutil.rmtree(out / "checkpoint_warmup", ignore_errors=True)
                shutil.copytree(out / "checkpoint", out / "checkpoint_warmup")
            if cfg.max_minutes and time.time() - t0 > 60 * cfg.max_minutes:
                print(f"wall-clock budget of {cfg.max_minutes} min reached at iteration {done}")
                break
        else:
            done = cfg.iters
    finally:
        log_file.close()
    save_checkpoint(out, model, opt, cfg, done, time.time() - t0)
    save_samples(model, cfg, out / "samples" / f"final_iter{done:06d}.png", done)
    model.save_pretrained(out / "final")
    cfg.to_json(out / "final" / "train_config.json")
    return out / "final"


# ---------------------------------------------------------------- CLI

def _parse_type(type_str: str):
    t = type_str.replace(" ", "")
    base = t.split("|")[0]

    def conv(s):
        if "None" in t and s.lower() == "none":
            return None
        if base == "bool":
            if s.lower() not in ("true", "false", "1", "0"):
                raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")
            return s.lower() in ("true", "1")
        return {"int": int, "float": float, "str": str}[base](s)
    return conv


def parse_args(argv=None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint")
    p.add_argument("--config", help="a train_config.json to start from (flags override it)")
    for f in fields(TrainConfig):
        if f.name != "model":
            p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_parse_type(f.type), default=argparse.SUPPRESS)
    for f in fields(ModelConfig):
        p.add_argument("--model." + f.name.replace("_", "-"), dest="model." + f.name, type=_parse_type(f.type),
                       default=argparse.SUPPRESS)
    a = vars(p.parse_args(argv))
    resume, config = a.pop("resume"), a.pop("config")
    base = TrainConfig.from_json(config) if config else TrainConfig()
    if resume and not config and "out_dir" in a and Path(a["out_dir"], "train_config.json").exists():
        base = TrainConfig.from_json(Path(a["out_dir"], "train_config.json"))
    d = asdict(base)
    for k, val in a.items():
        if k.startswith("model."):
            d["model"][k[6:]] = val
        else:
            d[k] = val
    return TrainConfig(**d), resume


def main(argv=None):
    cfg, resume = parse_args(argv)
    path = train(cfg, resume)
    if (Path(cfg.out_dir) / "DIVERGED.txt").exists():
        sys.exit(3)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
