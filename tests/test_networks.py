"""The three models: MoE density and sampling, the coupled energy, the Gaussian likelihood, save/load."""
import math

import torch

from model.config import ModelConfig
from model.networks import MultimodalEBMVAE, observed_mask


def test_moe_log_prob_is_the_mixture_of_observed_experts(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    x, z = torch.rand(5, 3, 3, 28, 28), torch.randn(5, 4)
    S = observed_mask([0, 2], 3)
    experts = model.inference.expert_log_probs(z, x, S)
    assert experts.shape == (5, 2)
    assert torch.allclose(model.inference.log_prob(z, x, S), torch.logsumexp(experts, 1) - math.log(2))
    single = model.inference.log_prob(z, x, observed_mask([2], 3))
    assert torch.allclose(single, experts[:, 1])


def test_moe_density_integrates_to_one_and_matches_its_samples():
    cfg = ModelConfig(n_modalities=3, latent_dim=1, width=8, ebm_width=8, ebm_features=8)
    model = MultimodalEBMVAE(cfg)
    x = torch.rand(1, 3, 3, 28, 28)
    S = observed_mask([0, 1, 2], 3)
    mu, logvar, _ = model.inference.experts_params(x, S)
    lo = (mu - 8 * (0.5 * logvar).exp()).min().item()
    hi = (mu + 8 * (0.5 * logvar).exp()).max().item()
    grid = torch.linspace(lo, hi, 20001)[:, None]
    with torch.no_grad():
        density = model.inference.log_prob(grid, x.expand(len(grid), -1, -1, -1, -1), S).exp()
    assert abs(torch.trapezoid(density, grid[:, 0]).item() - 1) < 1e-3
    mixture_mean = mu.mean().item()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = model.inference.sample(x.expand(20000, -1, -1, -1, -1), S, generator=g)
    spread = (logvar.exp() + mu ** 2).mean().item() - mixture_mean ** 2
    assert abs(z.mean().item() - mixture_mean) < 4 * math.sqrt(spread / 20000) + 1e-4
    assert abs(z.var().item() / spread - 1) < 0.05


def test_gaussian_likelihood_matches_torch_distributions(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    x, z1, z2 = torch.rand(3, 3, 3, 28, 28), torch.randn(3, 4), torch.randn(3, 4)
    S = observed_mask([1, 2], 3)

    def exact(z):
        mean = model.generator(z)[:, 1:]
        return torch.distributions.Normal(mean, tiny_config.sigma).log_prob(x[:, 1:]).flatten(1).sum(1)
    ours = model.generator.log_likelihood(x, z1, S) - model.generator.log_likelihood(x, z2, S)
    assert torch.allclose(ours, exact(z1) - exact(z2), rtol=1e-4, atol=1e-2)


def test_energy_is_one_scalar_per_sample_and_couples_modalities(tiny_config):
    model = MultimodalEBMVAE(tiny_config)
    a, b = torch.rand(4, 3, 3, 28, 28), torch.rand(4, 3, 3, 28, 28)
    E = model.energy
    assert E(a).shape == (4,)
    ab, ba = a.clone(), b.clone()   # modality 1 swapped between the two tuples
    ab[:, 1], ba[:, 1] = b[:, 1], a[:, 1]
    interaction = E(a) + E(b) - E(ab) - E(ba)   # zero for a sum of per-modality energies
    assert interaction.abs().max() > 1e-6


def test_save_load_round_trip_gives_identical_outputs(tmp_path, tiny_config):
    model = MultimodalEBMVAE(tiny_config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").exists() and (tmp_path / "ckpt" / "config.json").exists()
    loaded = MultimodalEBMVAE.from_pretrained(tmp_path / "ckpt", strict=True).eval()
    assert loaded.config == tiny_config
    x, z = torch.rand(2, 3, 3, 28, 28), torch.randn(2, 4)
    assert torch.equal(model.generator(z), loaded.generator(z))
    assert torch.equal(model.energy(x), loaded.energy(x))
    assert torch.equal(model.inference.log_prob(z, x), loaded.inference.log_prob(z, x))
