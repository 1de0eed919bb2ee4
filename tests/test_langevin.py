"""The samplers against analytic cases, clamping, bounds, divergence, and the conditional pipeline."""
import math

import pytest
import torch

from model.config import temperature
from model.langevin import (ChainDiverged, conditional_generate, conditional_sampling, data_revision,
                            langevin, latent_revision, run)
from model.networks import MultimodalEBMVAE, observed_mask


def gaussian_energy(mu, s0):
    return lambda x: ((x - mu) ** 2).flatten(1).sum(1) / (2 * s0 ** 2)


@pytest.mark.parametrize("noise_factor", [1.0, 0.5])
def test_data_chain_samples_gaussian_at_its_temperature(noise_factor):
    """E(x) = ||x - 0.5||^2 / (2 * 0.05^2): chains reach mean 0.5 and variance T * 0.05^2, T = (n/s)^2."""
    mu, s0, s = 0.5, 0.05, 0.01
    n = noise_factor * s
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((4000, 2, 1, 1, 1), 0.3)
    last = run(data_revision(gaussian_energy(mu, s0), x0, 600, s, n, generator=g))
    x = last.x.flatten()
    assert abs(x.mean().item() - mu) < 0.003
    expected_std = math.sqrt(temperature(s, n)) * s0
    assert abs(x.std().item() / expected_std - 1) < 0.06


def test_latent_chain_matches_linear_gaussian_posterior():
    """Linear decoder x = A z + b + N(0, sigma^2): the posterior is Gaussian with known moments."""
    torch.manual_seed(0)
    d, D, sigma = 2, 6, 0.5
    A, b = torch.randn(D, d), torch.randn(D)

    class LinearGenerator:
        def log_posterior(self, z, x, observed=None):
            return -0.5 * (z ** 2).sum(1) - ((x - z @ A.T - b) ** 2).sum(1) / (2 * sigma ** 2)

    x_obs = torch.randn(1, D)
    precision = torch.eye(d) + A.T @ A / sigma ** 2
    cov = torch.linalg.inv(precision)
    mean = cov @ A.T @ (x_obs[0] - b) / sigma ** 2
    g = torch.Generator().manual_seed(1)
    z0 = torch.zeros(5000, d)
    step = 0.5 / math.sqrt(torch.linalg.eigvalsh(precision).max().item())
    z = run(latent_revision(LinearGenerator(), z0, x_obs.expand(5000, D), 400, step, step, generator=g)).x
    assert torch.allclose(z.mean(0), mean, atol=0.03 * cov.diagonal().sqrt().max().item() + 0.01)
    emp_cov = torch.cov(z.T)
    assert torch.allclose(emp_cov, cov, rtol=0.1, atol=0.05 * cov.abs().max().item())


def test_chain_yields_every_step_and_energy_descends():
    states = list(langevin(gaussian_energy(0.0, 1.0), torch.ones(8, 3), 10, 0.5, 0.0))
    assert [s.step for s in states] == list(range(11))
    energies = torch.stack([s.energy.mean() for s in states])
    assert (energies[1:] < energies[:-1]).all()  # no noise: gradient descent on a convex bowl
    assert torch.allclose(states[-1].energy, gaussian_energy(0.0, 1.0)(states[-1].x))


