"""Training by MCMC revision: python -m model.train [--flags]   (see --help; every TrainConfig field
is a flag, ModelConfig fields are --model.<name>).

One iteration, in the method's order (variant 'full'):
  1. data revision:   z ~ N(0, I); X_gen = G(z); X_rev = Langevin on the EBM from X_gen.
  2. latent revision: z0 ~ q(z | X) (MoE over all modalities); z_rev = Langevin on
                      log p(z) + sum_m log p(x_m | z) from z0.
  3. generator:       loss_recon = -sum_m log p(x_m | z_rev)         (MLE on revised posterior samples;
                                                                       weight revision_recon_weight)
                      loss_teach = ||G(z) - X_rev||^2 / (2 sigma^2)    (chase the EBM-revised samples)
  4. inference:       loss_infer = mean_m -log q_m(z_rev | x_m)        (each expert fits the revised latents;
                                   an upper bound on -log of the mixture, by Jensen; weight
                                   revision_infer_weight)
                                 + lambda_I mean_m -log q_m(z | x_rev_m) (the latents behind X_rev)
  2-4 (our addition). loss_elbo = the MoE ELBO of G and q, weighted by elbo_weight, kept beside the
                      revision losses: without it the inference experts drifted (or collapsed to the
                      prior) within a few hundred iterations in our runs and coherence fell.
  5. EBM:             loss_energy = mean E(X) - mean E(X_rev) + alpha (E(X)^2 + E(X_rev)^2)
                      (X_rev of step 1 is reused: the predecessor regenerates it after the
                      generator update, which doubles the cost of the data chain)
With the caption modality (ModelConfig.text; --captions) the same iteration runs over the images and the caption:
the caption is one more expert of the MoE and one more term of every likelihood (weighted by text_weight in the
losses), the data revision moves the generated captions' logits beside the images, and the EBM reads the
captions as soft one-hot vectors (model.langevin, docs/captions.md).
Divergence guard: a non-finite loss, a diverged chain or |loss_energy| > explode_threshold stops
the run and keeps the last good checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from . import render
from .config import TrainConfig
from .langevin import ChainDiverged, conditional_generate, data_revision, ebm_latent_revision, latent_revision, run
from .paths import find_checkpoint
from .networks import MultimodalEBMVAE


class Diverged(RuntimeError):
    pass


# ---------------------------------------------------------------- losses

def moe_elbo(model, x, kl_weight=1.0, text=None, text_weight=1.0):
    """Negative MoE ELBO, stratified over experts (MMVAE): every expert's sample reconstructs every
    modality. Returns (recon, kl) per sample, averaged over experts. With a caption ``text`` (soft one-hot
    [B, L, V]) the caption's expert joins and its negative log-likelihood, times ``text_weight``, joins recon."""
    G, I = model.generator, model.inference
    mu, logvar, _ = I.experts_params(x, text=text)             # [B, M (+ 1), d]
    b, m, d = mu.shape
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    x_hat = G(z.reshape(b * m, d)).view(b, m, *x.shape[1:])   # [B, expert, modality, 3, 28, 28]
    recon = ((x[:, None] - x_hat) ** 2).flatten(2).sum(2).mean(1) / (2 * G.sigma ** 2)
    if text is not None:
        text_nll = -G.text_log_likelihood(text.repeat_interleave(m, 0), z.reshape(b * m, d)).view(b, m).mean(1)
        recon = recon + text_weight * text_nll
    kl = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(2).mean(1)
    return recon, kl


class ReplayBuffer:
    """Past EBM negatives, as persistent chains (Du & Mordatch 2019; JEM's form): ``size`` tuples, first uniform
    noise. ``sample`` draws tuples at random, each restarted from fresh uniform noise with chance ``reinit``;
    the chain continues from them and ``update`` writes its ends back in their places."""

    def __init__(self, size: int, shape, reinit: float, device="cpu"):
        self.x = torch.rand(size, *shape, device=device)
        self.reinit = reinit

    @classmethod
    def for_config(cls, cfg: TrainConfig, device="cpu") -> "ReplayBuffer | None":
        """The buffer of a run (None when ``ebm_replay_share`` is 0)."""
        if cfg.ebm_replay_share <= 0:
            return None
        return cls(cfg.ebm_replay_size, (cfg.model.n_modalities, 3, 28, 28), cfg.ebm_replay_reinit, device)

    def __len__(self) -> int:
        return len(self.x)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n chain starts [n, M, 3, 28, 28], their places in the buffer [n])."""
        idx = torch.randint(len(self.x), (n,), device=self.x.device)
        x = self.x[idx]
        fresh = torch.rand(n, device=x.device) < self.reinit
        x[fresh] = torch.rand_like(x[fresh])
        return x, idx

    def update(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        self.x[idx] = x.detach().to(self.x.dtype)


def replay_count(cfg: TrainConfig, batch: int) -> int:
    """How many of a batch's EBM negatives come from the replay buffer."""
    return min(batch, round(cfg.ebm_replay_share * batch))


def cond_count(cfg: TrainConfig, batch: int) -> int:
    """How many of a batch's EBM negatives are conditional chains (``cfg.ebm_cond_share``)."""
    return min(batch, round(cfg.ebm_cond_share * batch))


