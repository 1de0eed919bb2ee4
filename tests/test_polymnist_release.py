"""--dataset polymnist --data-dir PATH: the released PolyMNIST layout (train/ and test/, m0..m4, PNG files
<index>.<label>.png, tuples matched by index) for training and evaluation; bad folders get one line naming the file."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from model.classifier import ClassifierConfig, Classifiers
from model.config import ModelConfig, TrainConfig
from model.data import DataError, build_polymnist, load_dataset, read_polymnist_folder
from model.evaluate import main as evaluate_main
from model.train import train

from conftest import fake_mnist

M = 5


def write_release(root, n_train=30, n_test=20):
    """A tiny PolyMNIST release in exactly the published layout, from the fake MNIST digits."""
    x_tr, y_tr, x_te, y_te = fake_mnist(n_train, n_test, seed=3)
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        ds = build_polymnist(x, y, M, seed=5)
        for m in range(M):
            (root / split / f"m{m}").mkdir(parents=True)
            for i in range(len(y)):
                Image.fromarray(ds.x[i, m].permute(1, 2, 0).numpy()).save(root / split / f"m{m}" / f"{i}.{y[i]}.png")
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("polymnist") / "PolyMNIST")


def test_reads_the_layout_tuples_matched_by_index(release):
    ds = read_polymnist_folder(release, "test", M)
    assert ds.x.shape == (20, M, 3, 28, 28) and ds.x.dtype == torch.uint8
    assert ds.y.tolist() == [i % 10 for i in range(20)]
    png = np.asarray(Image.open(release / "test" / "m3" / "12.2.png"))
    assert np.array_equal(ds.x[12, 3].permute(1, 2, 0).numpy(), png)
    x, y = ds.batch(torch.tensor([0, 12]))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y.tolist() == [0, 2]


@pytest.mark.slow
def test_train_and_evaluate_on_the_release(release, tmp_path):
    cfg = TrainConfig(model=ModelConfig(width=8, ebm_width=8, ebm_features=16, latent_dim=4),
                      dataset="polymnist", data_dir=str(release), out_dir=str(tmp_path / "run"),
                      cache_dir=str(tmp_path / "cache"), iters=3, batch_size=4, warmup_iters=1, data_steps=2,
                      latent_steps=2, log_every=1, sample_every=100, ckpt_every=100, eval_every=0, classifier=None)
    final = train(cfg)
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3
    assert TrainConfig.from_json(final / "train_config.json").dataset == "polymnist"
    Classifiers(ClassifierConfig(M)).save_pretrained(tmp_path / "clf")
    evaluate_main(["--checkpoint", str(final), "--dataset", "polymnist", "--data-dir", str(release),
                   "--classifier", str(tmp_path / "clf"), "--cache-dir", str(tmp_path / "cache"),
                   "--out", str(tmp_path / "eval"), "--n-cond", "4", "--n-joint", "8", "--n-fid", "8",
                   "--n-curve", "5", "--curve-steps", "0,1", "--latent-steps", "1", "--data-steps", "1",
                   "--batch", "8", "--quiet", "--threads", "1", "--device", "cpu"])
    r = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert r["stages"] == ["proposal", "latent", "ebm_latent", "data"] and r["settings"]["n_cond"] == 4
    assert len(r["prior"]["data"]["fd"]) == M
    assert (tmp_path / "cache").is_dir() and any((tmp_path / "cache").glob("polymnist_release_test_*.npz"))
    again = load_dataset("test", M, dataset="polymnist", data_dir=release, cache_dir=tmp_path / "cache")
    assert torch.equal(again.x, read_polymnist_folder(release, "test", M).x)


def _broken(release, tmp_path, how):
    root = tmp_path / "broken"
    shutil.copytree(release, root)
    m2 = root / "train" / "m2"
    if how == "missing folder":
        shutil.rmtree(m2)
        return root, m2
    if how == "different count":
        (m2 / "29.9.png").unlink()
        return root, root / "train" / "m0" / "29.9.png"
    if how == "no label":
        bad = m2 / "7.png"
        (m2 / "7.7.png").rename(bad)
        return root, bad
    if how == "corrupt png":
        bad = m2 / "4.4.png"
        bad.write_bytes(bad.read_bytes()[:40])
        return root, bad
    if how == "no release":
        return tmp_path / "nowhere", tmp_path / "nowhere"


@pytest.mark.parametrize("how", ["missing folder", "different count", "no label", "corrupt png", "no release"])
def test_bad_release_is_one_line_naming_the_file(release, tmp_path, how):
    root, culprit = _broken(release, tmp_path, how)
    with pytest.raises(DataError) as e:
        load_dataset("train", M, dataset="polymnist", data_dir=root, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and str(culprit) in msg, msg
    if how == "different count":
        assert "30 files" in msg and "29 files" in msg


@pytest.mark.slow
def test_bad_release_from_the_shell(release, tmp_path):
    import subprocess
    import sys

    root, culprit = _broken(release, tmp_path, "corrupt png")
    r = subprocess.run([sys.executable, "-m", "model.train", "--dataset", "polymnist", "--data-dir", str(root),
                        "--out-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(culprit) in r.stderr and "not a readable PNG" in r.stderr


def test_the_cache_is_keyed_by_the_files_content(release, tmp_path):
    """Every PNG replaced by its negative, names, sizes and times kept: the new pictures come back, not the cache."""
    root = tmp_path / "copy"
    shutil.copytree(release, root)
    first = load_dataset("test", M, dataset="polymnist", data_dir=root, cache_dir=tmp_path / "cache")
    for png in root.glob("test/m*/*.png"):
        st = png.stat()
        Image.fromarray(255 - np.asarray(Image.open(png))).save(png)
        os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = load_dataset("test", M, dataset="polymnist", data_dir=root, cache_dir=tmp_path / "cache")
    assert torch.equal(again.x, 255 - first.x)
    assert len(list((tmp_path / "cache").glob("polymnist_release_test_*.npz"))) == 2
    assert torch.equal(load_dataset("test", M, dataset="polymnist", data_dir=root, cache_dir=tmp_path / "cache").x,
                       again.x)   # and the new cache is read back
