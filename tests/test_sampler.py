"""model.Sampler: the weights, the ex-post prior and the chain settings loaded together; the nested chain
settings read from the old flat config.json keys and give the same samples."""
import json
from dataclasses import replace

import pytest
import torch

from model import Chain, Chains, ModelConfig, MultimodalEBMVAE, Sampler, observed_mask
from model.config import KNOBS
from model.hub import CheckpointUnavailable
from model.langevin import STAGES, Frame, conditional_generate
from model.paths import REPO_ROOT
from model.prior import PRIOR_FILE, GaussianMixture

SHIPPED = REPO_ROOT / "checkpoints" / "mebm"
TINY = dict(n_modalities=3, latent_dim=4, width=8, ebm_width=8, ebm_features=16)
FLAT = dict(latent_steps=3, latent_step_size=0.05, latent_noise=0.02, ebm_latent_steps=2, ebm_latent_step_size=0.2,
            ebm_latent_noise=0.1, ebm_latent_cond_steps=2, ebm_latent_cond_step_size=0.04,
            ebm_latent_cond_noise=0.03, data_steps=3, data_step_size=0.9, data_noise=0.02)


def far_prior(dim=4):
    return GaussianMixture(torch.ones(1), torch.full((1, dim), 3.0), torch.eye(dim)[None] * 0.01)


@pytest.fixture
def flat_folder(tmp_path):
    """A checkpoint folder whose config.json has the old flat chain keys (as the shipped one), with a prior."""
    torch.manual_seed(0)
    model = MultimodalEBMVAE(ModelConfig(**TINY))
    model.save_pretrained(tmp_path / "flat")
    (tmp_path / "flat" / "config.json").write_text(json.dumps({**TINY, **FLAT, "sigma": 0.25}))
    far_prior().save(tmp_path / "flat" / PRIOR_FILE)
    return tmp_path / "flat"


def test_the_shipped_config_gives_the_sampler_its_chains():
    saved = json.loads((SHIPPED / "config.json").read_text())   # the nested layout (the flat one: next test)
    chains = Sampler.from_pretrained(SHIPPED, device="cpu").chains
    for name in ("latent", "ebm_latent", "ebm_latent_cond", "data"):
        assert getattr(chains, name) == Chain(*(saved["chains"][name][k] for k in KNOBS)), name
    assert chains.ebm_latent_cond.steps == 0 and chains.data.steps == 30     # the shipped choices


