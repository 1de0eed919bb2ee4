"""The losses of one training iteration pinned to values computed here by hand, from the formulas of
model/train.py's docstring, on a tiny model with fixed (seeded) weights and fixed inputs.

Every random draw is made deterministic: each standard-normal draw is RANDN everywhere, each uniform draw
is UNIFORM, and the mixture's expert pick is expert 0. The chains take one step without noise, so their
results are written out below too: x_rev = clamp(x_gen - s^2/2 grad E(x_gen), 0, 1) and
z_rev = z0 - s^2/2 grad U(z0) with U(z) = ||z||^2/2 + sum_m ||x_m - g_m(z)||^2 / (2 sigma^2).
Only the networks' forward passes (g_m, mu_m / logvar_m, E) are shared with the code under test.
"""
import math

import pytest
import torch

from model.config import ModelConfig, TrainConfig
from model.networks import MultimodalEBMVAE
from model.train import moe_elbo, train_losses

RANDN, UNIFORM = 0.5, 0.25
B, M, D = 3, 2, 2
SIGMA = 0.3
WEIGHTS = dict(kl_weight=0.7, elbo_weight=0.6, teach_weight=0.2, inference_teach_weight=0.3, energy_l2=0.05,
               revision_recon_weight=0.8, revision_infer_weight=0.4)
CHAINS = dict(data_steps=1, data_step_size=3.0, data_noise=0.0, latent_steps=1, latent_step_size=0.2,
              latent_noise=0.0)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = MultimodalEBMVAE(ModelConfig(n_modalities=M, latent_dim=D, width=2, ebm_width=2, ebm_features=4,
                                         sigma=SIGMA))
    with torch.no_grad():   # larger last layers: means, log-variances and energies of order one, not near zero
        for head in model.inference.experts:
            head[-1].weight.mul_(30)
            head[-1].bias.mul_(30)
        model.energy.head[-1].weight.mul_(30)
    x = torch.rand(B, M, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.fixture
def fixed_draws(monkeypatch):
    def randn(*size, generator=None, device=None, dtype=None, **_):
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        return torch.full(tuple(shape), RANDN, device=device, dtype=dtype or torch.float32)

    monkeypatch.setattr(torch, "randn", randn)
    monkeypatch.setattr(torch, "randn_like", lambda t, **_: torch.full_like(t, RANDN))
    monkeypatch.setattr(torch, "rand_like", lambda t, **_: torch.full_like(t, UNIFORM))
    monkeypatch.setattr(torch, "randint", lambda high, size, generator=None, device=None, **_:
                        torch.zeros(size, dtype=torch.long, device=device))


# ---------------------------------------------------------------- the formulas, written out

def g(model, z):
    """The generator's means, all modalities: [B, M, 3, 28, 28]."""
    return torch.stack([dec(z) for dec in model.generator.decoders], 1)


def expert(model, x, m):
    mu, logvar = model.inference.experts[m](x[:, m]).chunk(2, dim=-1)
    return mu, logvar


def sq(a, b):
    """||a - b||^2 per sample."""
    return ((a - b) ** 2).flatten(1).sum(1)


def neg_log_normal(z, mu, logvar):
    """-log N(z; mu, diag(exp(logvar))) per sample."""
    return 0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(1)


def elbo_terms(model, x, kl_weight):
    """MoE ELBO, stratified: each expert's sample z_k = mu_k + RANDN * sigma_k reconstructs every modality.
    Returns the per-sample reconstruction and KL, each averaged over the experts."""
    recon, kl = 0, 0
    for k in range(M):
        mu, logvar = expert(model, x, k)
        z = mu + RANDN * (0.5 * logvar).exp()
        recon = recon + sq(x, g(model, z)) / (2 * SIGMA ** 2)
        kl = kl + 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(1)
    return recon / M, kl / M


def data_revision_by_hand(model, x0, cfg):
    x = x0.detach().requires_grad_(True)
    grad = torch.autograd.grad(model.energy(x).sum(), x)[0]
    return (x0.detach() - 0.5 * cfg.data_step_size ** 2 * grad).clamp(0, 1)


def latent_revision_by_hand(model, z0, x, cfg):
    z = z0.detach().requires_grad_(True)
    u = 0.5 * (z ** 2).sum(1) + sq(x, g(model, z)) / (2 * SIGMA ** 2)
    grad = torch.autograd.grad(u.sum(), z)[0]
    return z0.detach() - 0.5 * cfg.latent_step_size ** 2 * grad


def by_hand(model, x, cfg, warm=False):
    """(total loss, named losses) of one iteration, written from the docstring's five steps."""
    v = cfg.variant
    use_ebm = v != "vae" and not warm
    out, gi = {}, 0
    if use_ebm:                                                     # 1. data revision
        z = torch.full((B, D), RANDN)
        x_gen = g(model, z)
        init = torch.full_like(x_gen, UNIFORM) if v == "noise_init" else x_gen
        x_rev = data_revision_by_hand(model, init, cfg)
    if v in ("vae", "no_latent_revision") or warm:                   # 2-4 by the MoE ELBO
        recon, kl = elbo_terms(model, x, cfg.kl_weight)
        out["loss_recon"], out["kl"] = recon.mean(), kl.mean()
        gi = (recon + cfg.kl_weight * kl).mean()
    else:                                                          # 2. latent revision, 3.-4. MLE on z_rev
        mu0, logvar0 = expert(model, x, 0)
        z0 = mu0 + RANDN * (0.5 * logvar0).exp()
        z_rev = latent_revision_by_hand(model, z0, x, cfg)
        recon = sq(x, g(model, z_rev)) / (2 * SIGMA ** 2)
        infer = sum(neg_log_normal(z_rev, *expert(model, x, m)) for m in range(M)) / M
        recon_e, kl = elbo_terms(model, x, cfg.kl_weight)
        elbo = (recon_e + cfg.kl_weight * kl).mean()
        out.update(loss_recon=recon.mean(), loss_infer=infer.mean(), loss_elbo=elbo, kl=kl.mean())
        gi = cfg.revision_recon_weight * recon.mean() + cfg.revision_infer_weight * infer.mean()
        gi = gi + cfg.elbo_weight * elbo
    if use_ebm and v != "noise_init":                              # 3. teaching, 4. inference on X_rev
        teach = sq(x_gen, x_rev) / (2 * SIGMA ** 2)
        infer_rev = sum(neg_log_normal(z, *expert(model, x_rev, m)) for m in range(M)) / M
        out.update(loss_teach=teach.mean(), loss_infer_rev=infer_rev.mean())
        gi = gi + cfg.teach_weight * teach.mean() + cfg.inference_teach_weight * infer_rev.mean()
    total, loss_e = gi, torch.zeros(())
    if use_ebm:                                                     # 5. the EBM
        e_pos, e_neg = model.energy(x), model.energy(x_rev.detach())
        loss_e = e_pos.mean() - e_neg.mean() + cfg.energy_l2 * ((e_pos ** 2).mean() + (e_neg ** 2).mean())
        out.update(loss_energy=loss_e, energy_data=e_pos.mean(), energy_revised=e_neg.mean())
        total = total + loss_e
    return total, out, (gi, loss_e)


def grads(model, loss, part):
    """d loss / d (the part's parameters); None for a parameter the loss does not depend on."""
    params = list(getattr(model, part).parameters())
    if not loss.requires_grad:
        return [None] * len(params)
    return torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)


