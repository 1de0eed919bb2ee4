"""The chains with the caption modality: the latent revision with the caption's likelihood, the data revision over
the images and the caption's logits (revised, or clamped when observed), the EBM latent chain reading the caption,
and the conditional pipeline from a caption alone."""
from dataclasses import replace

import pytest
import torch

from model.captions import Tokenizer
from model.config import TextConfig
from model.langevin import (conditional_generate, conditional_sampling, data_revision, ebm_latent_energy,
                            ebm_latent_revision, latent_revision, posterior_energy, run)
from model.networks import MultimodalEBMVAE, text_one_hot, text_relaxation

TEXT = TextConfig(embed_dim=4, hidden=16)
V, L = TEXT.vocab_size, TEXT.max_len


@pytest.fixture
def model(tiny_config):
    m = MultimodalEBMVAE(replace(tiny_config, text=TEXT)).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def captions(n=4):
    words = ["a bold 3", "three, thin and upright", "the digit 3 leaning left", "an 8 with a thin stroke"]
    return text_one_hot(torch.tensor(Tokenizer().encode_batch([words[i % 4] for i in range(n)])), V)


def mask(*flags):
    return torch.tensor(flags, dtype=torch.bool)


def test_an_observed_caption_never_moves_in_the_data_revision(model):
    x0, t = torch.rand(4, 3, 3, 28, 28), captions()
    observed = mask(True, False, False, True)
    states = list(data_revision(model.energy, x0, 5, 1.0, 0.05, observed, text=t, text_step_size=5.0, text_noise=1.0,
                                generator=torch.Generator().manual_seed(0)))
    assert len(states) == 6
    for st in states:
        assert torch.equal(st.text, t)                       # the observed caption, exactly, at every step
        assert torch.equal(st.x[:, 0], x0[:, 0])              # the observed image too
        assert torch.allclose(st.energy, model.energy(st.x, t))
    assert not torch.equal(states[-1].x[:, 1:], x0[:, 1:])    # the other images moved


