"""--resume never silently starts over: nothing to resume is an error, a save killed at any of its steps
leaves a whole checkpoint (the newest complete one of checkpoint, checkpoint.tmp, checkpoint.old is resumed),
a corrupt, incomplete or foreign state.pt falls back to the last good copy or says so in one line, state.pt
is never unpickled, a damaged train_config.json falls back to the checkpoint's copy, and log.jsonl holds each
iteration once."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

import model.train as train_mod
from model.config import TrainConfig
from model.train import ResumeError, find_resumable, make_optimizers, prepare_resume, save_checkpoint, train


class Killed(BaseException):
    """The writer dies here (BaseException: no except clause of the code under test catches it)."""


def _cfg(tmp_path, mnist_file, tiny_config, **kw):
    base = dict(model=tiny_config, out_dir=str(tmp_path / "run"), mnist=str(mnist_file),
                cache_dir=str(tmp_path / "cache"),
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
        calls, written = [0], []     # written: files whose writing began

        def step(name, calls=calls, written=written, k=k):
            def op(*a, **kw):
                calls[0] += 1
                if name == "write_text":
                    written.append(pathlib.Path(a[0]).name)
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
        newest = 3 if "COMPLETE" in written else 2    # once the new copy is marked whole, it is the one resumed
        assert state["iteration"] == newest, (k, killed, found.name)
        assert _same(resumed, before if state["iteration"] == 2 else after), (k, killed)
        prepare_resume(case, found, state["iteration"])       # what a resumed run does first
        assert not (case / "checkpoint.del").exists(), (k, killed)
        again = find_resumable(case)
        assert again[0].name == "checkpoint" and again[2]["iteration"] == newest, (k, killed)
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
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=True)["iteration"] == 3
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


def test_a_pickle_in_state_pt_is_refused_and_never_run(tmp_path, mnist_file, tiny_config, capsys):
    """A shared run folder whose state.pt holds an object that would run a command when unpickled: --resume
    refuses it in one line (no other copy to fall back to) and the command never runs."""
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    train(cfg)
    run = tmp_path / "run"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    shutil.rmtree(run / "checkpoint.old")
    capsys.readouterr()
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=True)
    torch.save({**state, "elapsed": Evil()}, run / "checkpoint" / "state.pt")
    with pytest.raises(SystemExit) as e:
        train_mod.main(["--resume", "--out-dir", str(run)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and "state.pt" in err, err
    assert "could run code" in err and not marker.exists()


def test_incomplete_state_falls_back_to_the_older_copy(tmp_path, mnist_file, tiny_config):
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    train(cfg)
    run = tmp_path / "run"
    path = run / "checkpoint" / "state.pt"
    full = torch.load(path, weights_only=True)
    for key in ("elapsed", "torch_rng"):
        torch.save({k: v for k, v in full.items() if k != key}, path)
        found, _, state, notes = find_resumable(run)
        assert found.name == "checkpoint.old" and state["iteration"] == 1, key
        assert any(f"lacks {key}" in n for n in notes), notes
    torch.save(full, path)
    cfg.iters = 3
    torch.save({k: v for k, v in full.items() if k != "elapsed"}, path)
    train(cfg, resume=True)                                    # continues from checkpoint.old: no KeyError
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=True)["iteration"] == 3


def test_optimiser_state_of_another_width_is_refused_before_training(tmp_path, mnist_file, tiny_config, capsys):
    from dataclasses import replace

    wide = _cfg(tmp_path, mnist_file, replace(tiny_config, width=16), out_dir=str(tmp_path / "wide"), iters=1)
    train(wide)
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    train(cfg)
    run = tmp_path / "run"
    for name in ("checkpoint", "checkpoint.old"):              # both copies carry the other run's optimiser
        shutil.copy(tmp_path / "wide" / "checkpoint" / "state.pt", run / name / "state.pt")
    log_before = (run / "log.jsonl").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_mod.main(["--resume", "--out-dir", str(run), "--iters", "4"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and "another width" in err, err
    assert (run / "log.jsonl").read_text() == log_before      # refused before training started


def test_damaged_train_config_falls_back_to_the_checkpoints_copy(tmp_path, mnist_file, tiny_config, capsys):
    cfg = _cfg(tmp_path, mnist_file, tiny_config)
    train(cfg)
    run = tmp_path / "run"
    (run / "train_config.json").write_text('{"iters": 2, "batch')   # cut by a kill or a full disk
    capsys.readouterr()
    train_mod.main(["--resume", "--out-dir", str(run), "--iters", "3"])
    err = capsys.readouterr().err
    assert "train_config.json" in err and "checkpoint" in err
    assert torch.load(run / "checkpoint" / "state.pt", weights_only=True)["iteration"] == 3
    assert json.loads((run / "train_config.json").read_text())["iters"] == 3      # rewritten whole
    assert not (run / "train_config.json.tmp").exists()
    for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old"):   # no good copy anywhere: one line naming it
        if (run / name).exists():
            (run / name / "train_config.json").write_text("[1, 2")
    (run / "train_config.json").write_text("{")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_mod.main(["--resume", "--out-dir", str(run)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and "train_config.json" in err and "Traceback" not in err


def test_log_holds_each_iteration_once_after_a_resume(tmp_path, mnist_file, tiny_config):
    cfg = _cfg(tmp_path, mnist_file, tiny_config, iters=3, ckpt_every=2)
    train(cfg)                                                 # log: iterations 0, 1, 2; checkpoint 3, .old 2
    run = tmp_path / "run"
    shutil.rmtree(run / "checkpoint")                          # as if killed after iteration 2 was logged
    with open(run / "log.jsonl", "a") as f:
        f.write('{"iteration": 2, "loss_rec')                  # and a line cut half-way
    train(cfg, resume=True)                                    # from checkpoint.old: iteration 2 runs again
    its = [json.loads(line)["iteration"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert its == [0, 1, 2]