def test_data_chain_clamps_observed_modalities_and_stays_in_range(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    x0 = torch.rand(4, 3, 3, 28, 28)
    observed = observed_mask([1], 3)
    for st in data_revision(model.energy, x0, 5, 2.0, 0.3, observed):
        assert torch.equal(st.x[:, 1], x0[:, 1])
        assert st.x.min() >= 0 and st.x.max() <= 1
    assert not torch.equal(st.x[:, 0], x0[:, 0])


def test_divergence_is_reported():
    def nan_energy(x):
        return (x * float("nan")).flatten(1).sum(1)
    with pytest.raises(ChainDiverged, match="data chain diverged at step 0"):
        run(data_revision(nan_energy, torch.rand(2, 1, 3, 28, 28), 5, 0.1, 0.0))

    class Steep:
        def log_posterior(self, z, x, observed=None):
            return -50.0 * (z ** 2).sum(1)
    with pytest.raises(ChainDiverged, match="latent chain"):   # step far beyond 2 / sqrt(100)
        run(latent_revision(Steep(), torch.ones(2, 3), None, 20, 1.0, 0.0))


def test_langevin_uses_no_parameter_gradients(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    run(data_revision(model.energy, torch.rand(2, 3, 3, 28, 28), 3, 1.0, 0.01))
    x = torch.rand(2, 3, 3, 28, 28)
    run(latent_revision(model.generator, torch.zeros(2, 4), x, 3, 0.1, 0.1))
    assert all(p.grad is None for p in model.parameters())


def test_conditional_sampling_stages_and_determinism(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    x = torch.rand(2, 3, 3, 28, 28)
    observed = observed_mask([0], 3)

    def frames(seed):
        return list(conditional_sampling(model, x, observed, generator=torch.Generator().manual_seed(seed)))

    a, b = frames(0), frames(0)
    stages = [(f.stage, f.step) for f in a]
    es = tiny_config.chains.ebm_latent_cond.steps
    assert stages == [("proposal", 0)] + [("latent", k) for k in range(4)] + \
        [("ebm_latent", k) for k in range(es + 1)] + [("data", k) for k in range(4)]
    assert all(torch.equal(f.x, g.x) for f, g in zip(a, b))
    assert all(torch.equal(f.x[:, 0], x[:, 0]) for f in a)     # observed modality shown as given
    assert all(f.log_posterior is not None for f in a if f.stage != "data")
    assert not torch.equal(frames(1)[-1].x, a[-1].x)


def test_unconditional_and_noise_init(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    out = conditional_generate(model, None, None, n=5, generator=torch.Generator().manual_seed(0))
    assert list(out) == ["proposal", "ebm_latent", "data", "final"]   # no latent revision without evidence
    assert out["data"].shape == (5, 3, 3, 28, 28) and torch.equal(out["final"], out["data"])
    frames = list(conditional_sampling(model, None, None, n=2, data_init="noise", every=2, ebm_latent_steps=0))
    assert [f.stage for f in frames] == ["proposal", "data", "data", "data"]  # steps 0, 2, 3 (last)


# ---------------------------------------------------------------- the EBM's revision in latent space

class LinearGenerator(torch.nn.Module):
    """g(z) = A z + b, shaped [B, M, 1, 1, D] like the real generator's [B, M, 3, 28, 28]."""

    def __init__(self, A, b, M, sigma):
        super().__init__()
        self.A, self.b, self.M, self.sigma = A, b, M, sigma

    def forward(self, z):
        return (z @ self.A.T + self.b).view(len(z), self.M, 1, 1, -1)


def _linear_gaussian_case(seed=0, d=2, M=2, D=3, tau=0.7, sigma=0.5):
    g = torch.Generator().manual_seed(seed)
    A, b, c = torch.randn(M * D, d, generator=g), torch.randn(M * D, generator=g), torch.randn(M * D, generator=g)
    G = LinearGenerator(A, b, M, sigma)
    energy = lambda x: ((x.flatten(1) - c) ** 2).sum(1) / (2 * tau ** 2)     # quadratic EBM
    return G, energy, A, b, c, tau, sigma


def _assert_gaussian(z, mean, cov):
    scale = cov.diagonal().sqrt().max().item()
    assert torch.allclose(z.mean(0), mean, atol=0.04 * scale + 0.01), (z.mean(0), mean)
    assert torch.allclose(torch.cov(z.T), cov, rtol=0.1, atol=0.06 * cov.abs().max().item()), (torch.cov(z.T), cov)


@pytest.mark.parametrize("conditioned", [False, True])
def test_ebm_latent_chain_matches_analytic_gaussian(conditioned):
    """Linear generator, quadratic energy: U(z) = ||A_U z + b_U - c_U||^2 / (2 tau^2) + ||z||^2 / 2
    [+ ||A_S z + b_S - x_S||^2 / (2 sigma^2)] is Gaussian with precision
    I + A_U^T A_U / tau^2 [+ A_S^T A_S / sigma^2]; the chain's stationary moments must match it.
    Observed modalities are clamped inside E (their E term is a constant) and enter by their likelihood."""
    from model.langevin import ebm_latent_revision

    G, energy, A, b, c, tau, sigma = _linear_gaussian_case()
    d, D = A.shape[1], A.shape[0] // 2
    n = 5000
    x_obs, observed = None, None
    A_u, b_u, c_u = A, b, c
    precision = torch.eye(d) + A_u.T @ A_u / tau ** 2
    shift = A_u.T @ (c_u - b_u) / tau ** 2
    if conditioned:   # modality 0 observed
        observed = torch.tensor([True, False])
        x_S = torch.randn(D, generator=torch.Generator().manual_seed(5))
        x_obs = torch.cat([x_S, torch.zeros(D)]).view(1, 2, 1, 1, D).expand(n, 2, 1, 1, D)
        A_S, b_S = A[:D], b[:D]
        A_u, b_u, c_u = A[D:], b[D:], c[D:]
        precision = torch.eye(d) + A_u.T @ A_u / tau ** 2 + A_S.T @ A_S / sigma ** 2
        shift = A_u.T @ (c_u - b_u) / tau ** 2 + A_S.T @ (x_S - b_S) / sigma ** 2
    cov = torch.linalg.inv(precision)
    mean = cov @ shift
    step = 0.5 / math.sqrt(torch.linalg.eigvalsh(precision).max().item())
    chain = ebm_latent_revision(G, energy, torch.zeros(n, d), 400, step, step, x_obs, observed,
                                generator=torch.Generator().manual_seed(1))
    _assert_gaussian(run(chain).x, mean, cov)


def test_ebm_latent_chain_uses_the_given_prior():
    """With prior.energy(z) = ||z - m||^2 / 2 instead of N(0, I), the target's mean moves accordingly."""
    from model.langevin import ebm_latent_revision

    G, energy, A, b, c, tau, _ = _linear_gaussian_case(seed=2)
    m = torch.tensor([1.0, -2.0])

    class ShiftedPrior:
        def energy(self, z):
            return 0.5 * ((z - m) ** 2).sum(1)
    precision = torch.eye(2) + A.T @ A / tau ** 2
    cov = torch.linalg.inv(precision)
    mean = cov @ (A.T @ (c - b) / tau ** 2 + m)
    step = 0.5 / math.sqrt(torch.linalg.eigvalsh(precision).max().item())
    z = run(ebm_latent_revision(G, energy, torch.zeros(5000, 2), 400, step, step, prior=ShiftedPrior(),
                                generator=torch.Generator().manual_seed(3))).x
    _assert_gaussian(z, mean, cov)


def test_ebm_latent_stage_clamps_observed_and_is_skipped_at_zero_steps(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    x = torch.rand(3, 3, 3, 28, 28)
    observed = observed_mask([0, 2], 3)
    frames = list(conditional_sampling(model, x, observed, generator=torch.Generator().manual_seed(0),
                                       ebm_latent_cond_steps=5, ebm_latent_cond_step_size=0.5,
                                       ebm_latent_cond_noise=0.5))
    ebm = [f for f in frames if f.stage == "ebm_latent"]
    assert [f.step for f in ebm] == list(range(6))
    assert all(torch.equal(f.x[:, [0, 2]], x[:, [0, 2]]) for f in frames)    # clamped in every frame
    assert not torch.equal(ebm[-1].x[:, 1], ebm[0].x[:, 1])                  # the free modality moved
    assert all(f.log_posterior is not None and f.log_posterior.shape == (3,) for f in ebm)
    assert torch.allclose(ebm[-1].energy, model.energy(ebm[-1].x), atol=1e-5)
    skipped = list(conditional_sampling(model, x, observed, ebm_latent_cond_steps=0))
    assert "ebm_latent" not in {f.stage for f in skipped}
    out = conditional_generate(model, x, observed, ebm_latent_cond_steps=0, data_steps=0)
    assert list(out) == ["proposal", "latent", "final"] and torch.equal(out["final"], out["latent"])


def test_ebm_latent_chain_uses_no_parameter_gradients_and_guards_divergence(tiny_config):
    from model.langevin import ebm_latent_revision

    model = MultimodalEBMVAE(tiny_config)
    x = torch.rand(2, 3, 3, 28, 28)
    run(ebm_latent_revision(model.generator, model.energy, torch.zeros(2, 4), 3, 0.3, 0.3, x, observed_mask([1], 3)))
    run(ebm_latent_revision(model.generator, model.energy, torch.zeros(2, 4), 3, 0.3, 0.3))
    assert all(p.grad is None for p in model.parameters())

    class Steep(torch.nn.Module):
        sigma = 1.0

        def forward(self, z):
            return z.view(len(z), 1, 1, 1, -1)
    with pytest.raises(ChainDiverged, match="ebm_latent chain diverged.*step size too large"):
        run(ebm_latent_revision(Steep(), lambda x: 100.0 * (x ** 2).flatten(1).sum(1), torch.ones(2, 3), 20, 1.0, 0.0))


# ---------------------------------------------------------------- a data chain that runs away (issue 12, defect 5)

def test_runaway_data_chain_is_reported_not_hidden_by_the_clamp():
    """A linear energy with unit gradient: step size 100 moves each pixel by 5,000 per step, far past
    [0, 1], and the clamp alone would hide it. It must stop with 'step size too large'; step size 1
    (moves of 0.5) must not."""
    w = torch.randn(1, 2, 3, 28, 28, generator=torch.Generator().manual_seed(0)).sign()
    linear = lambda x: (x * w).flatten(1).sum(1)
    with pytest.raises(ChainDiverged, match="data chain diverged at step 3 .*step size too large"):
        run(data_revision(linear, torch.rand(2, 2, 3, 28, 28), 30, 100.0, 0.0))
    run(data_revision(linear, torch.rand(2, 2, 3, 28, 28), 30, 1.0, 0.01))
    # clamped modalities do not count: only the free one runs away here, and it is half of the entries
    with pytest.raises(ChainDiverged, match="step size too large"):
        run(data_revision(linear, torch.rand(2, 2, 3, 28, 28), 30, 100.0, 0.0, observed_mask([0], 2)))


def test_shipped_checkpoint_data_step_size_100_is_reported():
    """The demo's case: data step size 100 on the shipped model used to finish 'Done' at 0 % agreement."""
    from pathlib import Path

    ck = Path(__file__).resolve().parents[1] / "checkpoints" / "mebm"
    model = MultimodalEBMVAE.from_pretrained(str(ck)).eval()
    x = torch.rand(2, 5, 3, 28, 28)
    observed = observed_mask([0], 5)
    with pytest.raises(ChainDiverged, match="data chain.*step size too large"):
        conditional_generate(model, x, observed, data_step_size=100.0, ebm_latent_cond_steps=0, latent_steps=2)
    out = conditional_generate(model, x, observed, ebm_latent_cond_steps=0, latent_steps=2)   # default: no alarm
    assert out["final"].shape == x.shape


def test_ebm_latent_chain_takes_the_conditional_step_size_when_something_is_observed(tiny_config):
    """The posterior (likelihood of x_S, sigma = 0.25) is far stiffer than prior x EBM: the conditioned
    chain runs with ebm_latent_cond_step_size / _noise, the unconditioned one with ebm_latent_step_size."""
    from dataclasses import replace

    cfg = replace(tiny_config, chains=tiny_config.chains.replace(
        ebm_latent_steps=3, ebm_latent_cond_step_size=0.0, ebm_latent_cond_noise=0.0, ebm_latent_step_size=0.5,
        ebm_latent_noise=0.5))
    model = MultimodalEBMVAE(cfg)
    x = torch.rand(2, 3, 3, 28, 28)
    cond = [f for f in conditional_sampling(model, x, observed_mask([0], 3), latent_steps=0) if f.stage == "ebm_latent"]
    assert all(torch.equal(f.x, cond[0].x) for f in cond)                  # step size 0: nothing moves
    joint = [f for f in conditional_sampling(model, None, None, n=2) if f.stage == "ebm_latent"]
    assert not torch.equal(joint[-1].x, joint[0].x)


def test_ebm_latent_chain_has_its_own_steps_when_something_is_observed(tiny_config):
    """ebm_latent_cond_steps = 0 skips the EBM latent chain in conditional generation only; prior samples keep
    ebm_latent_steps; an explicit ebm_latent_cond_steps overrides the former."""
    from dataclasses import replace

    model = MultimodalEBMVAE(replace(tiny_config, chains=tiny_config.chains.replace(ebm_latent_steps=4,
                                                                                 ebm_latent_cond_steps=0)))
    x, observed = torch.rand(2, 3, 3, 28, 28), observed_mask([1], 3)
    assert list(conditional_generate(model, x, observed)) == ["proposal", "latent", "data", "final"]
    joint = [f for f in conditional_sampling(model, None, None, n=2) if f.stage == "ebm_latent"]
    assert [f.step for f in joint] == list(range(5))
    cond = [f for f in conditional_sampling(model, x, observed, ebm_latent_cond_steps=2)
            if f.stage == "ebm_latent"]
    assert [f.step for f in cond] == [0, 1, 2]
    model = MultimodalEBMVAE(replace(tiny_config, chains=tiny_config.chains.replace(ebm_latent_steps=0,
                                                                                 ebm_latent_cond_steps=3)))
    assert "ebm_latent" in conditional_generate(model, x, observed)
    assert "ebm_latent" not in conditional_generate(model, None, None, n=2)