# ---------------------------------------------------------------- the pins

CASES = [("full", False), ("noise_init", False), ("no_latent_revision", False), ("vae", False), ("full", True)]


@pytest.mark.parametrize("variant,warm", CASES)
def test_train_losses_match_the_formulas(tiny, fixed_draws, variant, warm):
    """Every named loss and the total; warm: an iteration inside the warm-up (the MoE VAE alone)."""
    model, x = tiny
    cfg = TrainConfig(variant=variant, warmup_iters=5 if warm else 0, **WEIGHTS, **CHAINS)
    loss, log = train_losses(model, x, cfg, 0)
    total, expected, (loss_gi, loss_e) = by_hand(model, x, cfg, warm=warm)
    assert set(expected) <= set(log)
    named = {k: log[k] for k in expected}
    assert named == pytest.approx({k: v.item() for k, v in expected.items()}, rel=1e-4, abs=1e-5)
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    # each network's gradient is the one of its own loss: G and q from the first part, the EBM from the second
    for part, own in (("generator", loss_gi), ("inference", loss_gi), ("energy", loss_e)):
        for a, b in zip(grads(model, loss, part), grads(model, own, part)):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)
    if variant == "vae" or warm:
        assert "loss_energy" not in log and all(a is None for a in grads(model, loss, "energy"))
    else:
        assert all(a is not None for a in grads(model, loss, "energy"))


def test_the_ebm_loss_is_contrastive(tiny, fixed_draws):
    """alpha = 0: the EBM's loss is exactly mean E(X) - mean E(X_rev); data energy pushed down, revised up."""
    model, x = tiny
    cfg = TrainConfig(variant="full", warmup_iters=0, **{**WEIGHTS, "energy_l2": 0.0}, **CHAINS)
    _, log = train_losses(model, x, cfg, 0)
    assert log["loss_energy"] == pytest.approx(log["energy_data"] - log["energy_revised"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("part,off", [
    ("inference", dict(revision_infer_weight=0.0, inference_teach_weight=0.0)),
    ("generator", dict(revision_recon_weight=0.0, teach_weight=0.0)),
])
def test_a_zero_weight_cuts_the_latent_revisions_term(tiny, fixed_draws, part, off):
    """With its latent-revision weight, its teaching weight and the ELBO's at 0, a network learns nothing from
    the iteration (its gradient is zero), while the other network still does."""
    model, x = tiny
    cfg = TrainConfig(variant="full", warmup_iters=0, **{**WEIGHTS, "elbo_weight": 0.0, **off}, **CHAINS)
    loss, _ = train_losses(model, x, cfg, 0)
    assert all(a is None or not a.any() for a in grads(model, loss, part))
    other = "generator" if part == "inference" else "inference"
    assert any(a is not None and a.abs().sum() > 0 for a in grads(model, loss, other))


def test_moe_elbo_matches_the_formula(tiny, fixed_draws):
    model, x = tiny
    recon, kl = moe_elbo(model, x)
    recon_h, kl_h = elbo_terms(model, x, 1.0)
    assert recon.shape == kl.shape == (B,)
    assert torch.allclose(recon, recon_h, rtol=1e-5) and torch.allclose(kl, kl_h, rtol=1e-5)
