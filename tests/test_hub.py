"""model/hub.py: Hub -> Hub cache -> bundled, exercised with a real huggingface_hub cache, offline."""
import shutil
import time

import pytest
import torch

from helpers_app import save_tiny_model
from model import hub
from model.hub import CheckpointUnavailable, load_model
from model.prior import PRIOR_FILE, GaussianMixture

REPO = "someone/tiny-mebm"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache, src, repo=REPO, commit=COMMIT):
    """The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/<commit>/<files>}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors", PRIOR_FILE, "energy_check.json"):
        if (src / f).is_file():
            shutil.copy(src / f, snap / f)
    return snap


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "mebm")


def test_hub_cache_offline(tmp_path, tiny, monkeypatch):
    make_hub_cache(tmp_path / "hub", tiny)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = load_model(REPO, None, bundled=tmp_path / "none", cache_dir=tmp_path / "hub")
    assert lm.source == "Hub cache" and lm.location == f"{REPO}@main"
    assert any("HF_HUB_OFFLINE" in n for n in lm.notes)
    assert lm.model.config.width == 8
    assert lm.folder is not None and lm.folder.is_dir()   # where the optional files (energy check) are read from


def test_pinned_revision_read_from_cache_first(tmp_path, tiny, monkeypatch):
    make_hub_cache(tmp_path / "hub", tiny)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_download_with_deadline", lambda *a, **k: pytest.fail("network used"))
    lm = load_model(REPO, COMMIT, bundled=tmp_path / "none", cache_dir=tmp_path / "hub", offline=False)
    assert lm.source == "Hub cache" and COMMIT in lm.location


def test_uncached_repo_falls_back_to_bundled(tmp_path, tiny):
    lm = load_model("someone/not-cached", None, bundled=tiny, cache_dir=tmp_path / "hub", offline=True)
    assert lm.source == "bundled"
    assert any("falling back" in n for n in lm.notes)


def test_dead_network_bounded_by_deadline(tmp_path, tiny, monkeypatch):
    def hang(*a, **k):
        time.sleep(30)
    monkeypatch.setattr(hub, "_download", lambda r, rev, c, local_only: hang() if not local_only else
                        (_ for _ in ()).throw(FileNotFoundError("not cached")))
    t0 = time.time()
    lm = load_model(REPO, None, bundled=tiny, cache_dir=tmp_path / "hub", offline=False, timeout=0.5)
    assert time.time() - t0 < 5
    assert lm.source == "bundled"
    assert any("within 0.5 s" in n for n in lm.notes)


def test_network_success_is_labelled_hub(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(hub, "_download", lambda r, rev, c, local_only: (_ for _ in ()).throw(FileNotFoundError())
                        if local_only else tiny)
    lm = load_model(REPO, None, bundled=tmp_path / "none", offline=False)
    assert lm.source == "Hub"


def with_prior(src, dst):
    """A copy of the tiny checkpoint with an ex-post prior beside its weights (its latent is 4-d)."""
    shutil.copytree(src, dst)
    GaussianMixture(torch.tensor([0.5, 0.5]), torch.randn(2, 4), torch.eye(4).expand(2, 4, 4)).save(dst / PRIOR_FILE)
    return dst


def test_the_ex_post_prior_loads_beside_the_weights(tmp_path, tiny, monkeypatch):
    assert load_model(None, None, bundled=tiny).prior is None                   # none there: N(0, I)
    folder = with_prior(tiny, tmp_path / "mebm")
    lm = load_model(None, None, bundled=folder)
    assert lm.prior.n_components == 2 and lm.prior.dim == 4 and any("ex-post prior in use" in n for n in lm.notes)
    make_hub_cache(tmp_path / "hub", folder)                                     # and from the Hub cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = load_model(REPO, None, bundled=tmp_path / "none", cache_dir=tmp_path / "hub")
    assert lm.source == "Hub cache" and lm.prior.n_components == 2


@pytest.mark.parametrize("damage", ["garbage", "wrong size"])
def test_a_bad_prior_file_leaves_the_model_loading(tmp_path, tiny, damage):
    folder = with_prior(tiny, tmp_path / "mebm")
    if damage == "garbage":
        (folder / PRIOR_FILE).write_bytes(b"not a safetensors file")
    else:   # a mixture over another latent size
        GaussianMixture(torch.ones(1), torch.zeros(1, 3), torch.eye(3)[None]).save(folder / PRIOR_FILE)
    lm = load_model(None, None, bundled=folder)
    assert lm.source == "bundled" and lm.model is not None and lm.prior is None
    assert any("ex-post prior" in n and "N(0, I)" in n and "\n" not in n for n in lm.notes)


def test_nothing_anywhere(tmp_path):
    with pytest.raises(CheckpointUnavailable, match="no bundled checkpoint"):
        load_model(None, None, bundled=tmp_path / "missing")


def test_app_reports_hub_cache(tmp_path, tiny, monkeypatch):
    import app

    make_hub_cache(tmp_path / "hub", tiny)
    orig = app.load_model
    monkeypatch.setattr(app, "load_model", lambda *a, **k: orig(*a, cache_dir=tmp_path / "hub", **k))
    try:
        app.setup(checkpoint=str(tmp_path / "none"), repo_id=REPO, offline=True)
        assert "Hub cache" in app.weights_banner() and REPO in app.weights_banner()
        app.setup(checkpoint=str(tiny), repo_id="someone/other", offline=True)
        assert "bundled" in app.weights_banner()
    finally:
        app._LOADED.clear()


def test_bundled_checkpoint_is_found_from_any_folder(tmp_path, monkeypatch):
    from model.hub import bundled_checkpoint
    from model.networks import MultimodalEBMVAE

    monkeypatch.chdir(tmp_path)
    path = bundled_checkpoint()
    assert path.is_absolute() and (path / "config.json").is_file()
    assert MultimodalEBMVAE.from_pretrained(path, strict=True).config.n_modalities == 5