def test_flat_and_nested_config_json_give_byte_identical_samples(flat_folder, tmp_path):
    old = Sampler.from_pretrained(flat_folder, device="cpu")
    assert old.chains.flat() == FLAT and old.prior is not None
    old.save_pretrained(tmp_path / "nested")
    saved = json.loads((tmp_path / "nested" / "config.json").read_text())
    assert saved["chains"]["latent"] == {"steps": 3, "step_size": 0.05, "noise": 0.02} and "latent_steps" not in saved
    new = Sampler.from_pretrained(tmp_path / "nested", device="cpu")
    assert new.chains == old.chains and new.config == old.config and new.prior is not None
    x = torch.rand(4, 3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    observed = observed_mask([1], 3)
    for a, b in ((old, new), (old, old)):
        ca = a.conditional(x, observed, generator=torch.Generator().manual_seed(5))
        cb = b.conditional(x, observed, generator=torch.Generator().manual_seed(5))
        assert list(ca) == ["proposal", "latent", "ebm_latent", "data", "final"]
        assert all(torch.equal(ca[k], cb[k]) for k in ca)
        ja = a.joint(3, generator=torch.Generator().manual_seed(6))
        jb = b.joint(3, generator=torch.Generator().manual_seed(6))
        assert all(torch.equal(ja[k], jb[k]) for k in ja)
    # the sampler runs the library's chain with the config's settings
    lib = conditional_generate(old.model, x, observed, generator=torch.Generator().manual_seed(5))
    assert torch.equal(lib["final"], old.conditional(x, observed, generator=torch.Generator().manual_seed(5))["final"])


def test_the_ex_post_prior_comes_along_and_can_be_turned_off(flat_folder):
    sampler = Sampler.from_pretrained(str(flat_folder), device="cpu", ebm_latent_steps=0, data_steps=0)
    ex_post = sampler.joint(200, generator=torch.Generator().manual_seed(0))["proposal"]
    normal = sampler.joint(200, prior="normal", generator=torch.Generator().manual_seed(0))["proposal"]
    assert not torch.equal(ex_post, normal)
    z = sampler.prior.sample(200, torch.Generator().manual_seed(0))
    assert torch.allclose(ex_post, sampler.model.generator(z), atol=1e-5)   # z drawn from the ex-post prior
    with pytest.raises(ValueError, match="prior must be one of"):
        sampler.joint(2, prior="uniform")


def test_overrides_frames_and_copies(flat_folder):
    sampler = Sampler.from_pretrained(flat_folder, device="cpu")
    x, observed = torch.rand(2, 3, 3, 28, 28), observed_mask([0], 3)
    assert "data" not in sampler.conditional(x, observed, data_steps=0)
    assert sampler.stages(conditioned=True) == ("proposal", "latent", "ebm_latent", "data")
    assert sampler.stages(conditioned=False) == ("proposal", "ebm_latent", "data")
    quiet = sampler.with_chains(ebm_latent_cond_steps=0)
    assert quiet.model is sampler.model and quiet.chains.ebm_latent_cond.steps == 0
    assert sampler.chains.ebm_latent_cond.steps == 2                          # the original is unchanged
    frames = list(sampler.frames(x, observed, generator=torch.Generator().manual_seed(0)))
    assert all(isinstance(f, Frame) for f in frames)
    order = list(dict.fromkeys(f.stage for f in frames))
    assert order == [s for s in STAGES if s in order] and frames[-1].step == 3
    with pytest.raises(TypeError, match="unknown chain setting"):
        sampler.conditional(x, observed, data_stepz=1)


def test_a_vae_checkpoint_has_no_ebm_stages(flat_folder):
    vae = Sampler.from_pretrained(flat_folder, device="cpu", variant="vae")
    assert not vae.has_ebm and vae.stages(True) == ("proposal", "latent") and vae.stages(False) == ("proposal",)
    assert list(vae.joint(2)) == ["proposal", "final"]


def test_loaded_from_any_folder_and_missing_ones_are_clear(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                               # not the repository
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Sampler.from_pretrained("checkpoints/mebm", device="cpu").prior is not None
    assert Sampler.from_pretrained(device="cpu").config.n_modalities == 5   # None: the bundled checkpoint
    with pytest.raises(FileNotFoundError, match="no model checkpoint"):
        Sampler.from_pretrained("no/such/folder", device="cpu")
    with pytest.raises(CheckpointUnavailable):
        Sampler.from_pretrained("nobody/nothing", device="cpu")             # a Hub id: offline, not cached
    with pytest.raises(FileNotFoundError, match="ex-post prior file not found"):
        Sampler.from_pretrained("checkpoints/mebm", device="cpu", prior_file="nope.safetensors")


def test_chains_read_both_forms_and_reject_unknown_knobs():
    c = Chains()
    assert Chains.from_flat(c.flat()) == c and Chains.from_dict({"data": {"steps": 4}}).data == replace(c.data, steps=4)
    assert ModelConfig.from_dict({"latent_steps": 5, "chains": {"latent": {"steps": 9}}}).chains.latent.steps == 5
    assert ModelConfig.from_dict({"width": 8, "unknown": 1}).width == 8
    with pytest.raises(TypeError, match="unknown chain setting"):
        c.replace(latent_step=3)
    assert c.replace(data_steps=None) == c and c.data.temperature == pytest.approx((0.01 / 1.0) ** 2)