def conditional_negatives(model, x: torch.Tensor, **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional samples of the tuples x [n, M, 3, 28, 28] as the sampler draws them: per tuple one observed
    modality m (uniform), z ~ q(z | x_m), the model's chains (``model.config.chains``, with ``overrides`` by flat
    name, as ``conditional_sampling``): latent revisions, decode, the data revision with x_m clamped to the data.
    Returns the revised tuples (detached) and each tuple's observed modality [n]."""
    M = x.shape[1]
    observed_modality = torch.randint(M, (len(x),), device=x.device)
    out = torch.empty_like(x)
    for m in observed_modality.unique().tolist():
        rows = observed_modality == m
        observed = torch.arange(M, device=x.device) == m
        out[rows] = conditional_generate(model, x[rows], observed, **overrides)["final"]
    return out.detach(), observed_modality


def mismatched_tuples(x: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` tuples of ``x`` [B, M, ...], each with one modality (uniform) replaced by that modality of
    another tuple of the batch (a roll by a random offset, so never its own)."""
    b, M = x.shape[:2]
    rows = torch.arange(n, device=x.device)
    m = torch.randint(M, (n,), device=x.device)
    donor = (rows + torch.randint(1, b, (1,), device=x.device)) % b
    out = x[:n].clone()
    out[rows, m] = x[donor, m]
    return out


def train_losses(model, x, cfg: TrainConfig, it: int, replay: ReplayBuffer | None = None, text=None
                 ) -> tuple[torch.Tensor, dict]:
    """The losses of one iteration: (loss of G and q + loss of the EBM, named losses and diagnostics).
    The two parts touch disjoint parameters (the EBM sees X_rev detached, G and q never see E), so one
    backward of their sum gives each network exactly its own gradient. ``replay``: the buffer of past
    negatives (``cfg.ebm_replay_share``); that share of the generator's revised samples is replaced, as EBM
    negatives only, by buffer chains. ``text``: the tuples' captions as one-hot [B, L, V] for a model with the
    caption modality (None: images alone; the replay buffer holds images only, so not both)."""
    G, I, E = model.generator, model.inference, model.energy
    v = cfg.variant
    warm = it < cfg.warmup_iters   # warm-up: the MoE VAE alone (see TrainConfig.warmup_iters)
    use_ebm = v != "vae" and not warm
    teach = use_ebm and v != "noise_init"
    elbo = v in ("vae", "no_latent_revision") or warm
    b = x.shape[0]
    log = {}

    # 1. generator proposals from the prior, revised by data-space Langevin on the EBM
    #    (ebm_negatives="latent": first by the EBM's chain in latent space, z -> z_rev, x_gen = G(z_rev))
    if use_ebm:
        z = torch.randn(b, G.latent_dim, device=x.device)
        if cfg.ebm_negatives == "latent" and v != "noise_init" and cfg.ebm_latent_steps > 0:
            z0 = z
            z = run(ebm_latent_revision(G, E, z0, cfg.ebm_latent_steps, cfg.ebm_latent_step_size,
                                        cfg.ebm_latent_noise)).x
            log["ebm_latent_move"] = (z - z0).norm(dim=1).mean().item()
        x_gen = G(z)
        init = torch.rand_like(x_gen) if v == "noise_init" else x_gen.detach()
        text_gen, text_knobs = None, {}
        if text is not None:   # the generated captions' logits, revised beside the images
            text_gen = G.text_logits(z)
            text_knobs = dict(text=torch.randn_like(text_gen) if v == "noise_init" else text_gen.detach(),
                              text_step_size=cfg.text_data_step_size, text_noise=cfg.text_data_noise)
        first = None
        for st in data_revision(E, init, cfg.data_steps, cfg.data_step_size, cfg.data_noise, **text_knobs):
            first = st if first is None else first
        x_rev, text_rev = st.x, st.text
        log["data_move"] = (x_rev - init).abs().mean().item()
        log["data_energy_drop"] = (first.energy - st.energy).mean().item()

    # 2.-4. generator and inference model
    if elbo:
        recon, kl = moe_elbo(model, x, text=text, text_weight=cfg.text_weight)
        log["loss_recon"], log["kl"] = recon.mean().item(), kl.mean().item()
        loss_gi = (recon + cfg.kl_weight * kl).mean()
    else:
        z0 = I.sample(x, text=text).detach()
        first = None
        for st in latent_revision(G, z0, x, cfg.latent_steps, cfg.latent_step_size, cfg.latent_noise, text=text):
            first = st if first is None else first
        z_rev = st.x
        log["latent_logp_gain"] = (first.energy - st.energy).mean().item()  # log-posterior rise
        log["latent_move"] = (z_rev - z0).norm(dim=1).mean().item()
        recon = -G.log_likelihood(x, z_rev)
        if text is not None:
            text_nll = -G.text_log_likelihood(text, z_rev)
            log["loss_text"] = text_nll.mean().item()
            recon = recon + cfg.text_weight * text_nll
        infer = -I.expert_log_probs(z_rev, x, text=text).mean(1)
        log["loss_recon"], log["loss_infer"] = recon.mean().item(), infer.mean().item()
        loss_gi = cfg.revision_recon_weight * recon.mean() + cfg.revision_infer_weight * infer.mean()
        if cfg.elbo_weight > 0:  # the MoE ELBO kept beside the revision losses (see TrainConfig)
            recon_elbo, kl = moe_elbo(model, x, text=text, text_weight=cfg.text_weight)
            elbo_loss = (recon_elbo + cfg.kl_weight * kl).mean()
            log["loss_elbo"], log["kl"] = elbo_loss.item(), kl.mean().item()
            loss_gi = loss_gi + cfg.elbo_weight * elbo_loss
    if teach:
        teach_loss = ((x_gen - x_rev) ** 2).flatten(1).sum(1) / (2 * G.sigma ** 2)
        if text is not None:   # the text decoder chases the revised captions: -log p(t_rev | z)
            teach_loss = teach_loss - cfg.text_weight * (text_rev * text_gen.log_softmax(-1)).sum((1, 2))
        infer_rev = -I.expert_log_probs(z, x_rev, text=text_rev).mean(1)
        log["loss_teach"], log["loss_infer_rev"] = teach_loss.mean().item(), infer_rev.mean().item()
        loss_gi = loss_gi + cfg.teach_weight * teach_loss.mean() + cfg.inference_teach_weight * infer_rev.mean()

    # 5. EBM: maximum likelihood, data energy down, revised-sample energy up (one pass over both); with a replay
    #    buffer, a share of the negatives are buffer chains continued by ebm_replay_steps data steps; with
    #    ebm_cond_share, a share are conditional chains of the batch's last tuples (negatives: revised generator
    #    samples, then conditional chains, then replay chains); with ebm_replay_loss="rank" the replay chains are
    #    extra and enter only by their rank against the data (energy_loss)
    loss = loss_gi
    if use_ebm:
        n_rep = replay_count(cfg, b) if replay is not None else 0
        rank = n_rep > 0 and cfg.ebm_replay_loss == "rank"   # the chains are extra, outside the likelihood
        n_cond = min(cond_count(cfg, b), b - (0 if rank else n_rep))
        if (n_rep or n_cond) and text is not None:
            raise ValueError("the replay buffer and conditional negatives (--ebm-replay-share, --ebm-cond-share) "
                             "are for images only: not for the caption modality")
        n_gen = b - n_cond - (0 if rank else n_rep)
        negs = [x_rev[:n_gen]]
        if n_cond:
            negs.append(conditional_negatives(model, x[n_gen:n_gen + n_cond])[0])
        if n_rep:
            start, idx = replay.sample(n_rep)
            x_rep = run(data_revision(E, start, cfg.ebm_replay_steps, cfg.data_step_size, cfg.data_noise)).x
            replay.update(idx, x_rep)
            negs.append(x_rep)
        n_mis = min(b, round(cfg.ebm_mismatch_share * b)) if b > 1 else 0
        if n_mis and text is not None:
            raise ValueError("mismatched tuples (--ebm-mismatch-share) are for images only: not for the caption "
                             "modality")
        x_mis = mismatched_tuples(x, n_mis) if n_mis else x[:0]
        both = torch.cat([x, *negs, x_mis])
        e_all = (E(both) if text is None else E(both, torch.cat([text, text_rev]))).float()
        e_mis, e_all = e_all[len(e_all) - n_mis:], e_all[:len(e_all) - n_mis]
        e_pos, e_neg, e_rank = e_all[:b], e_all[b:2 * b], (e_all[2 * b:] if rank else None)
        loss_e = energy_loss(e_pos, e_neg, cfg.energy_l2, e_rank, e_mis if n_mis else None)
        if n_mis:
            log["mismatch_rank"] = (e_pos[:n_mis] < e_mis).float().mean().item()
            log["energy_mismatch"] = e_mis.mean().item()
        if rank:
            log["replay_rank"] = (e_pos[:, None] < e_rank[None, :]).float().mean().item()  # share ranked right
        log["loss_energy"] = loss_e.item()
        log["energy_data"] = e_pos.mean().item()
        if n_gen:
            log["energy_revised"] = e_neg[:n_gen].mean().item()
        if n_cond:
            log["energy_cond"] = e_neg[n_gen:n_gen + n_cond].mean().item()
        if n_rep:   # the chains are the last n_rep energies either way
            log["energy_replay"] = e_all[-n_rep:].mean().item()
        loss = loss + loss_e
    return loss, log


def energy_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, l2: float, e_rank: torch.Tensor | None = None,
                e_mis: torch.Tensor | None = None) -> torch.Tensor:
    """The EBM's loss: maximum likelihood (data energies ``e_pos`` down, negatives ``e_neg`` up) plus ``l2`` times
    the squared energies; ``e_rank`` (--ebm-replay-loss rank): energies of replay chains that enter only by the
    logistic ranking term mean softplus(E(data) - E(chain)) over all pairs, which pushes a chain up (and the data
    down) while the chain is not above the data, and fades once it is. ``e_mis`` (--ebm-mismatch-share): energies of
    mismatched tuples made from the first len(e_mis) data tuples, each against its own: mean softplus(E(x_i) -
    E(mismatched_i))."""
    loss = e_pos.mean() - e_neg.mean() + l2 * (e_pos ** 2 + e_neg ** 2).mean()
    if e_rank is not None:
        loss = loss + torch.nn.functional.softplus(e_pos[:, None] - e_rank[None, :]).mean()
    if e_mis is not None:
        loss = loss + torch.nn.functional.softplus(e_pos[:len(e_mis)] - e_mis).mean()
    return loss


class TrainStep(torch.nn.Module):
    """The model with ``train_losses`` as its forward: what DistributedDataParallel wraps under torchrun."""

    def __init__(self, model, cfg: TrainConfig, replay: ReplayBuffer | None = None):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.replay = replay

    def forward(self, x, it: int, text=None):
        if self.replay is None:
            self.replay = ReplayBuffer.for_config(self.cfg, x.device)
        return train_losses(self.model, x, self.cfg, it, self.replay, text)


def train_step(model, opt, x, cfg: TrainConfig, it: int, step=None, amp: bool = False, text=None) -> dict:
    """One iteration (losses, divergence guard, one backward, the three Adam steps); returns the named
    losses and diagnostics (floats). ``step``: the TrainStep to call (DDP-wrapped under torchrun); ``text``: the
    captions (one-hot [B, L, V]) of a model with the caption modality."""
    from .device import autocast

    step = step if step is not None else TrainStep(model, cfg)
    failure = None
    try:
        with autocast(x.device, amp):
            loss, log = step(x, it) if text is None else step(x, it, text)
        if abs(log.get("loss_energy", 0.0)) > cfg.explode_threshold:
            raise Diverged(f"|loss_energy| = {abs(log['loss_energy']):.3g} > {cfg.explode_threshold:g}")
        bad = [k for k, val in log.items() if not math.isfinite(val)]
        if bad:
            raise Diverged(f"non-finite {bad}")
    except (Diverged, ChainDiverged) as e:
        failure = e
    if _world() > 1:  # every process stops together (else the others would wait for its gradients)
        flag = torch.tensor([failure is not None], dtype=torch.float32, device=x.device)
        torch.distributed.all_reduce(flag)
        if flag.item() and failure is None:
            failure = Diverged("another process diverged")
    if failure is not None:
        raise failure
    for o in opt.values():
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in opt.values():
        o.step()
    return log


def _world() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# ---------------------------------------------------------------- bookkeeping

def make_optimizers(model, cfg: TrainConfig):
    return {
        "generator": torch.optim.Adam(model.generator.parameters(), cfg.lr_generator, betas=(cfg.beta1, 0.999)),
        "inference": torch.optim.Adam(model.inference.parameters(), cfg.lr_inference, betas=(cfg.beta1, 0.999)),
        "energy": torch.optim.Adam(model.energy.parameters(), cfg.lr_energy, betas=(cfg.beta1_energy, 0.999)),
    }


class ResumeError(RuntimeError):
    """--resume found nothing it can continue from (one-line message)."""


CKPT_DONE = "COMPLETE"   # written last into checkpoint.tmp: the copy is whole
OPTIMIZED_PARTS = ("generator", "inference", "energy")


def write_atomic(path: Path, text: str):
    """Write ``text`` to ``path`` so that a kill leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(out: Path, model, opt, cfg, it, elapsed, cpu_elapsed=None):
    """Write out/checkpoint so that a kill at any point leaves a whole checkpoint to resume from:
    1. write checkpoint.tmp (model safetensors + config.json, train_config.json, state.pt), then the
       COMPLETE marker; 2.-4. ``_promote``: set the previous checkpoint.old aside, rename checkpoint ->
    checkpoint.old (kept: the last good copy if state.pt is ever unreadable), checkpoint.tmp -> checkpoint.
    state.pt holds tensors and plain types only (read back with torch.load(weights_only=True));
    ``find_resumable`` takes the copy with the highest iteration."""
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    cfg.to_json(tmp / "train_config.json")
    torch.save({"iteration": int(it), "elapsed": float(elapsed),
                "cpu_elapsed": None if cpu_elapsed is None else float(cpu_elapsed),
                "optimizers": {k: o.state_dict() for k, o in opt.items()},
                "torch_rng": torch.get_rng_state()}, tmp / "state.pt")
    (tmp / CKPT_DONE).write_text(f"{it}\n")
    _promote(out)


def _promote(out: Path):
    """Steps 2-4 of a save: the complete checkpoint.tmp becomes checkpoint, the previous one checkpoint.old
    (also finishes a save killed between its renames)."""
    tmp, final, old, trash = (out / n for n in ("checkpoint.tmp", "checkpoint", "checkpoint.old", "checkpoint.del"))
    if final.exists():
        if old.exists():
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(old, trash)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(trash, ignore_errors=True)


def _check_state(model, state):
    """Every part of a resume state, before any of it is used: counters, clocks, RNG state, and optimiser
    state that fits the weights (ResumeError with a short reason)."""
    if not isinstance(state, dict):
        raise ResumeError(f"state.pt holds a {type(state).__name__}, not a training state")
    missing = [k for k in ("iteration", "elapsed", "optimizers", "torch_rng") if k not in state]
    if missing:
        raise ResumeError(f"state.pt lacks {', '.join(missing)}")
    if not isinstance(state["iteration"], int) or state["iteration"] < 0:
        raise ResumeError(f"state.pt: iteration {state['iteration']!r} is not a count")
    for k in ("elapsed", "cpu_elapsed"):
        v = state.get(k)
        if not (v is None and k == "cpu_elapsed") and (not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise ResumeError(f"state.pt: {k} {v!r} is not a number of seconds")
    rng = state["torch_rng"]
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
        raise ResumeError("state.pt: torch_rng is not a random generator state")
    opts = state["optimizers"]
    if not isinstance(opts, dict) or set(opts) != set(OPTIMIZED_PARTS):
        raise ResumeError(f"state.pt: optimizers should be {', '.join(OPTIMIZED_PARTS)}")
    for part in OPTIMIZED_PARTS:
        params = list(getattr(model, part).parameters())
        o = opts[part]
        try:
            ids = [i for g in o["param_groups"] for i in g["params"]]
            moments = dict(o["state"])
        except (TypeError, KeyError, AttributeError):
            raise ResumeError(f"state.pt: the {part} optimiser state is malformed") from None
        if len(ids) != len(params):
            raise ResumeError(f"state.pt: the {part} optimiser holds {len(ids)} parameters, the weights {len(params)} "
                              f"(a state of another model)")
        for i, p in zip(ids, params):
            for name, t in (moments.get(i) or {}).items():
                if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape != p.shape:
                    raise ResumeError(f"state.pt: the {part} optimiser's {name} is {list(t.shape)} for weights of "
                                      f"{list(p.shape)} (a state of a model of another width)")


def _read_checkpoint(path: Path, device="cpu"):
    """(model, state) of one checkpoint folder; raises with a short reason if anything is unreadable.
    state.pt is never unpickled: only tensors and plain types load (weights_only)."""
    for name in ("config.json", "model.safetensors", "state.pt"):
        if not (path / name).is_file():
            raise ResumeError(f"{name} is missing")
    try:
        model = MultimodalEBMVAE.from_pretrained(str(path), strict=True)
    except Exception as e:
        raise ResumeError(f"the weights do not load ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    try:
        state = torch.load(path / "state.pt", map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():   # not a pickle of allowed types: damaged, or not a PyTorch file
            raise ResumeError("state.pt is unreadable (damaged, or not a file saved by training)") from None
        raise ResumeError("state.pt holds objects other than tensors and plain values (refused: loading it "
                          "could run code)") from None
    except Exception as e:
        raise ResumeError(f"state.pt is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    _check_state(model, state)
    return model, state


def find_resumable(out: Path, device="cpu"):
    """The newest whole checkpoint under ``out``: of checkpoint, checkpoint.tmp (only if COMPLETE: a save
    killed after writing it) and checkpoint.old, the readable one with the highest iteration (on a tie, in
    that order). Returns (folder, model, state, notes about the copies skipped) or raises ResumeError saying
    what was found."""
    notes, found = [], []
    for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old"):
        path = out / name
        if not path.is_dir():
            continue
        if name == "checkpoint.tmp" and not (path / CKPT_DONE).is_file():
            notes.append(f"{path} is an unfinished save (skipped)")
            continue
        try:
            model, state = _read_checkpoint(path, device)
        except ResumeError as e:
            notes.append(f"{path}: {e}")
            continue
        found.append((path, model, state))
    if found:
        path, model, state = max(found, key=lambda f: f[2]["iteration"])   # max keeps the first of a tie
        notes += [f"{p} holds iteration {s['iteration']}, older than {path.name} (not used)"
                  for p, _, s in found if p != path and s["iteration"] < state["iteration"]]
        return path, model, state, notes
    if not out.is_dir():
        raise ResumeError(f"--resume: the run folder {str(out)!r} does not exist (check --out)")
    found = "; ".join(notes) if notes else "no checkpoint, checkpoint.tmp or checkpoint.old in it"
    raise ResumeError(f"--resume: nothing to resume in {str(out)!r} ({found}). Start a new run without --resume "
                      f"(or in another folder) to train from scratch.")


def prepare_resume(out: Path, found: Path, iteration: int):
    """Before a resumed run writes anything: finish a save killed between its renames (checkpoint.tmp was
    the newest copy), drop a half-deleted checkpoint.del, and cut log.jsonl back to the iterations before
    ``iteration`` (those after the save are run again; a line cut by the kill is dropped)."""
    if found.name == "checkpoint.tmp":
        _promote(out)
    shutil.rmtree(out / "checkpoint.del", ignore_errors=True)
    log_path = out / "log.jsonl"
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            if json.loads(line)["iteration"] < iteration:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    write_atomic(log_path, "".join(line + "\n" for line in kept))


@torch.no_grad()
def save_samples(model, cfg: TrainConfig, path: Path, it: int, n=8, seed=1234):
    """Prior samples: generator proposals | EBM-revised (training chain), side by side; with the caption modality
    their captions (proposal, then revised) in a .txt file beside the image."""
    dev = next(model.parameters()).device
    g = torch.Generator(dev).manual_seed(seed)
    z = torch.randn(n, model.config.latent_dim, generator=g, device=dev)
    x_gen = model.generator(z)
    panels = [render.sample_grid(x_gen)]
    text = model.config.text
    logits = None if text is None else model.generator.text_logits(z)
    captions = [] if text is None else [("proposal", logits)]
    if cfg.variant != "vae" and it >= cfg.warmup_iters:
        knobs = {} if text is None else dict(text=logits, text_step_size=cfg.text_data_step_size,
                                             text_noise=cfg.text_data_noise)
        last = run(data_revision(model.energy, x_gen, cfg.data_steps, cfg.data_step_size, cfg.data_noise,
                                 generator=g, **knobs))
        x_rev = last.x
        panels.append(render.sample_grid(x_rev))
        captions += [] if text is None else [("revised", last.text)]
    if captions:
        from .captions import CaptionReader, Tokenizer

        reader = CaptionReader(Tokenizer(text.words, text.max_len))
        path.with_suffix(".txt").write_text("".join(
            f"{i} {name}: {c}\n" for name, t in captions
            for i, c in enumerate(reader.read((t if name == "revised" else t.softmax(-1)).cpu()))))
    Image.fromarray(render.side_by_side(panels)).resize((sum(p.shape[1] for p in panels) * 2, n * 56),
                                                      Image.NEAREST).save(path)


@torch.no_grad()
def quick_coherence(model, clf, test, n: int, seed=0, cfg: TrainConfig | None = None, it: int = 0) -> dict:
    """Generator proposals: conditional coherence from each single modality, and joint coherence of
    prior samples (after the warm-up of an EBM variant also after the EBM's latent chain with the
    training chain's settings). A cheap progress signal; model.evaluate gives the real table."""
    from .metrics import coherence, joint_coherence
    from .networks import observed_mask

    dev = next(model.parameters()).device
    g = torch.Generator(dev).manual_seed(seed)
    x, y = test.batch(torch.arange(min(n, len(test))))
    x = x.to(dev)
    M = model.config.n_modalities
    cond = []
    for m in range(M):
        z = model.inference.sample(x, observed_mask([m], M).to(dev), generator=g)
        cond.append(coherence(clf, model.generator(z).cpu(), y, [k for k in range(M) if k != m]))
    z = torch.randn(n, model.config.latent_dim, generator=g, device=dev)
    out = {"coherence_cond1": float(np.mean(cond)), "coherence_joint": joint_coherence(clf, model.generator(z).cpu())}
    if cfg is not None and cfg.variant != "vae" and it >= cfg.warmup_iters and cfg.ebm_latent_steps > 0:
        # joint coherence after the EBM's latent chain (the test-time sampler's "ebm_latent" stage)
        z = run(ebm_latent_revision(model.generator, model.energy, z, cfg.ebm_latent_steps,
                                    cfg.ebm_latent_step_size, cfg.ebm_latent_noise, generator=g)).x
        out["coherence_joint_ebm_latent"] = joint_coherence(clf, model.generator(z).cpu())
    if model.config.text is not None:
        out.update(quick_caption_coherence(model, clf, test, x, y, g))
    return out


@torch.no_grad()
def quick_caption_coherence(model, clf, test, x, y, g) -> dict:
    """Generator proposals of a model with the caption modality, on the test tuples x, y: images from the caption
    alone (coherence_caption_to_image, every modality judged) and captions from all the images
    (coherence_image_to_caption: the caption names the digit). model.caption_eval gives the real table."""
    from .caption_eval import caption_digit
    from .captions import CaptionReader, Tokenizer
    from .metrics import coherence
    from .networks import text_one_hot

    text, M, dev = model.config.text, model.config.n_modalities, x.device
    t = text_one_hot(test.caption_batch(range(len(y))), text.vocab_size).to(dev)
    z = model.inference.sample(x, torch.tensor([False] * M + [True], device=dev), generator=g, text=t)
    to_image = coherence(clf, model.generator(z).cpu(), y)
    z = model.inference.sample(x, generator=g)
    reader = CaptionReader(Tokenizer(text.words, text.max_len))
    named = torch.tensor([caption_digit(c) for c in reader.read(model.generator.text_logits(z).softmax(-1).cpu())])
    return {"coherence_caption_to_image": to_image, "coherence_image_to_caption": (named == y).float().mean().item()}


# ---------------------------------------------------------------- main loop

def _init_distributed(cfg: TrainConfig):
    """Under torchrun (WORLD_SIZE > 1): join the process group (NCCL on CUDA, gloo on CPU) and pick this
    process's device. Returns (rank, world size, device)."""
    from .device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(cfg.device)
    if world <= 1:
        return 0, 1, device
    dist = torch.distributed
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def load_data(cfg: TrainConfig, split: str):
    """The training or test split of the run's data set (the built-in builder or the PolyMNIST release), with
    the tuples' captions for a model with the caption modality."""
    from .captions import MAX_LEN, VOCABULARY
    from .data import DataError, load_dataset

    text = cfg.model.text
    if text is not None and (text.words, text.max_len) != (VOCABULARY, MAX_LEN):
        raise DataError(f"the model's captions ({text.vocab_size} words, {text.max_len} positions) are not the data "
                        f"set's ({len(VOCABULARY)} words, {MAX_LEN} positions): keep model.text's words and max_len")

    return load_dataset(split, cfg.model.n_modalities, cfg.model.data_seed, cfg.mnist, cfg.cache_dir,
                        dataset=cfg.dataset, data_dir=cfg.data_dir, captions=cfg.model.text is not None)


def caption_batch(data, idx, model_config, device):
    """The captions of the tuples ``idx`` as one-hot [B, L, V] on ``device`` (None for images alone)."""
    from .networks import text_one_hot

    if model_config.text is None:
        return None
    return text_one_hot(data.caption_batch(idx), model_config.text.vocab_size).to(device, non_blocking=True)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) the run in ``cfg.out_dir``; returns the final folder.
    Under torchrun every process trains on its shard of the data and rank 0 writes everything."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world, device = _init_distributed(cfg)
    lead = rank == 0
    amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not amp and lead:
        print(f"note: --amp applies to CUDA only; training in float32 on {device}", file=sys.stderr)
    out = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)
    model = MultimodalEBMVAE(cfg.model)
    if cfg.init_from:  # the weights of another run (same shapes); optimisers start fresh
        from safetensors.torch import load_file

        src = load_file(str(Path(cfg.init_from) / "model.safetensors"))
        skip = tuple(f"{part}." for part in cfg.init_skip_parts)
        model.load_state_dict({**model.state_dict(), **{k: v for k, v in src.items() if not k.startswith(skip)}},
                              strict=True)
    start, elapsed, cpu_elapsed, state = 0, 0.0, 0.0, None
    ckpt = out / "checkpoint"
    if resume:  # before anything is written: a mistyped folder must not become a new run
        found, model, state, notes = find_resumable(out)
        if lead:
            for n in notes:
                print(f"note: {n}", file=sys.stderr)
        start, elapsed = state["iteration"], state["elapsed"]
        cpu_elapsed = state.get("cpu_elapsed") or elapsed
        if lead:
            prepare_resume(out, found, start)
    data = load_data(cfg, "train")
    if cfg.train_size:
        data.x, data.y = data.x[:cfg.train_size], data.y[:cfg.train_size]
    clf = test = None
    judges = find_checkpoint(cfg.classifier) if cfg.classifier else None
    if lead and judges is not None and cfg.eval_every and judges.exists():
        from .classifier import Classifiers

        clf = Classifiers.from_pretrained(str(judges)).eval()
        test = load_data(cfg, "test")
    if lead:   # after the inputs loaded: a failed start leaves no empty run folder
        (out / "samples").mkdir(parents=True, exist_ok=True)

    model.to(device)
    opt = make_optimizers(model, cfg)
    if state is not None:
        for k, o in opt.items():
            o.load_state_dict(state["optimizers"][k])
        torch.set_rng_state(state["torch_rng"])
        if lead:
            print(f"resumed from {found} at iteration {start} ({elapsed / 60:.1f} min)")
    if world > 1:  # each process its own chain noise; DDP broadcasts rank 0's weights
        torch.manual_seed(cfg.seed + 1000003 * rank + start)
    if device.type == "cuda":
        torch.cuda.manual_seed(cfg.seed + 1000003 * rank + start)
    replay = ReplayBuffer.for_config(cfg, device)   # not saved: a resumed run starts it afresh from noise

    def wrap(it: int):
        """The training step, DDP-wrapped under torchrun. The EBM has no gradient during the warm-up and in the
        'vae' variant: only then must DDP look for unused parameters (else it warns on every process)."""
        if world == 1:
            return TrainStep(model, cfg, replay)
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(TrainStep(model, cfg, replay), device_ids=[device.index] if device.type == "cuda"
                                       else None, find_unused_parameters=cfg.variant == "vae" or it < cfg.warmup_iters)

    step = wrap(start)
    if lead:
        write_atomic(out / "train_config.json", json.dumps(asdict(cfg), indent=2))
        (out / "DIVERGED.txt").unlink(missing_ok=True)

    shard = torch.arange(rank, len(data), world)   # this process's share of the training set
    g = torch.Generator().manual_seed(cfg.seed + start + 7919 * rank)
    log_file = open(out / "log.jsonl", "a") if lead else None
    t0 = time.time() - elapsed
    c0 = time.process_time() - cpu_elapsed
    it, saved = start, None
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc=cfg.variant, dynamic_ncols=True,
               disable=not lead)
    try:
        for it in bar:
            if world > 1 and it == cfg.warmup_iters and it > start and cfg.variant != "vae":
                step = wrap(it)   # the warm-up is over: every parameter has a gradient from now on
            idx = shard[torch.randint(len(shard), (cfg.batch_size,), generator=g)]
            x, _ = data.batch(idx)
            x = x.to(device, non_blocking=True)
            text = caption_batch(data, idx, cfg.model, device)
            t_it = time.time()
            try:
                log = train_step(model, opt, x, cfg, it, step=step, amp=amp, text=text)
            except (Diverged, ChainDiverged) as e:
                msg = f"stopped at iteration {it}: {e}. The last good checkpoint is {ckpt} (resume with --resume, " \
                      f"after lowering the learning rates or step sizes)."
                if lead:
                    (out / "DIVERGED.txt").write_text(msg + "\n")
                    print(msg, file=sys.stderr)
                return ckpt
            log.update(iteration=it, seconds_per_iter=time.time() - t_it, minutes=(time.time() - t0) / 60,
                       cpu_minutes=(time.process_time() - c0) / 60)
            done = it + 1
            stop = bool(cfg.max_minutes and time.time() - t0 > 60 * cfg.max_minutes) or \
                bool(cfg.max_cpu_minutes and time.process_time() - c0 > 60 * cfg.max_cpu_minutes)
            if world > 1:  # rank 0's clock decides, so that every process stops at the same iteration
                flag = torch.tensor([float(stop)], device=device)
                torch.distributed.broadcast(flag, 0)
                stop = bool(flag.item())
            if not lead:
                if stop:
                    break
                continue
            if clf is not None and (done % cfg.eval_every == 0):
                log.update(quick_coherence(model, clf, test, cfg.eval_samples, cfg=cfg, it=done))
            if (cfg.log_every and done % cfg.log_every == 0) or "coherence_joint" in log:
                log_file.write(json.dumps(log) + "\n")
                log_file.flush()
                bar.set_postfix({k: f"{log[k]:.3g}" for k in ("loss_recon", "loss_energy", "data_move",
                                                              "coherence_joint") if k in log})
            if cfg.sample_every and done % cfg.sample_every == 0:
                save_samples(model, cfg, out / "samples" / f"iter{done:06d}.png", done)
            if (cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == cfg.warmup_iters:
                save_checkpoint(out, model, opt, cfg, done, time.time() - t0, time.process_time() - c0)
                saved = done
            if done == cfg.warmup_iters:  # keep the end of the warm-up: every variant can start from it
                shutil.rmtree(out / "checkpoint_warmup", ignore_errors=True)
                shutil.copytree(out / "checkpoint", out / "checkpoint_warmup")
            if stop:
                print(f"time budget reached at iteration {done} ({(time.time() - t0) / 60:.1f} wall-clock min, "
                      f"{(time.process_time() - c0) / 60:.1f} CPU min)")
                break
        else:
            done = cfg.iters
        if start >= cfg.iters:
            done = start
    finally:
        if log_file is not None:
            log_file.close()
    if lead:
        if saved != done:
            save_checkpoint(out, model, opt, cfg, done, time.time() - t0, time.process_time() - c0)
        save_samples(model, cfg, out / "samples" / f"final_iter{done:06d}.png", done)
        model.save_pretrained(out / "final")
        cfg.to_json(out / "final" / "train_config.json")
    if world > 1:
        torch.distributed.barrier()
    return out / "final"


# ---------------------------------------------------------------- CLI

def build_parser():
    from .cli import ConfigParser, HelpFormatter, add_dataclass_args, field_docs
    from .config import DATASETS, READERS, REPLAY_LOSSES, VARIANTS

    p = ConfigParser(prog="python -m model.train", description=__doc__,
                     formatter_class=HelpFormatter,
                     epilog="Every TrainConfig field is a flag; the model's (ModelConfig) are --model.<name>, its "
                            "test-time chains --model.<chain>-<knob>. Multi-process: torchrun --nproc_per_node N "
                            "-m model.train ... (--batch-size is per process).")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint (its train_config.json, flags override it); "
                        "an error if there is nothing to resume")
    p.add_argument("--captions", action="store_true",
                   help="train with the caption modality (ModelConfig.text with its defaults, docs/captions.md) "
                        "unless --config or the resumed run sets one (off: images alone)")
    p.add_argument("--text-reader", choices=READERS, default=argparse.SUPPRESS,
                   help="with the caption modality: how the text expert and the EBM's text branch read a caption "
                        "(ModelConfig.text.reader): positions = word embeddings flattened with their positions; "
                        "conv = a convolution over neighbouring words, max-pooled over the words "
                        "(default: positions, or the --config's / resumed run's)")
    p.add_argument("--config", default=None, help="a train_config.json to start from (flags override it) "
                   "(default: none)")
    p.add_argument("--out", "--out-dir", dest="out_dir", default=argparse.SUPPRESS, metavar="OUT",
                   help=f"{field_docs(TrainConfig)['out_dir']['help']} (default: {TrainConfig().out_dir})")
    add_dataclass_args(
        p, TrainConfig, choices={"variant": VARIANTS, "dataset": DATASETS, "ebm_replay_loss": REPLAY_LOSSES},
        skip=("out_dir",),
        titles={"": "run", "training-time chains":
                "training-time chains (the revisions inside every training iteration; "
                "test-time chains are --model.latent-* / --model.data-*)",
                "model": {"": "model (ModelConfig: the networks, saved as config.json beside the weights)",
                          "test-time chains (conditional generation, the app, evaluation)":
                          "test-time chains (ModelConfig: conditional generation, the app, model.evaluate; "
                          "saved with the weights, not used in training)"}})
    return p


class ConfigFileError(ValueError):
    """A train_config.json that cannot be read (one-line message naming the file)."""


def read_train_config(path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_json(path)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ConfigFileError(f"{str(path)!r} is not a readable train config ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:160]})") from None


def resume_config(out: Path) -> TrainConfig | None:
    """The run's train_config.json, or, if it is damaged, the copy saved with its newest checkpoint (said
    on stderr); None when the run folder has none."""
    path = out / "train_config.json"
    copies = [out / n / "train_config.json" for n in ("checkpoint", "checkpoint.tmp", "checkpoint.old")]
    if not path.exists():
        return None
    try:
        return read_train_config(path)
    except ConfigFileError as e:
        for copy in copies:
            try:
                cfg = read_train_config(copy)
            except ConfigFileError:
                continue
            print(f"note: {e}; using the checkpoint's copy {str(copy)!r}", file=sys.stderr)
            return cfg
        raise


def parse_args(argv=None) -> tuple[TrainConfig, bool]:
    a = vars(build_parser().parse_args(argv))
    resume, config, captions = a.pop("resume"), a.pop("config"), a.pop("captions")
    base = read_train_config(Path(config)) if config else TrainConfig()
    if resume and not config and "out_dir" in a:
        base = resume_config(Path(a["out_dir"])) or base
    d = asdict(base)
    if captions and d["model"].get("text") is None:
        from .config import TextConfig

        d["model"]["text"] = asdict(TextConfig())
    if "text_reader" in a:
        reader = a.pop("text_reader")
        if d["model"].get("text") is None:
            raise ConfigFileError("--text-reader needs the caption modality (--captions)")
        d["model"]["text"]["reader"] = reader
    for k, val in a.items():
        if k.startswith("model."):
            d["model"][k[6:]] = val   # chain knobs by their flat names: ModelConfig.from_dict reads them
        else:
            d[k] = val
    return TrainConfig(**d), resume


def main(argv=None):
    from .cli import fail
    from .data import DataError, MNISTError
    from .device import DeviceError

    try:
        cfg, resume = parse_args(argv)
        path = train(cfg, resume)
    except (ResumeError, ConfigFileError, DataError, MNISTError, DeviceError) as e:
        fail(str(e))
    except (ValueError, OSError, json.JSONDecodeError) as e:  # a bad --config file, an unwritable folder
        fail(f"{type(e).__name__}: {e}")
    except KeyboardInterrupt:
        fail("interrupted; resume with --resume", 130)
    if (Path(cfg.out_dir) / "DIVERGED.txt").exists():
        sys.exit(3)
    if int(os.environ.get("RANK", "0")) == 0:   # under torchrun the first process alone reports
        print(f"saved {path}")


if __name__ == "__main__":
    main()
