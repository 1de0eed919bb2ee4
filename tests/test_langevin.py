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
    assert stages == [("proposal", 0)] + [("latent", k) for k in range(4)] + [("data", k) for k in range(4)]
    assert all(torch.equal(f.x, g.x) for f, g in zip(a, b))
    assert all(torch.equal(f.x[:, 0], x[:, 0]) for f in a)     # observed modality shown as given
    assert all(f.log_posterior is not None for f in a if f.stage != "data")
    assert not torch.equal(frames(1)[-1].x, a[-1].x)


def test_unconditional_and_noise_init(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    out = conditional_generate(model, None, None, n=5, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"proposal", "latent", "data"} and out["data"].shape == (5, 3, 3, 28, 28)
    frames = list(conditional_sampling(model, None, None, n=2, data_init="noise", every=2))
    assert [f.stage for f in frames] == ["proposal", "data", "data", "data"]  # steps 0, 2, 3 (last)
