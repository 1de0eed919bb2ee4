"""The ex-post prior: EM recovers a known mixture, its density and samples are right, it round-trips."""
import math

import pytest
import torch

from model.prior import GaussianMixture, StandardNormal, inferred_latents, main, product_of_experts


def _two_blobs(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n // 4, 2, generator=g) * torch.tensor([0.3, 0.1]) + torch.tensor([-2.0, 1.0])
    b = torch.randn(3 * n // 4, 2, generator=g) @ torch.tensor([[0.5, 0.2], [0.0, 0.4]]) + torch.tensor([2.0, -1.0])
    return torch.cat([a, b])


def test_em_recovers_a_known_mixture():
    gmm = GaussianMixture.fit(_two_blobs(), n_components=2, seed=0)
    order = gmm.means[:, 0].argsort()
    w, mu, cov = gmm.weights[order], gmm.means[order], gmm.covariances[order]
    assert torch.allclose(w, torch.tensor([0.25, 0.75], dtype=w.dtype), atol=0.02)
    assert torch.allclose(mu, torch.tensor([[-2.0, 1.0], [2.0, -1.0]], dtype=mu.dtype), atol=0.05)
    assert torch.allclose(cov[0], torch.tensor([[0.09, 0.0], [0.0, 0.01]], dtype=cov.dtype), atol=0.01)
    true_b = torch.tensor([[0.5, 0.2], [0.0, 0.4]]).T @ torch.tensor([[0.5, 0.2], [0.0, 0.4]])
    assert torch.allclose(cov[1], true_b.to(cov.dtype), atol=0.03)


def test_density_samples_and_round_trip(tmp_path):
    w = torch.tensor([0.3, 0.7])
    mu = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    cov = torch.stack([torch.eye(2) * 0.5, torch.tensor([[1.0, 0.3], [0.3, 0.4]])])
    gmm = GaussianMixture(w, mu, cov)
    z = torch.randn(7, 2)
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(w),
                                                torch.distributions.MultivariateNormal(mu, cov))
    assert torch.allclose(gmm.log_prob(z), ref.log_prob(z), atol=1e-5)
    assert torch.allclose(gmm.energy(z), -ref.log_prob(z), atol=1e-5)
    s = gmm.sample(20000, torch.Generator().manual_seed(0))
    assert torch.allclose(s.mean(0), (w[:, None] * mu).sum(0), atol=0.05)
    assert torch.equal(s[:5], gmm.sample(20000, torch.Generator().manual_seed(0))[:5])   # seeded
    gmm.save(tmp_path / "p.safetensors")
    back = GaussianMixture.load(tmp_path / "p.safetensors")
    assert torch.allclose(back.log_prob(z), gmm.log_prob(z), atol=1e-5)
    zz = z.clone().requires_grad_(True)                                   # differentiable for Langevin
    grad = torch.autograd.grad(gmm.energy(zz).sum(), zz)[0]
    assert torch.isfinite(grad).all()
    n = StandardNormal(2)
    assert torch.allclose(n.energy(z), 0.5 * (z ** 2).sum(1)) and n.sample(3).shape == (3, 2)


def test_cli_fits_a_checkpoint_and_errors_are_one_line(tmp_path, mnist_file, tiny_config):
    from model.data import load_polymnist
    from model.networks import MultimodalEBMVAE

    model = MultimodalEBMVAE(tiny_config)
    model.save_pretrained(tmp_path / "ck")
    data = load_polymnist("train", 3, 0, str(mnist_file), tmp_path / "cache")
    z = inferred_latents(model, data, 50, progress=False)
    assert z.shape == (50, tiny_config.latent_dim)
    main(["--checkpoint", str(tmp_path / "ck"), "--mnist", str(mnist_file), "--cache-dir", str(tmp_path / "cache"),
          "--components", "3", "--iters", "20"])
    gmm = GaussianMixture.load(tmp_path / "ck" / "prior.safetensors")
    assert gmm.n_components == 3 and math.isclose(gmm.weights.sum().item(), 1.0, abs_tol=1e-5)
    assert (tmp_path / "ck" / "prior.json").is_file()
    MultimodalEBMVAE.from_pretrained(str(tmp_path / "ck"))          # the extra file does not disturb loading
    with pytest.raises(SystemExit, match="^error: no model checkpoint"):
        main(["--checkpoint", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="^error: .*MNIST file not found"):
        main(["--checkpoint", str(tmp_path / "ck"), "--mnist", str(tmp_path / "no.npz"),
              "--cache-dir", str(tmp_path / "c2")])
    with pytest.raises(SystemExit, match="cannot fit 500 components"):
        main(["--checkpoint", str(tmp_path / "ck"), "--mnist", str(mnist_file), "--cache-dir", str(tmp_path / "cache"),
              "--components", "500"])


def test_product_of_experts_is_the_normalised_product_of_the_gaussians():
    mu = torch.tensor([[[0.0, 1.0], [2.0, 1.0]]])                 # two experts, d = 2
    logvar = torch.log(torch.tensor([[[1.0, 4.0], [3.0, 4.0]]]))
    m, v = product_of_experts(mu, logvar)
    # N(0, 1) N(2, 3) ∝ N(0.5, 0.75); two equal experts halve the variance and keep the mean
    assert torch.allclose(m, torch.tensor([[0.5, 1.0]])) and torch.allclose(v, torch.tensor([[0.75, 2.0]]))
    z = torch.linspace(-3, 3, 7)
    log_prod = -0.5 * (z ** 2 / 1.0 + (z - 2) ** 2 / 3.0)
    log_poe = -0.5 * (z - 0.5) ** 2 / 0.75
    assert torch.allclose(log_prod - log_prod[0], log_poe - log_poe[0], atol=1e-5)


def test_poe_latents_are_the_experts_product(tmp_path, mnist_file, tiny_config):
    from model.data import load_polymnist
    from model.networks import MultimodalEBMVAE

    model = MultimodalEBMVAE(tiny_config).eval()
    data = load_polymnist("train", 3, 0, str(mnist_file), tmp_path / "cache")
    z = torch.cat([inferred_latents(model, data, 40, progress=False, latents="poe", seed=s) for s in range(50)])
    mu, var = product_of_experts(*model.inference.experts_params(data.batch(torch.arange(40))[0])[:2])
    zz = z.view(50, 40, -1)
    assert torch.allclose(zz.mean(0), mu, atol=4 * (var / 50).sqrt().max().item())
    assert torch.allclose(zz.var(0).mean(), var.mean(), rtol=0.25)
    with pytest.raises(ValueError, match="latents must be one of"):
        inferred_latents(model, data, 10, latents="mean")
