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


def test_pairwise_agreement_is_the_scaled_sum_of_the_pairs_cosines():
    from model.networks import PairwiseAgreement

    A = PairwiseAgreement(n_parts=3, f=4, k=5)
    h = torch.randn(6, 12)
    p = [torch.nn.functional.normalize(A.proj[i](h[:, 4 * i:4 * i + 4]), dim=1) for i in range(3)]
    pairs = (p[0] * p[1]).sum(1) + (p[0] * p[2]).sum(1) + (p[1] * p[2]).sum(1)
    scale = torch.nn.functional.softplus(A.log_scale)
    assert abs(scale.item() - 1.0) < 1e-4                       # the scale starts at 1
    assert torch.allclose(A(h), scale * pairs, atol=1e-5)
    for pr in A.proj:                                           # one map for all parts: equal parts agree fully
        pr.load_state_dict(A.proj[0].state_dict())
    same = torch.randn(6, 4).repeat(1, 3)
    assert torch.allclose(A(same), scale * 3, atol=1e-5)        # 3 pairs, cosine 1 each: the bound
    assert (A(100 * torch.randn(50, 12)).abs() <= scale * 3 + 1e-5).all()   # bounded however large the features


def test_pairwise_head_learns_which_parts_agree():
    """Three parts that each see a tuple's class through their own linear map: the agreement term, trained by the
    mismatch loss (softplus(E(real) - E(mismatched)), E = -agreement), ranks real tuples above mismatched ones."""
    from model.energy_check import auroc
    from model.networks import PairwiseAgreement

    g = torch.Generator().manual_seed(0)
    classes, maps = torch.randn(10, 8, generator=g), torch.randn(3, 8, 8, generator=g)

    def tuples(n, mismatch):
        y = torch.randint(10, (n, 3), generator=g)
        y[:, 1:] = y[:, :1]
        if mismatch:   # part 2 shows another class
            y[:, 2] = (y[:, 0] + torch.randint(1, 10, (n,), generator=g)) % 10
        parts = [classes[y[:, i]] @ maps[i] + 0.3 * torch.randn(n, 8, generator=g) for i in range(3)]
        return torch.cat(parts, 1)

    A = PairwiseAgreement(n_parts=3, f=8, k=8)
    opt = torch.optim.Adam(A.parameters(), 1e-2)
    for _ in range(300):
        loss = torch.nn.functional.softplus(A(tuples(64, True)) - A(tuples(64, False))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert auroc(-A(tuples(500, False)), -A(tuples(500, True))) > 0.95


def test_ebm_head_choice_is_saved_and_checked(tmp_path, tiny_config):
    import dataclasses

    import pytest

    cfg = dataclasses.replace(tiny_config, ebm_head="pairwise")
    model = MultimodalEBMVAE(cfg).eval()
    assert model.energy.agreement is not None and MultimodalEBMVAE(tiny_config).energy.agreement is None
    x = torch.rand(3, 3, 3, 28, 28)
    with torch.no_grad():
        h = torch.cat([t(2 * x[:, m] - 1) for m, t in enumerate(model.energy.trunks)], 1)
        assert torch.allclose(model.energy(x), model.energy.head(h)[:, 0] - model.energy.agreement(h), atol=1e-6)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = MultimodalEBMVAE.from_pretrained(tmp_path / "ckpt", strict=True).eval()
    assert loaded.config.ebm_head == "pairwise" and torch.equal(model.energy(x), loaded.energy(x))
    with pytest.raises(ValueError, match="ebm_head"):
        ModelConfig(ebm_head="sum")
