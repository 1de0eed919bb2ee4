"""Training and evaluation errors are one line and a non-zero exit, never a traceback: a missing,
truncated, empty or garbage MNIST file (a random-bytes .npz gets no allow_pickle hint), a bad checkpoint."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.data import MNISTError, load_mnist

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "mebm"


def _bad_mnist_files(tmp_path, mnist_file):
    good = mnist_file.read_bytes()
    files = {"missing": tmp_path / "nope.npz"}
    for name, data in {"garbage": os.urandom(4096), "empty": b"", "truncated": good[: len(good) // 2],
                       "zip_header_then_garbage": b"PK\x03\x04" + os.urandom(1000)}.items():
        files[name] = tmp_path / f"{name}.npz"
        files[name].write_bytes(data)
    files["wrong_arrays"] = tmp_path / "wrong.npz"
    np.savez(files["wrong_arrays"], a=np.zeros(3))
    files["float_arrays"] = tmp_path / "floats.npz"
    np.savez(files["float_arrays"], x_train=np.zeros((2, 28, 28)), y_train=np.zeros(2), x_test=np.zeros((2, 28, 28)),
             y_test=np.zeros(2))
    return files


def test_bad_mnist_files_raise_one_line(tmp_path, mnist_file):
    for name, path in _bad_mnist_files(tmp_path, mnist_file).items():
        with pytest.raises(MNISTError) as e:
            load_mnist(path)
        msg = str(e.value)
        assert len(msg.splitlines()) == 1 and str(path) in msg, (name, msg)
        assert "allow_pickle" not in msg and "pickled" not in msg, (name, msg)


def _run(*argv, cwd=None):
    r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=180, cwd=cwd)
    return r.returncode, r.stderr.strip()


def _main(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    return (e.value.code if isinstance(e.value.code, int) else 1), err or str(e.value.code)


def test_train_and_evaluate_on_bad_mnist_exit_with_one_line(tmp_path, mnist_file, capsys):
    from model.evaluate import main as evaluate_main
    from model.train import main as train_main

    files = _bad_mnist_files(tmp_path, mnist_file)
    for name in ("garbage", "truncated", "missing", "wrong_arrays"):
        path = files[name]
        code, err = _main(train_main, ["--mnist", str(path), "--out-dir", str(tmp_path / "run"), "--cache-dir",
                                       str(tmp_path / "cache"), "--model.n-modalities", "2"], capsys)
        assert code == 1 and len(err.splitlines()) == 1 and str(path) in err and "allow_pickle" not in err, (name, err)
        code, err = _main(evaluate_main, ["--checkpoint", str(BUNDLED), "--mnist", str(path), "--cache-dir",
                                          str(tmp_path / "cache"), "--out", str(tmp_path / "eval")], capsys)
        assert code == 1 and len(err.splitlines()) == 1 and str(path) in err and "allow_pickle" not in err, (name, err)
    # and from the shell: one line on stderr, no traceback
    for module in ("model.train", "model.evaluate"):
        argv = ["--mnist", str(files["garbage"]), "--cache-dir", str(tmp_path / "cache")]
        argv += ["--checkpoint", str(BUNDLED), "--out", str(tmp_path / "eval")] if module == "model.evaluate" else \
            ["--out-dir", str(tmp_path / "run")]
        code, err = _run(module, *argv)
        assert code == 1 and "Traceback" not in err and len(err.splitlines()) == 1 and "no zip header" in err, err


def test_evaluate_bad_checkpoint_is_one_line(tmp_path, mnist_file):
    bad = tmp_path / "ckpt"
    bad.mkdir()
    (bad / "config.json").write_text('{"latent_dim": 16}')
    (bad / "model.safetensors").write_bytes(os.urandom(256))
    for ckpt in (bad, tmp_path / "missing"):
        code, err = _run("model.evaluate", "--checkpoint", str(ckpt), "--mnist", str(mnist_file),
                         "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "eval"))
        assert code == 1 and "Traceback" not in err and len(err.splitlines()) == 1, err
        assert str(ckpt) in err


def test_bad_labels_are_named(tmp_path, mnist_file):
    """A label outside 0-9 is named as such (it was blamed on the arrays' shapes)."""
    with np.load(mnist_file) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["y_train"] = arrays["y_train"].copy()
    arrays["y_train"][[3, 7]] = 200
    path = tmp_path / "labels.npz"
    np.savez(path, **arrays)
    with pytest.raises(MNISTError) as e:
        load_mnist(path)
    msg = str(e.value)
    assert "y_train holds 200 (2 of" in msg and "0-9" in msg and "shaped" not in msg and len(msg.splitlines()) == 1
