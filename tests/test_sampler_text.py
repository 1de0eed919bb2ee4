"""The sampler with the caption modality: an observed caption as token ids, the generated captions per stage."""
from dataclasses import replace

import pytest
import torch

from model import Sampler
from model.captions import CaptionError
from model.config import TextConfig
from model.networks import MultimodalEBMVAE

TEXT = TextConfig(embed_dim=4, hidden=16)


@pytest.fixture
def sampler(tmp_path, tiny_config):
    MultimodalEBMVAE(replace(tiny_config, text=TEXT)).save_pretrained(tmp_path / "captioned")
    return Sampler.from_pretrained(tmp_path / "captioned", device="cpu", ebm_latent_cond_steps=2)


def test_images_from_a_caption_alone_keep_the_caption_at_every_stage(sampler):
    ids = sampler.encode(["A thin seven leaning right.", "the digit 3 leaning left"])
    out = sampler.conditional(None, None, text=ids, generator=torch.Generator().manual_seed(0))
    assert list(out) == ["proposal", "latent", "ebm_latent", "data", "final"]
    assert out["final"].shape == (2, 3, 3, 28, 28)
    for stage in out:
        assert out.captions[stage] == ["a thin seven leaning right", "the digit 3 leaning left"]
    again = sampler.conditional(None, None, text=ids, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again["final"], out["final"])


def test_captions_generated_from_images_are_text_of_the_vocabulary(sampler):
    x = torch.rand(3, 3, 3, 28, 28)
    out = sampler.conditional(x, torch.tensor([True, False, False]), generator=torch.Generator().manual_seed(0))
    assert list(out.captions) == list(out)
    words = set(sampler.config.text.words)
    for texts in out.captions.values():
        assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
        assert all(w in words for t in texts for w in t.replace(",", " ,").split())
    assert torch.equal(out["final"][:, 0], x[:, 0])
    joint = sampler.joint(2, prior="normal")
    assert len(joint.captions["final"]) == 2
    frames = list(sampler.frames(x, torch.tensor([False, True, False, True]), text=sampler.encode(["a 3"] * 3)))
    assert all(sampler.decode(f.text) == ["a 3"] * 3 for f in frames)


def test_bad_captions_and_masks_are_one_line(sampler, tiny_config, tmp_path):
    with pytest.raises(CaptionError) as e:
        sampler.encode(["a purple seven"])
    assert e.value.unknown == ("purple",)
    with pytest.raises(ValueError, match="caption is marked observed"):
        sampler.conditional(torch.rand(1, 3, 3, 28, 28), torch.tensor([True, False, False, True]))
    with pytest.raises(ValueError, match="token ids"):
        sampler.conditional(None, None, text=torch.full((1, 16), 999))
    MultimodalEBMVAE(tiny_config).save_pretrained(tmp_path / "plain")
    plain = Sampler.from_pretrained(tmp_path / "plain", device="cpu")
    assert plain.tokenizer is None
    with pytest.raises(ValueError, match="no caption modality"):
        plain.conditional(torch.rand(1, 3, 3, 28, 28), torch.tensor([True, False, False]), text=torch.zeros(1, 16))
    assert plain.conditional(torch.rand(1, 3, 3, 28, 28), torch.tensor([True, False, False])).captions == {}


def test_the_latent_weight_of_the_caption_is_saved_with_the_model(tmp_path, tiny_config):
    import json

    folder = tmp_path / "tempered"
    MultimodalEBMVAE(replace(tiny_config, text=replace(TEXT, latent_weight=0.25))).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["text"]["latent_weight"] == 0.25
    loaded = Sampler.from_pretrained(folder, device="cpu")
    assert loaded.config.text.latent_weight == 0.25
    loaded.save_pretrained(tmp_path / "copy")
    assert Sampler.from_pretrained(tmp_path / "copy", device="cpu").config.text.latent_weight == 0.25
    config = json.loads((folder / "config.json").read_text())
    del config["text"]["latent_weight"]                   # a model saved before the setting existed
    (folder / "config.json").write_text(json.dumps(config))
    assert Sampler.from_pretrained(folder, device="cpu").config.text.latent_weight == 1.0
