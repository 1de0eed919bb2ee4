"""The caption modality in the three networks (ModelConfig.text): off by default with exactly the image-only
networks of the shipped checkpoint; on, a text decoder (logits per position), a text expert in the mixture, a
text trunk in the joint energy, all reading soft one-hot captions."""
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from model.captions import VOCABULARY, Tokenizer
from model.config import ModelConfig, TextConfig, TrainConfig
from model.networks import ConvReader, MultimodalEBMVAE, _text_trunk, observed_mask, text_one_hot, text_relaxation

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "mebm"
TEXT = TextConfig(embed_dim=4, hidden=16)


@pytest.fixture
def text_config(tiny_config):
    return replace(tiny_config, text=TEXT)


def captions(n=4, seed=0):
    tok = Tokenizer()
    words = ["a bold 3", "three, thin and upright", "the digit 3 leaning left", "an 8 with a thin stroke"]
    ids = torch.tensor(tok.encode_batch([words[(seed + i) % 4] for i in range(n)]))
    return text_one_hot(ids, len(VOCABULARY))


def test_the_default_config_builds_exactly_the_shipped_networks():
    cfg = ModelConfig.from_dict(json.loads((SHIPPED / "config.json").read_text()))
    assert cfg.text is None and ModelConfig().text is None and cfg.modality_kinds == ("image",) * 5
    model = MultimodalEBMVAE(cfg)
    with safe_open(str(SHIPPED / "model.safetensors"), "pt") as f:
        shipped = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shipped
    loaded = MultimodalEBMVAE.from_pretrained(str(SHIPPED), strict=True)
    assert loaded.config.text is None


def test_the_caption_modality_adds_its_parts_and_widens_only_the_energy_head(tiny_config, text_config):
    plain = {k: v.shape for k, v in MultimodalEBMVAE(tiny_config).state_dict().items()}
    text = {k: v.shape for k, v in MultimodalEBMVAE(text_config).state_dict().items()}
    added = set(text) - set(plain)
    assert not set(plain) - set(text)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in added} == {
        "generator.text_decoder", "inference.text_expert", "energy.text_trunk"}
    changed = [k for k in plain if plain[k] != text[k]]
    assert changed == ["energy.head.0.weight"]
    f = tiny_config.ebm_features
    assert text["energy.head.0.weight"] == (2 * f, (tiny_config.n_modalities + 1) * f)
    assert text_config.modality_kinds == ("image", "image", "image", "text")


def test_the_text_decoder_gives_logits_per_position_and_a_categorical_likelihood(text_config):
    G = MultimodalEBMVAE(text_config).generator
    z, t = torch.randn(4, 4), captions()
    logits = G.text_logits(z)
    assert logits.shape == (4, TEXT.max_len, len(VOCABULARY))
    exact = torch.distributions.Categorical(logits=logits).log_prob(t.argmax(-1)).sum(1)
    assert torch.allclose(G.text_log_likelihood(t, z), exact, atol=1e-5)
    x = torch.rand(4, 3, 3, 28, 28)
    S_text = observed_mask([3], 4)
    assert torch.allclose(G.log_likelihood(x, z, S_text, t), exact, atol=1e-5)            # the caption alone
    both = G.log_likelihood(x, z, observed_mask([0, 3], 4), t)
    assert torch.allclose(both, G.log_likelihood(x, z, observed_mask([0], 3)) + exact, atol=1e-3)
    assert torch.equal(G.log_likelihood(x, z, observed_mask([0], 4), t), G.log_likelihood(x, z, observed_mask([0], 3)))
    assert torch.allclose(G.log_posterior(z, x, S_text, t), exact - 0.5 * (z ** 2).sum(1), atol=1e-5)


def test_the_text_expert_joins_the_mixture_of_observed_experts(text_config):
    I = MultimodalEBMVAE(text_config).inference
    x, z, t = torch.rand(5, 3, 3, 28, 28), torch.randn(5, 4), captions(5)
    S = observed_mask([0, 3], 4)
    mu, logvar, mods = I.experts_params(x, S, t)
    assert mu.shape == (5, 2, 4) and mods == [0, 3]
    experts = I.expert_log_probs(z, x, S, t)
    assert torch.allclose(I.log_prob(z, x, S, t), torch.logsumexp(experts, 1) - math.log(2))
    alone = I.log_prob(z, x, observed_mask([3], 4), t)
    assert torch.allclose(alone, experts[:, 1])                    # caption -> latent with no image at all
    assert I.sample(x, observed_mask([3], 4), text=t).shape == (5, 4)
    assert torch.equal(I.log_prob(z, x, observed_mask([0], 4), t), I.log_prob(z, x, observed_mask([0], 3)))
    assert I.experts_params(x, None, t)[0].shape[1] == 4          # all: the images and the caption