def test_a_revised_caption_moves_and_stays_a_valid_relaxation(model):
    x0, logits0 = torch.rand(4, 3, 3, 28, 28), 3 * torch.randn(4, L, V)
    observed = mask(True, False, False, False)
    states = list(data_revision(model.energy, x0, 5, 1.0, 0.01, observed, text=logits0, text_step_size=3.0,
                                text_noise=0.5, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(states[0].text, text_relaxation(logits0))
    for st in states:
        assert st.text.shape == (4, L, V) and (st.text >= 0).all()
        assert torch.allclose(st.text.sum(-1), torch.ones(4, L), atol=1e-5)   # softmax rows sum to one
        assert torch.allclose(st.energy, model.energy(st.x, st.text), atol=1e-5)
        assert st.x.min() >= 0 and st.x.max() <= 1 and torch.equal(st.x[:, 0], x0[:, 0])
    assert (states[-1].text - states[0].text).abs().max() > 1e-3


def test_images_and_caption_take_their_own_step_sizes(model):
    x0, logits0 = torch.rand(2, 3, 3, 28, 28), torch.randn(2, L, V)
    still_text = run(data_revision(model.energy, x0, 3, 1.0, 0.01, None, text=logits0, text_step_size=0.0,
                                   text_noise=0.0))
    assert torch.equal(still_text.text, text_relaxation(logits0)) and not torch.equal(still_text.x, x0)
    still_images = run(data_revision(model.energy, x0, 3, 0.0, 0.0, None, text=logits0, text_step_size=3.0,
                                     text_noise=0.1))
    assert torch.equal(still_images.x, x0) and not torch.equal(still_images.text, text_relaxation(logits0))


def test_the_latent_revision_reads_the_caption_likelihood(model):
    G = model.generator
    x, t = torch.rand(4, 3, 3, 28, 28), captions()
    z0 = torch.randn(4, 4)
    caption_only = mask(False, False, False, True)
    U = posterior_energy(G, x, caption_only, t)
    assert torch.allclose(U(z0), 0.5 * (z0 ** 2).sum(1) - G.text_log_likelihood(t, z0))
    states = list(latent_revision(G, z0, x, 30, 0.1, 0.0, caption_only, text=t))
    assert torch.allclose(states[-1].energy, U(states[-1].x))
    assert (states[-1].energy < states[0].energy).all()     # no noise: descent on -log p(z | t)
    # the images' likelihood joins when they are observed too
    both = mask(True, False, False, True)
    gain = posterior_energy(G, x, both, t)(z0) - U(z0)
    assert torch.allclose(gain, -G.log_likelihood(x, z0, mask(True, False, False)), rtol=1e-5)


def test_the_ebm_latent_chain_reads_the_generated_or_the_observed_caption(model):
    G, E = model.generator, model.energy
    z = torch.randn(4, 4)
    free = ebm_latent_energy(G, E, None, None)
    assert torch.allclose(free(z), E(G(z), text_relaxation(G.text_logits(z))) + 0.5 * (z ** 2).sum(1))
    t, x = captions(), torch.rand(4, 3, 3, 28, 28)
    clamped = ebm_latent_energy(G, E, x, mask(False, False, False, True), text=t)
    assert torch.allclose(clamped(z), E(G(z), t) + 0.5 * (z ** 2).sum(1) - G.text_log_likelihood(t, z), atol=1e-4)
    states = list(ebm_latent_revision(G, E, z, 4, 0.1, 0.1, x, mask(False, False, False, True), text=t,
                                      generator=torch.Generator().manual_seed(0)))
    assert len(states) == 5 and torch.allclose(states[-1].energy, clamped(states[-1].x), atol=1e-4)
    assert all(p.grad is None for p in model.parameters())


def test_generation_from_a_caption_alone_keeps_it_clamped_through_every_stage(model):
    t = captions(3)
    observed = mask(False, False, False, True)

    def frames(seed):
        return list(conditional_sampling(model, None, observed, text=t, generator=torch.Generator().manual_seed(seed),
                                         ebm_latent_cond_steps=2))
    got = frames(0)
    assert [f.stage for f in got if f.step == 0] == ["proposal", "latent", "ebm_latent", "data"]
    for f in got:
        assert f.x.shape == (3, 3, 3, 28, 28) and torch.equal(f.text, t)
        assert torch.allclose(f.energy, model.energy(f.x, f.text), atol=1e-4)
    again = frames(0)
    assert all(torch.equal(a.x, b.x) for a, b in zip(got, again))
    with pytest.raises(ValueError, match="caption is observed"):
        next(conditional_sampling(model, None, observed))


def test_a_generated_caption_is_revised_with_the_images(model):
    x = torch.rand(2, 3, 3, 28, 28)
    out = conditional_generate(model, x, mask(True, True, False, False), generator=torch.Generator().manual_seed(0))
    assert list(out) == ["proposal", "latent", "ebm_latent", "data", "final"] and list(out.text) == list(out)
    for t in out.text.values():
        assert t.shape == (2, L, V) and torch.allclose(t.sum(-1), torch.ones(2, L), atol=1e-5)
    assert not torch.equal(out.text["data"], out.text["ebm_latent"])   # the data stage moved the caption
    joint = conditional_generate(model, None, None, n=3, generator=torch.Generator().manual_seed(0))
    assert joint["final"].shape == (3, 3, 3, 28, 28) and joint.text["final"].shape == (3, L, V)
    image_only = MultimodalEBMVAE(replace(model.config, text=None)).eval()
    assert conditional_generate(image_only, x, mask(True, False, False)).text == {}


def test_the_caption_likelihood_weight_tempers_the_latent_revision(model):
    G = model.generator
    x, t, z = torch.rand(4, 3, 3, 28, 28), captions(), torch.randn(4, 4)
    other = captions(5)[1:]                                  # other captions for the same tuples
    caption_only, both = mask(False, False, False, True), mask(True, False, False, True)
    prior = 0.5 * (z ** 2).sum(1)
    assert torch.equal(posterior_energy(G, x, caption_only, t, 1.0)(z), posterior_energy(G, x, caption_only, t)(z))
    assert torch.allclose(posterior_energy(G, x, caption_only, t, 0.5)(z), prior - 0.5 * G.text_log_likelihood(t, z))
    ignored = posterior_energy(G, x, caption_only, t, 0.0)
    assert torch.allclose(ignored(z), prior) and torch.equal(ignored(z), posterior_energy(G, x, caption_only, other,
                                                                                          0.0)(z))
    assert torch.allclose(posterior_energy(G, x, both, t, 0.0)(z), posterior_energy(G, x, both[:3])(z))
    # the conditional chains read the weight from the model's TextConfig; without the caption observed it is unused
    observed = mask(False, False, False, True)

    def latent_z(weight, observed=observed, text=t):
        m = MultimodalEBMVAE(replace(model.config, text=replace(TEXT, latent_weight=weight)))
        m.load_state_dict(model.state_dict())
        frames = conditional_sampling(m.eval(), x if text is None else None, observed, text=text,
                                      generator=torch.Generator().manual_seed(0), latent_steps=5, latent_step_size=0.5,
                                      latent_noise=0.0, data_steps=0)
        return [f.z for f in frames if f.stage in ("proposal", "latent")]
    z0, *_, z_prior = latent_z(0.0)
    assert torch.allclose(z_prior, z0 * (1 - 0.5 ** 2 / 2) ** 5, atol=1e-6)  # the prior's pull alone
    assert not torch.allclose(latent_z(1.0)[-1], z_prior, atol=1e-3)
    images = mask(True, True, False, False)
    assert all(torch.equal(a, b) for a, b in zip(latent_z(0.0, images, None), latent_z(1.0, images, None)))
