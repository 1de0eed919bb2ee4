"""One training step of every variant, the run loop (checkpoint, resume, log, divergence guard), the CLI."""
import dataclasses
import json

import pytest
import torch

from model.config import VARIANTS, TrainConfig
from model.networks import MultimodalEBMVAE
from model.train import make_optimizers, parse_args, train, train_step


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(module, before):
    return any(not torch.equal(p, q) for p, q in zip(module.parameters(), before))


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_step_of_every_variant(variant, tiny_config):
    cfg = TrainConfig(model=tiny_config, variant=variant, warmup_iters=0, data_steps=3, latent_steps=3)
    model = MultimodalEBMVAE(tiny_config)
    opt = make_optimizers(model, cfg)
    before = {k: _snapshot(getattr(model, k)) for k in ("generator", "inference", "energy")}
    log = train_step(model, opt, torch.rand(8, 3, 3, 28, 28), cfg, it=0)
    assert log and all(torch.isfinite(torch.tensor(v)) for v in log.values())
    assert _changed(model.generator, before["generator"]) and _changed(model.inference, before["inference"])
    assert _changed(model.energy, before["energy"]) == (variant != "vae")
    assert ("loss_energy" in log) == (variant != "vae")
    assert ("loss_teach" in log) == (variant in ("full", "no_latent_revision"))
    assert ("latent_logp_gain" in log) == (variant in ("full", "noise_init"))


def test_warmup_is_the_vae_alone(tiny_config):
    cfg = TrainConfig(model=tiny_config, warmup_iters=5)
    model = MultimodalEBMVAE(tiny_config)
    log = train_step(model, make_optimizers(model, cfg), torch.rand(4, 3, 3, 28, 28), cfg, it=0)
    assert "kl" in log and "loss_energy" not in log


def _cfg(tmp_path, mnist_file, tiny_config, **kw):
    base = dict(model=tiny_config, out_dir=str(tmp_path / "run"), mnist=str(mnist_file),
                cache_dir=str(tmp_path / "cache"), iters=4, batch_size=8, warmup_iters=2, data_steps=2, latent_steps=2,
                log_every=1, sample_every=2,
                ckpt_every=2, eval_every=0, classifier=None)
    base.update(kw)
    return TrainConfig(**base)


def test_run_saves_logs_samples_checkpoints_and_resumes(tmp_path, mnist_file, tiny_config):
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    final = train(cfg)
    run = tmp_path / "run"
    assert MultimodalEBMVAE.from_pretrained(final, strict=True).config == tiny_config
    assert TrainConfig.from_json(run / "checkpoint" / "train_config.json") == cfg
    lines = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines] == [0, 1, 2, 3]
    assert "loss_energy" in lines[-1] and "energy_data" in lines[-1] and "energy_revised" in lines[-1]
    assert len(list((run / "samples").glob("*.png"))) >= 2
    cfg.iters = 6
    train(cfg, resume=True)
    lines = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines][-2:] == [4, 5]
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=True)["iteration"] == 6


def test_divergence_guard_stops_and_keeps_last_checkpoint(tmp_path, mnist_file, tiny_config):
    cfg = _cfg(tmp_path, mnist_file, tiny_config, explode_threshold=0.0, iters=6)  # any EBM loss "explodes"
    train(cfg)
    run = tmp_path / "run"
    assert "stopped at iteration 2" in (run / "DIVERGED.txt").read_text()
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=True)["iteration"] == 2
    assert not (run / "final").exists()


def test_cli_flags_fill_the_config():
    cfg, resume = parse_args(["--variant", "vae", "--model.latent-dim", "8", "--max-minutes", "1.5",
                              "--mnist", "none", "--model.ebm-spectral-norm", "true"])
    assert cfg.variant == "vae" and cfg.model.latent_dim == 8 and cfg.max_minutes == 1.5
    assert cfg.mnist is None and cfg.model.ebm_spectral_norm is True and not resume