def test_the_energy_couples_the_caption_with_the_images(text_config):
    E = MultimodalEBMVAE(text_config).energy
    x, t = torch.rand(4, 3, 3, 28, 28), captions(4)
    assert E(x, t).shape == (4,)
    x2, t2 = torch.rand(4, 3, 3, 28, 28), captions(4, seed=1)
    interaction = E(x, t) + E(x2, t2) - E(x, t2) - E(x2, t)     # zero for a sum of an image and a caption energy
    assert interaction.abs().max() > 1e-6
    with pytest.raises(ValueError, match="reads a caption"):
        E(x)
    with pytest.raises(ValueError, match="no caption modality"):
        MultimodalEBMVAE(replace(text_config, text=None)).energy(x, t)


def test_the_relaxation_stays_on_the_simplex_and_carries_the_energy_gradient(text_config):
    E = MultimodalEBMVAE(text_config).energy
    logits = (50 * torch.randn(3, TEXT.max_len, len(VOCABULARY))).requires_grad_()
    p = text_relaxation(logits)
    assert (p >= 0).all() and torch.allclose(p.sum(-1), torch.ones(3, TEXT.max_len))
    (grad,) = torch.autograd.grad(E(torch.rand(3, 3, 3, 28, 28), text_relaxation(logits)).sum(), logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    ids = torch.tensor(Tokenizer().encode_batch(["a bold 3"]))
    one_hot = text_one_hot(ids, len(VOCABULARY))
    assert torch.equal(one_hot.argmax(-1), ids) and torch.equal(one_hot.sum(-1), torch.ones(1, TEXT.max_len))
    assert Tokenizer().decode(text_relaxation(one_hot * 30).argmax(-1)[0]) == "a bold 3"


def test_save_load_round_trip_keeps_the_caption_modality(tmp_path, text_config):
    model = MultimodalEBMVAE(text_config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["text"]["words"] == list(VOCABULARY)
    loaded = MultimodalEBMVAE.from_pretrained(tmp_path / "ckpt", strict=True).eval()
    assert loaded.config == text_config
    x, z, t = torch.rand(2, 3, 3, 28, 28), torch.randn(2, 4), captions(2)
    assert torch.equal(model.generator.text_logits(z), loaded.generator.text_logits(z))
    assert torch.equal(model.energy(x, t), loaded.energy(x, t))
    assert torch.equal(model.inference.log_prob(z, x, None, t), loaded.inference.log_prob(z, x, None, t))


def test_an_image_only_config_json_reads_with_the_caption_off(tmp_path, tiny_config):
    MultimodalEBMVAE(tiny_config).save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved.get("text") is None
    saved.pop("text", None)                                        # a config.json written before the caption
    assert ModelConfig.from_dict(saved) == tiny_config


def test_a_training_config_keeps_the_caption_modality(tmp_path, text_config):
    TrainConfig(model=text_config).to_json(tmp_path / "train_config.json")
    assert TrainConfig.from_json(tmp_path / "train_config.json").model == text_config


# ---------------------------------------------------------------- the position-free reader (TextConfig.reader)

CONV = replace(TEXT, reader="conv")
CAPTIONED = SHIPPED.parent / "mebm_captions"


def shifted(ids: torch.Tensor, k: int) -> torch.Tensor:
    """The caption's words moved k positions right, the pads moved to the front."""
    return torch.cat([ids[:, -k:], ids[:, :-k]], 1) if k else ids


def test_the_conv_reader_reads_the_same_words_alike_wherever_they_stand():
    torch.manual_seed(0)
    ids = torch.tensor(Tokenizer().encode_batch(["a bold 3", "bold and leaning right, a three"]))
    sn = torch.nn.utils.parametrizations.spectral_norm
    for reader in (_text_trunk(CONV, 8), _text_trunk(replace(CONV, hidden=64), 8, sn).eval()):
        base = reader(text_one_hot(ids, len(VOCABULARY)))
        for k in (1, 3, 6):
            assert torch.allclose(reader(text_one_hot(shifted(ids, k), len(VOCABULARY))), base, atol=1e-6)
        # the order of the words still counts: "leaning right" read as a pair, not a bag of words
        swapped = torch.tensor(Tokenizer().encode_batch(["3 bold a", "bold and right leaning, a three"]))
        assert (reader(text_one_hot(swapped, len(VOCABULARY))) - base).abs().amax(1).min() > 1e-4
    positions = _text_trunk(TEXT, 8)
    moved = positions(text_one_hot(shifted(ids, 3), len(VOCABULARY)))
    assert not torch.allclose(moved, positions(text_one_hot(ids, len(VOCABULARY))), atol=1e-4)


def test_the_conv_reader_passes_the_gradient_to_every_soft_position(tiny_config):
    torch.manual_seed(0)   # max-pooling routes each channel's gradient to its winning words: 64 channels reach all
    model = MultimodalEBMVAE(replace(tiny_config, text=replace(CONV, hidden=64)))
    logits = torch.randn(3, CONV.max_len, len(VOCABULARY), requires_grad=True)
    (grad,) = torch.autograd.grad(model.energy(torch.rand(3, 3, 3, 28, 28), text_relaxation(logits)).sum(), logits)
    assert torch.isfinite(grad).all() and (grad.abs().sum((0, 2)) > 0).all()    # pads' probabilities included
    t = text_relaxation(logits.detach()).requires_grad_()
    (g,) = torch.autograd.grad(model.inference.experts_params(torch.rand(3, 3, 3, 28, 28), observed_mask([3], 4),
                                                              t)[0].sum(), t)
    assert g[..., 0].abs().sum() > 0 and g[..., 1:].abs().sum() > 0              # the pad mask is soft


def test_the_conv_reader_is_saved_and_loaded_with_the_model(tmp_path, tiny_config):
    cfg = replace(tiny_config, text=CONV)
    model = MultimodalEBMVAE(cfg).eval()
    assert isinstance(model.inference.text_expert, ConvReader) and isinstance(model.energy.text_trunk[0], ConvReader)
    model.save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["text"]["reader"] == "conv"
    loaded = MultimodalEBMVAE.from_pretrained(tmp_path / "ckpt", strict=True).eval()
    assert loaded.config == cfg
    x, z, t = torch.rand(2, 3, 3, 28, 28), torch.randn(2, 4), captions(2)
    assert torch.equal(model.energy(x, t), loaded.energy(x, t))
    assert torch.equal(model.inference.log_prob(z, x, None, t), loaded.inference.log_prob(z, x, None, t))
    TrainConfig(model=cfg).to_json(tmp_path / "train_config.json")
    assert TrainConfig.from_json(tmp_path / "train_config.json").model.text.reader == "conv"
    with pytest.raises(ValueError, match="text reader 'bag'"):
        TextConfig(reader="bag")


def test_a_config_json_without_a_reader_reads_by_positions_as_before(tmp_path, text_config):
    model = MultimodalEBMVAE(text_config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    saved = json.loads(path.read_text())
    assert saved["text"].pop("reader") == "positions"
    path.write_text(json.dumps(saved))                         # a config.json written before the reader existed
    loaded = MultimodalEBMVAE.from_pretrained(tmp_path / "ckpt", strict=True).eval()   # every weight, nothing else
    assert loaded.config.text.reader == "positions" and isinstance(loaded.inference.text_expert, torch.nn.Sequential)
    x, z, t = torch.rand(2, 3, 3, 28, 28), torch.randn(2, 4), captions(2)
    assert torch.equal(model.energy(x, t), loaded.energy(x, t))
    assert torch.equal(model.inference.log_prob(z, x, None, t), loaded.inference.log_prob(z, x, None, t))


def test_the_bundled_model_with_captions_loads_with_its_reader():
    saved = json.loads((CAPTIONED / "config.json").read_text())
    model = MultimodalEBMVAE.from_pretrained(str(CAPTIONED), strict=True)
    assert model.config.text.reader == saved["text"].get("reader", "positions")
    assert isinstance(model.inference.text_expert, ConvReader) == (model.config.text.reader == "conv")


def test_the_training_flag_sets_the_reader(tmp_path):
    from model.train import ConfigFileError, parse_args

    cfg, _ = parse_args(["--captions", "--text-reader", "conv", "--out", str(tmp_path)])
    assert cfg.model.text.reader == "conv"
    assert parse_args(["--captions", "--out", str(tmp_path)])[0].model.text.reader == "positions"
    with pytest.raises(ConfigFileError, match="--captions"):
        parse_args(["--text-reader", "conv", "--out", str(tmp_path)])
