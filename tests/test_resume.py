"""--resume never silently starts over: nothing to resume is an error, a save killed at any of its steps
leaves a whole checkpoint (checkpoint, or checkpoint.tmp / checkpoint.old), a corrupt state.pt falls
back to the last good copy or says so."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

import model.train as train_mod
from model.config import TrainConfig
from model.train import ResumeError, find_resumable, make_optimizers, save_checkpoint, train


class Killed(BaseException):
    """The writer dies here (BaseException: no except clause of the code under test catches it)."""


def _cfg(tmp_path, mnist_file, tiny_config, **kw):
    base = dict(model=tiny_config, out_dir=str(tmp_path / "run"), mnist=str(mnist_file), cache_dir=str(tmp_path / "cache"),
                iters=2, batch_size=4, warmup_iters=0, data_steps=1, latent_steps=1, log_every=1, sample_every=100,
                ckpt_every=1, eval_every=0, classifier=None, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(m, w):
    return all(torch.equal(v, w[k]) for k, v in m.state_dict().items())


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, mnist_file, tiny_config):
    cfg = _cfg(tmp_path, mnist_file, tiny_config, out_dir=str(tmp_path / "typo"))
    with pytest.raises(ResumeError, match="does not exist"):
        train(cfg, resume=True)
    assert not (tmp_path / "typo").exists()              # nothing written: no new run started
    (tmp_path / "empty").mkdir()
    cfg.out_dir = str(tmp_path / "empty")
    with pytest.raises(ResumeError, match="nothing to resume"):
        train(cfg, resume=True)
    assert list((tmp_path / "empty").iterdir()) == []


def test_resume_nothing_from_the_shell_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "model.train", "--resume", "--out-dir", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "nothing to resume" in r.stderr or "does not exist" in r.stderr


def test_a_save_killed_at_every_step_leaves_a_checkpoint(tmp_path, mnist_file, tiny_config, monkeypatch):
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    train(cfg)                                      # checkpoint (iteration 2) and checkpoint.old (iteration 1)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"checkpoint", "checkpoint.old"}
    _, model, state, _ = find_resumable(run)
    assert state["iteration"] == 2
    before = _weights(model)
    with torch.no_grad():                           # the next save holds different weights
        for p in model.parameters():
            p.add_(1.0)
    after = _weights(model)
    opt = make_optimizers(model, cfg)

    real = {"rmtree": shutil.rmtree, "replace": os.replace, "save": torch.save,
            "write_text": pathlib.Path.write_text, "save_pretrained": model.save_pretrained}
    outcomes = []
    for k in range(1, 50):
        case = tmp_path / f"case{k}"
        shutil.copytree(run, case)
        calls = [0]

        def step(name):
            def op(*a, **kw):
                calls[0] += 1
                if calls[0] == k:
                    if name in ("save", "write_text"):      # die half-way through the write
                        target = a[1] if name == "save" else a[0]
                        pathlib.Path(target).write_bytes(b"\x00partial")
                    raise Killed(name)
                return real[name](*a, **kw)
            return op

        monkeypatch.setattr(train_mod.shutil, "rmtree", step("rmtree"))
        monkeypatch.setattr(train_mod.os, "replace", step("replace"))
        monkeypatch.setattr(train_mod.torch, "save", step("save"))
        monkeypatch.setattr(pathlib.Path, "write_text", lambda self, *a, **kw: step("write_text")(self, *a, **kw))
        monkeypatch.setattr(model, "save_pretrained", step("save_pretrained"))
        killed = None
        try:
            save_checkpoint(case, model, opt, cfg, 3, 1.0)
        except Killed as e:
            killed = str(e)
        monkeypatch.undo()
        found, resumed, state, notes = find_resumable(case)   # never raises: some whole copy is left
        assert state["iteration"] in (2, 3), (k, killed)
        assert _same(resumed, before if state["iteration"] == 2 else after), (k, killed)
        outcomes.append((killed, found.name, state["iteration"]))
        if killed is None:
            break
    assert outcomes[-1] == (None, "checkpoint", 3)            # the undisturbed save
    assert len(outcomes) >= 9                                  # every step of the save was killed once
    assert ("replace", "checkpoint.tmp", 3) in outcomes        # killed between the two renames: .tmp is used
    assert any(o[1] == "checkpoint" and o[2] == 2 for o in outcomes)


def test_resume_after_a_kill_between_the_renames_continues(tmp_path, mnist_file, tiny_config):
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    train(cfg)
    run = tmp_path / "run"
    os.replace(run / "checkpoint", run / "checkpoint.tmp")     # as if killed before the last rename
    (run / "checkpoint.tmp" / "COMPLETE").write_text("2\n")
    cfg.iters = 3
    train(cfg, resume=True)
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=False)["iteration"] == 3
    lines = (run / "log.jsonl").read_text().splitlines()
    assert len(lines) == 3                                     # iterations 0, 1 and then 2: not started over


def test_corrupt_state_falls_back_or_says_so(tmp_path, mnist_file, tiny_config, capsys):
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    train(cfg)
    run = tmp_path / "run"
    (run / "checkpoint" / "state.pt").write_bytes(b"garbage")
    found, _, state, notes = find_resumable(run)
    assert found.name == "checkpoint.old" and state["iteration"] == 1
    assert any("state.pt is unreadable" in n for n in notes)
    shutil.rmtree(run / "checkpoint.old")
    with pytest.raises(ResumeError, match="state.pt is unreadable"):
        find_resumable(run)
    r = subprocess.run([sys.executable, "-m", "model.train", "--resume", "--out-dir", str(run)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "state.pt is unreadable" in r.stderr