def test_ebm_negatives_from_the_latent_chain(tiny_config):
    """ebm_negatives='latent': the EBM's negatives come from its latent chain then a short data chain,
    and the generator is taught toward them (issue 9, section 2)."""
    cfg = TrainConfig(model=tiny_config, warmup_iters=0, data_steps=2, latent_steps=2, ebm_negatives="latent",
                      ebm_latent_steps=3)
    model = MultimodalEBMVAE(tiny_config)
    opt = make_optimizers(model, cfg)
    before = _snapshot(model.energy)
    log = train_step(model, opt, torch.rand(8, 3, 3, 28, 28), cfg, it=0)
    assert log["ebm_latent_move"] > 0 and "loss_teach" in log and _changed(model.energy, before)
    data_only = train_step(model, opt, torch.rand(8, 3, 3, 28, 28), TrainConfig(model=tiny_config, warmup_iters=0,
                           data_steps=2, latent_steps=2), it=0)
    assert "ebm_latent_move" not in data_only
    with pytest.raises(ValueError, match="ebm_negatives"):
        TrainConfig(ebm_negatives="noise")


def test_init_from_cpu_budget_and_coherence_log(tmp_path, mnist_file, tiny_config):
    from model.classifier import ClassifierConfig, Classifiers

    src = MultimodalEBMVAE(tiny_config)
    src.save_pretrained(tmp_path / "src")
    Classifiers(ClassifierConfig(3)).save_pretrained(tmp_path / "clf")
    cfg = _cfg(tmp_path, mnist_file, tiny_config, init_from=str(tmp_path / "src"), warmup_iters=0, iters=2,
               eval_every=1, eval_samples=6, classifier=str(tmp_path / "clf"), ebm_negatives="latent",
               ebm_latent_steps=2, lr_generator=0.0, lr_inference=0.0, lr_energy=0.0)
    train(cfg)
    out = MultimodalEBMVAE.from_pretrained(str(tmp_path / "run" / "final"))
    assert all(torch.equal(p, q) for p, q in zip(out.parameters(), src.parameters()))   # lr 0: the source weights
    logs = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("coherence_joint_ebm_latent" in l and "cpu_minutes" in l for l in logs)
    # --init-skip energy: a fresh EBM of another width beside the source's generator and inference weights
    wide = dataclasses.replace(tiny_config, ebm_width=2 * tiny_config.ebm_width)
    cfg = _cfg(tmp_path, mnist_file, wide, out_dir=str(tmp_path / "wide"), init_from=str(tmp_path / "src"),
               init_skip="energy", warmup_iters=0, iters=1, lr_generator=0.0, lr_inference=0.0, lr_energy=0.0)
    train(cfg)
    out = MultimodalEBMVAE.from_pretrained(str(tmp_path / "wide" / "final"))
    assert all(torch.equal(p, q) for p, q in zip(out.generator.parameters(), src.generator.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(out.inference.parameters(), src.inference.parameters()))
    torch.manual_seed(cfg.seed)
    fresh = MultimodalEBMVAE(wide)                                     # the seeded fresh EBM, as in train()
    assert all(torch.equal(p, q) for p, q in zip(out.energy.parameters(), fresh.energy.parameters()))
    with pytest.raises(RuntimeError, match="size mismatch"):         # without it the shapes must match
        train(_cfg(tmp_path, mnist_file, wide, out_dir=str(tmp_path / "wide2"), init_from=str(tmp_path / "src"),
                   warmup_iters=0, iters=1))
    with pytest.raises(ValueError, match="init_skip"):
        _cfg(tmp_path, mnist_file, wide, init_skip="ebm")
    # a pairwise-head EBM from a concat source: its trunks and MLP head are the source's, the agreement term fresh
    pair = dataclasses.replace(tiny_config, ebm_head="pairwise")
    train(_cfg(tmp_path, mnist_file, pair, out_dir=str(tmp_path / "pair"), init_from=str(tmp_path / "src"),
               warmup_iters=0, iters=1, lr_generator=0.0, lr_inference=0.0, lr_energy=0.0, ebm_mismatch_share=0.5))
    out = MultimodalEBMVAE.from_pretrained(str(tmp_path / "pair" / "final"))
    assert out.config.ebm_head == "pairwise" and out.energy.agreement is not None
    assert all(torch.equal(p, q) for p, q in zip(out.energy.trunks.parameters(), src.energy.trunks.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(out.energy.head.parameters(), src.energy.head.parameters()))
    cfg = _cfg(tmp_path, mnist_file, tiny_config, out_dir=str(tmp_path / "budget"), iters=1000, max_cpu_minutes=1e-9)
    train(cfg)
    logs = (tmp_path / "budget" / "log.jsonl").read_text().splitlines()
    assert len(logs) == 1                                   # stopped after the first iteration on its CPU budget


def test_a_run_outside_the_repository_logs_coherence_by_the_bundled_judges(tmp_path, mnist_file, monkeypatch):
    """TrainConfig.classifier's default (checkpoints/classifier) is found from the package, not the working folder."""
    from model.config import ModelConfig
    from model.paths import REPO_ROOT, find_checkpoint

    monkeypatch.chdir(tmp_path)
    assert find_checkpoint(TrainConfig().classifier) == REPO_ROOT / "checkpoints" / "classifier"
    model = ModelConfig(latent_dim=4, width=8, ebm_width=8, ebm_features=16)   # M = 5, data seed 0: the judges'
    cfg = _cfg(tmp_path, mnist_file, model, out_dir="runs/elsewhere", iters=1, warmup_iters=1, eval_every=1,
               eval_samples=4, classifier=TrainConfig().classifier)
    train(cfg)
    logs = [json.loads(line) for line in (tmp_path / "runs" / "elsewhere" / "log.jsonl").read_text().splitlines()]
    assert any("coherence_cond1" in line for line in logs)


def test_a_failed_start_leaves_no_run_folder(tmp_path, tiny_config):
    from model.data import MNISTError

    with pytest.raises((MNISTError, OSError)):
        train(_cfg(tmp_path, tmp_path / "no_mnist.npz", tiny_config))
    assert not (tmp_path / "run").exists()


def test_replay_buffer_draws_past_negatives_and_restarts_a_share_from_noise():
    from model.train import ReplayBuffer

    buf = ReplayBuffer(1000, (2, 3, 28, 28), reinit=0.0)
    assert buf.x.shape == (1000, 2, 3, 28, 28) and len(buf) == 1000
    x, idx = buf.sample(50)
    assert x.shape == (50, 2, 3, 28, 28) and idx.shape == (50,)
    assert torch.equal(x, buf.x[idx])                       # reinit 0: the stored chain states themselves
    buf.update(idx, torch.zeros_like(x))
    assert (buf.x[idx] == 0).all()                          # written back in their places
    buf.reinit = 1.0
    x, idx = buf.sample(50)
    assert not (x == 0).all(dim=(1, 2, 3, 4)).any()         # reinit 1: every start is fresh noise
    assert 0.0 <= x.min() and x.max() <= 1.0
    buf = ReplayBuffer(4000, (1, 3, 28, 28), reinit=0.25)
    buf.x.zero_()
    x, _ = buf.sample(4000)
    fresh = (x != 0).any(dim=(1, 2, 3, 4)).float().mean().item()
    assert abs(fresh - 0.25) < 0.04                         # about a quarter restarted (sd 0.007)


def test_replay_share_replaces_that_share_of_the_ebm_negatives(tiny_config):
    from model.train import ReplayBuffer, TrainStep, replay_count

    cfg = TrainConfig(model=tiny_config, warmup_iters=0, data_steps=2, latent_steps=2, ebm_replay_share=0.25,
                      ebm_replay_size=16, ebm_replay_steps=2)
    assert replay_count(cfg, 8) == 2 and replay_count(TrainConfig(), 8) == 0
    model = MultimodalEBMVAE(tiny_config)
    step = TrainStep(model, cfg)
    before = None
    for it in range(2):
        log = train_step(model, make_optimizers(model, cfg), torch.rand(8, 3, 3, 28, 28), cfg, it=it, step=step)
        assert isinstance(step.replay, ReplayBuffer) and step.replay.x.shape == (16, 3, 3, 28, 28)
        assert "energy_replay" in log and "energy_revised" in log
        if before is not None:
            assert (step.replay.x != before).any(dim=(1, 2, 3, 4)).sum() <= 2   # two chains per batch written back
        before = step.replay.x.clone()
    assert TrainConfig(model=tiny_config, warmup_iters=0).ebm_replay_share == 0.0   # off by default
    with pytest.raises(ValueError):
        TrainConfig(ebm_replay_share=1.5)


def test_energy_loss_ranks_replay_chains_against_the_data_and_leaves_the_likelihood_alone():
    from model.train import energy_loss

    e_pos, e_neg = torch.tensor([0.0, 1.0]), torch.tensor([2.0, 4.0])
    ml = energy_loss(e_pos, e_neg, 0.1)
    assert ml.item() == pytest.approx(0.5 - 3.0 + 0.1 * (0 + 1 + 4 + 16) / 2)   # the maximum-likelihood loss
    # chains far above the data: the ranking term is (nearly) zero and pushes nothing
    far = torch.tensor([60.0, 80.0], requires_grad=True)
    loss = energy_loss(e_pos, e_neg, 0.1, far)
    loss.backward()
    assert loss.item() == pytest.approx(ml.item(), abs=1e-12) and far.grad.abs().max() < 1e-20
    # chains far below the data: each is pushed up at rate 1 / n_chains, the data down as much in all
    below = torch.tensor([-50.0, -70.0], requires_grad=True)
    pos = e_pos.clone().requires_grad_()
    loss = energy_loss(pos, e_neg, 0.0, below)
    loss.backward()
    assert torch.allclose(below.grad, torch.tensor([-0.5, -0.5]))
    assert torch.allclose(pos.grad, torch.tensor([0.5 + 0.5, 0.5 + 0.5]))   # likelihood 1/2 each, ranking 1/2 each
    assert loss.item() == pytest.approx(0.5 - 3.0 + (50.5 + 70.5) / 2, rel=1e-6)   # softplus(t) ~ t for large t
    # the negatives' gradient is the likelihood's whatever the chains do
    neg = e_neg.clone().requires_grad_()
    energy_loss(e_pos, neg, 0.0, below.detach()).backward()
    assert torch.allclose(neg.grad, torch.tensor([-0.5, -0.5]))


def test_replay_rank_keeps_every_revised_sample_as_a_negative(tiny_config):
    from model.train import TrainStep

    cfg = TrainConfig(model=tiny_config, warmup_iters=0, data_steps=2, latent_steps=2, ebm_replay_share=0.25,
                      ebm_replay_size=16, ebm_replay_steps=2, ebm_replay_loss="rank")
    model = MultimodalEBMVAE(tiny_config)
    step = TrainStep(model, cfg)
    seen = []
    forward = model.energy.forward
    model.energy.forward = lambda x, text=None: (seen.append(x.shape[0]), forward(x, text))[1]
    before = None
    for it in range(2):
        log = train_step(model, make_optimizers(model, cfg), torch.rand(8, 3, 3, 28, 28), cfg, it=it, step=step)
        assert 0.0 <= log["replay_rank"] <= 1.0 and "energy_replay" in log and "energy_revised" in log
        if before is not None:
            assert (step.replay.x != before).any(dim=(1, 2, 3, 4)).sum() <= 2   # two chains per batch written back
        before = step.replay.x.clone()
    assert 8 + 8 + 2 in seen   # the loss's pass: 8 data tuples, all 8 revised samples and 2 chains more
    with pytest.raises(ValueError):
        TrainConfig(ebm_replay_loss="hinge")


def test_mismatched_tuples_take_one_modality_from_another_tuple():
    from model.train import mismatched_tuples

    torch.manual_seed(0)
    b, M = 8, 5
    x = torch.arange(b * M, dtype=torch.float32).view(b, M, 1, 1, 1).expand(b, M, 3, 28, 28).contiguous()
    out = mismatched_tuples(x, 6)
    assert out.shape == (6, M, 3, 28, 28) and torch.equal(x[:6], x[:6].clone())   # the batch itself untouched
    for r in range(6):
        changed = [m for m in range(M) if not torch.equal(out[r, m], x[r, m])]
        assert len(changed) == 1   # one modality replaced, the others the tuple's own
        m = changed[0]
        donors = [d for d in range(b) if torch.equal(out[r, m], x[d, m])]
        assert donors and r not in donors   # by the same modality of another tuple


def test_mismatch_share_adds_that_many_tuples_to_the_energy_pass(tiny_config):
    from model.train import TrainStep

    cfg = TrainConfig(model=tiny_config, warmup_iters=0, data_steps=2, latent_steps=2, ebm_mismatch_share=0.25)
    model = MultimodalEBMVAE(tiny_config)
    seen = []
    forward = model.energy.forward
    model.energy.forward = lambda x, text=None: (seen.append(x.shape[0]), forward(x, text))[1]
    log = train_step(model, make_optimizers(model, cfg), torch.rand(8, 3, 3, 28, 28), cfg, it=0,
                     step=TrainStep(model, cfg))
    assert 8 + 8 + 2 in seen   # 8 data tuples, 8 revised samples, 2 mismatched tuples
    assert 0.0 <= log["mismatch_rank"] <= 1.0 and "energy_mismatch" in log
    assert TrainConfig().ebm_mismatch_share == 0.0   # off by default
    with pytest.raises(ValueError):
        TrainConfig(ebm_mismatch_share=2.0)


def test_energy_loss_raises_a_mismatched_tuple_until_it_is_above_its_own():
    from model.train import energy_loss

    e_pos, e_neg = torch.tensor([0.0, 10.0, 3.0]), torch.tensor([1.0, 1.0, 1.0])
    pos, mis = e_pos.clone().requires_grad_(), torch.tensor([-40.0, 60.0], requires_grad=True)
    loss = energy_loss(pos, e_neg, 0.0, None, mis)
    loss.backward()
    ml = energy_loss(e_pos, e_neg, 0.0)
    assert loss.item() == pytest.approx(ml.item() + (40.0 + 0.0) / 2, rel=1e-6)   # paired: tuple 0 with 0, 1 with 1
    assert mis.grad[0] == pytest.approx(-0.5) and abs(mis.grad[1]) < 1e-20   # below its tuple: up; far above: left
    assert torch.allclose(pos.grad, torch.tensor([1 / 3 + 0.5, 1 / 3, 1 / 3]))   # its own tuple pushed down


def test_run_with_replay_negatives_saves_the_options_and_resumes(tmp_path, mnist_file, tiny_config):
    cfg = _cfg(tmp_path, mnist_file, tiny_config, ebm_replay_share=0.5, ebm_replay_size=32, ebm_replay_steps=2)
    train(cfg)
    run = tmp_path / "run"
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["ebm_replay_share"] == 0.5 and saved["ebm_replay_size"] == 32
    lines = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert "energy_replay" in lines[-1] and "energy_replay" not in lines[0]     # after the 2-iteration warm-up
    cfg, resume = parse_args(["--out", str(run), "--resume", "--iters", "6"])
    assert resume and cfg.ebm_replay_share == 0.5
    train(cfg, resume=True)
    lines = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert [l["iteration"] for l in lines][-2:] == [4, 5] and "energy_replay" in lines[-1]


def test_conditional_negatives_keep_the_observed_modality_and_revise_the_others(tiny_config):
    from model.train import conditional_negatives

    model = MultimodalEBMVAE(tiny_config)
    x = torch.rand(8, 3, 3, 28, 28)
    torch.manual_seed(1)
    neg, observed = conditional_negatives(model, x)
    torch.manual_seed(1)
    before_data, same = conditional_negatives(model, x, data_steps=0)   # the chain up to the data revision
    assert torch.equal(observed, same) and len(observed.unique()) > 1       # one observed modality per tuple
    rows = torch.arange(8)
    assert torch.equal(neg[rows, observed], x[rows, observed])              # clamped to the data exactly
    free = torch.ones(8, 3, dtype=torch.bool)
    free[rows, observed] = False
    assert ((neg - before_data).abs().flatten(2).amax(2)[free] > 0).all()   # every other modality moved
    assert not neg.requires_grad


def test_conditional_share_replaces_that_share_of_the_ebm_negatives(tiny_config, monkeypatch):
    import model.train as train_module

    cfg = TrainConfig(model=tiny_config, warmup_iters=0, data_steps=2, latent_steps=2, ebm_cond_share=0.25)
    assert train_module.cond_count(cfg, 8) == 2 and TrainConfig().ebm_cond_share == 0.0   # off by default
    model = MultimodalEBMVAE(tiny_config)
    x = torch.rand(8, 3, 3, 28, 28)
    _, log = train_module.train_losses(model, x, cfg, it=0)
    assert "energy_cond" in log and "energy_revised" in log

    def refuse(*a, **k):
        raise AssertionError("conditional chains drawn with the option off")
    monkeypatch.setattr(train_module, "conditional_negatives", refuse)
    _, log = train_module.train_losses(model, x, dataclasses.replace(cfg, ebm_cond_share=0.0), it=0)
    assert "energy_cond" not in log
    with pytest.raises(ValueError):
        TrainConfig(ebm_cond_share=0.6, ebm_replay_share=0.6)


def test_zero_intervals_mean_off_and_the_run_still_ends_with_its_checkpoint(tmp_path, mnist_file, tiny_config):
    """--log-every / --sample-every / --ckpt-every 0: no periodic lines, grids or checkpoints (no division by
    zero), but the final model, grid and resume checkpoint are still written."""
    cfg = _cfg(tmp_path, mnist_file, tiny_config, log_every=0, sample_every=0, ckpt_every=0, warmup_iters=0)
    train(cfg)
    run = tmp_path / "run"
    assert (run / "log.jsonl").read_text() == ""
    assert [p.name for p in (run / "samples").glob("*.png")] == ["final_iter000004.png"]
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=True)["iteration"] == 4
    assert (run / "final" / "model.safetensors").exists()
