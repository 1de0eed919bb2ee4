"""Training with the caption modality: the same loop and losses over the images and the captions (one step of
every variant, a tiny run that saves, samples and resumes, the --captions flag, the text weight)."""
import json
from dataclasses import replace

import pytest
import torch

from model.captions import Tokenizer
from model.config import READERS, VARIANTS, TextConfig, TrainConfig
from model.networks import MultimodalEBMVAE, text_one_hot
from model.train import make_optimizers, parse_args, train, train_step

TEXT = TextConfig(embed_dim=4, hidden=16)


@pytest.fixture
def text_config(tiny_config):
    return replace(tiny_config, text=TEXT)


def captions(n):
    words = ["a bold 3", "three, thin and upright", "the digit 3 leaning left", "an 8 with a thin stroke"]
    return text_one_hot(torch.tensor(Tokenizer().encode_batch([words[i % 4] for i in range(n)])), TEXT.vocab_size)


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(module, before):
    return any(not torch.equal(p, q) for p, q in zip(module.parameters(), before))


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_one_step_with_captions_trains_every_caption_part(variant, reader, text_config):
    text_config = replace(text_config, text=replace(TEXT, reader=reader))
    cfg = TrainConfig(model=text_config, variant=variant, warmup_iters=0, data_steps=2, latent_steps=2)
    model = MultimodalEBMVAE(text_config)
    parts = {"decoder": model.generator.text_decoder, "expert": model.inference.text_expert,
             "trunk": model.energy.text_trunk}
    before = {k: _snapshot(m) for k, m in parts.items()}
    log = train_step(model, make_optimizers(model, cfg), torch.rand(8, 3, 3, 28, 28), cfg, it=0, text=captions(8))
    assert log and all(torch.isfinite(torch.tensor(v)) for v in log.values())
    assert _changed(parts["decoder"], before["decoder"]) and _changed(parts["expert"], before["expert"])
    assert _changed(parts["trunk"], before["trunk"]) == (variant != "vae")
    assert ("loss_text" in log) == (variant in ("full", "noise_init"))


def test_the_text_weight_scales_the_caption_likelihood(text_config):
    cfg = TrainConfig(model=text_config, variant="vae", warmup_iters=0, text_weight=0.0)
    model = MultimodalEBMVAE(text_config)
    decoder = _snapshot(model.generator.text_decoder)
    train_step(model, make_optimizers(model, cfg), torch.rand(4, 3, 3, 28, 28), cfg, it=0, text=captions(4))
    assert not _changed(model.generator.text_decoder, decoder)   # weight 0: the caption's likelihood is off
    cfg.text_weight = 1.0
    train_step(model, make_optimizers(model, cfg), torch.rand(4, 3, 3, 28, 28), cfg, it=0, text=captions(4))
    assert _changed(model.generator.text_decoder, decoder)


def test_a_tiny_captioned_run_trains_saves_samples_captions_and_resumes(tmp_path, mnist_file, text_config):
    cfg = TrainConfig(model=text_config, out_dir=str(tmp_path / "run"), mnist=str(mnist_file),
                      cache_dir=str(tmp_path / "cache"), iters=4, batch_size=8, warmup_iters=2, data_steps=2,
                      latent_steps=2, log_every=1, sample_every=4, ckpt_every=2, eval_every=0, classifier=None)
    final = train(cfg)
    run = tmp_path / "run"
    assert MultimodalEBMVAE.from_pretrained(final, strict=True).config.text == TEXT
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [0, 1, 2, 3] and "loss_text" in lines[-1]
    shown = (run / "samples" / "iter000004.txt").read_text().splitlines()
    assert len(shown) == 16 and shown[0].startswith("0 proposal: ") and shown[8].startswith("0 revised: ")
    cfg.iters = 6
    train(cfg, resume=True)
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines][-2:] == [4, 5]
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=True)["iteration"] == 6


def test_the_captions_flag_turns_the_caption_modality_on():
    cfg, _ = parse_args(["--captions", "--text-weight", "2"])
    assert cfg.model.text == TextConfig() and cfg.text_weight == 2.0
    assert parse_args([])[0].model.text is None


def test_a_model_with_another_vocabulary_is_refused_in_one_line(tmp_path, mnist_file, text_config):
    from model.data import DataError

    other = replace(text_config, text=replace(TEXT, words=TEXT.words[:-1]))
    cfg = TrainConfig(model=other, out_dir=str(tmp_path / "run"), mnist=str(mnist_file),
                      cache_dir=str(tmp_path / "cache"), iters=1, classifier=None)
    with pytest.raises(DataError, match="not the data set's"):
        train(cfg)


class FakeJudge:
    """Reads every image as the same digit."""

    def __init__(self, digit):
        self.digit = digit

    def predict(self, x):
        return torch.full(x.shape[:2], self.digit), torch.ones(x.shape[:2])


def test_the_quick_coherence_of_a_captioned_model_reads_both_directions(tmp_path, mnist_file, text_config):
    from model.caption_eval import caption_digit
    from model.data import load_dataset
    from model.train import quick_coherence

    test = load_dataset("test", 3, 0, str(mnist_file), tmp_path / "cache", captions=True)
    model = MultimodalEBMVAE(text_config).eval()
    out = quick_coherence(model, FakeJudge(3), test, 20)
    y = test.y[:20]
    assert out["coherence_caption_to_image"] == pytest.approx((y == 3).float().mean().item())
    assert 0 <= out["coherence_image_to_caption"] <= 1
    bias = model.generator.text_decoder.net[-1].bias.data.view(TEXT.max_len, -1)
    bias[0, 4], bias[1:, 0] = 1e4, 1e4                                 # every caption: "three", then pads
    assert caption_digit(Tokenizer().decode([4])) == 3
    out = quick_coherence(model, FakeJudge(3), test, 20)
    assert out["coherence_image_to_caption"] == pytest.approx((y == 3).float().mean().item())
