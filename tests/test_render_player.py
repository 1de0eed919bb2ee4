"""model/render.py (pictures) and model/player.py (the demo's chain) without Gradio."""
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from model import render
from model.config import ModelConfig
from model.networks import MultimodalEBMVAE, observed_mask
from model.sampler import Sampler
from model.player import ChainPlayer, ChainSettings, Sessions

torch.set_num_threads(1)


def test_model_package_does_not_import_gradio():
    import subprocess
    from pathlib import Path
    code = ("import sys, model.render, model.player, model.train, model.evaluate; "
            "sys.exit(1 if 'gradio' in sys.modules else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_sample_grid_layout_and_dtypes():
    x = torch.zeros(2, 3, 3, 28, 28)
    x[1, 2] = 1.0
    g = render.sample_grid(x)
    assert g.shape == (56, 84, 3) and g.dtype == np.uint8
    assert g[28:, 56:].min() == 255 and g[:28].max() == 0
    assert (render.sample_grid(render.as_uint8(x)) == g).all()       # uint8 in, same picture
    s = render.side_by_side([g, g], gap=4)
    assert s.shape == (56, 172, 3) and (s[:, 84:88] == 255).all()


def test_stage_strip_geometry_blank_and_highlight():
    x = np.random.default_rng(0).integers(0, 255, (3, 5, 3, 28, 28), dtype=np.uint8)
    strip = render.stage_strip([x, x, None], observed=0, shape=(3, 5), highlight=1)
    panel_w = 3 * 29 + 1
    assert strip.shape == (5 * 29 + 1, 3 * panel_w + 2 * 4, 3)
    # samples are columns, modalities rows: cell (modality 2, sample 1) of the first panel
    assert (strip[1 + 2 * 29:1 + 2 * 29 + 28, 1 + 29:1 + 29 + 28] == x[1, 2].transpose(1, 2, 0)).all()
    assert (strip[0, panel_w + 4 + 5] == 255).all()                   # the running stage is framed
    assert (strip[1 + 2 * 29 + 5, 2 * (panel_w + 4) + 5] == 70).all()  # not reached yet: blank cells
    assert tuple(strip[0, 5]) == render.GIVEN                          # the observed row framed in yellow


def test_labelled_strip_png_and_gif(tmp_path):
    x = np.zeros((2, 5, 3, 28, 28), np.uint8)
    pic = render.labelled_strip(["proposal", "EBM data revision"], [x, x], [["energy 0.1"], ["energy 0.0"]], 0)
    assert pic.shape[0] > 5 * 30 * 3 and pic.dtype == np.uint8
    p = tmp_path / "a.png"
    p.write_bytes(render.png_bytes(pic))
    assert (np.asarray(Image.open(p)) == pic).all()                   # lossless
    frames = [render.grid(x + i, f"frame {i}", 0, scale=2) for i in range(4)]
    g = tmp_path / "a.gif"
    g.write_bytes(render.gif_bytes(frames))
    assert Image.open(g).n_frames == 4


@pytest.fixture(scope="module")
def tiny():
    """A sampler of a tiny random model (no ex-post prior)."""
    torch.manual_seed(0)
    return Sampler(MultimodalEBMVAE(ModelConfig(latent_dim=4, width=8, ebm_width=8, ebm_features=16)))


def player(tiny, prior=None, **kw):
    x = torch.rand(1, 5, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    s = ChainSettings(**{"n_samples": 2, "latent_steps": 3, "data_steps": 4, "seed": 3, **kw})
    return ChainPlayer(Sampler(tiny.model, prior), x, observed_mask([1], 5), s)


def test_stream_stages_in_order_and_clamped(tiny):
    p = player(tiny)
    snaps = list(p)
    stages = [s.stage for s in snaps]
    assert stages[0] == "proposal" and stages[-1] == "data"
    order = list(dict.fromkeys(stages))
    assert order[:2] == ["proposal", "latent"] and order[-1] == "data" and set(order) <= {"proposal", "latent",
                                                                                             "ebm_latent", "data"}
    assert snaps[-1].step == 4 and p.finished and p.next() is None
    assert all(s.x.dtype == np.uint8 and (s.x[:, 1] == snaps[0].x[:, 1]).all() for s in snaps)  # observed clamped
    assert snaps[0].update is None and all(s.update >= 0 for s in snaps[1:])
    assert abs(snaps[5].energy_change - (snaps[5].energy.mean() - snaps[4].energy.mean())) < 1e-6
    assert p.stages == order


def test_step_mode_gives_the_streamed_frames(tiny):
    streamed = [s.x for s in player(tiny)]
    p = player(tiny)
    first = p.step(1)
    assert len(first) == 1 and first[0].stage == "proposal"
    stepped = [first[0].x]
    while not p.finished:
        got = p.step(1)
        assert sum(s.step > 0 for s in got) <= 1
        stepped += [s.x for s in got]
    assert len(stepped) == len(streamed) and all((a == b).all() for a, b in zip(stepped, streamed))
    p.reset()                                                        # back to the proposal, same seed
    assert (p.step(1)[0].x == streamed[0]).all() and len(p.step(5)) >= 5


def test_compare_chain_and_unconditional(tiny):
    p = ChainPlayer(tiny, None, None, ChainSettings(n_samples=3, latent_steps=3, data_steps=2, compare=True))
    snaps = list(p)
    assert [s.stage for s in snaps][0] == "proposal" and "latent" not in p.stages
    data = [s for s in snaps if s.stage == "data"]
    assert data[0].noise_x is not None and not (data[0].noise_x == data[0].x).all()
    assert snaps[0].noise_x is None


def test_frames_are_thinned_under_the_byte_cap(tiny):
    x = torch.rand(1, 5, 3, 28, 28)
    s = ChainSettings(n_samples=4, latent_steps=10, data_steps=20, compare=True)
    p = ChainPlayer(tiny, x, observed_mask([0], 5), s, max_bytes=10 * 2 * 4 * 5 * 3 * 28 * 28)  # ~10 frames
    n = len(list(p))
    assert n == 1 + 11 + (tiny.chains.ebm_latent_cond.steps + 1) + 21
    assert p.kept_bytes <= p.max_bytes and len(p.frames) < n
    stages = [f.stage for f in p.frames]
    assert stages[0] == "proposal" and p.frames[-1].step == 20       # first and last frames kept


def test_sessions_are_bounded_and_dropped(tiny):
    store = Sessions(max_sessions=3)
    for i in range(5):
        store.put(f"s{i}", player(tiny))
    assert len(store) == 3 and store.get("s0") is None and store.get("s4") is not None
    store.drop("s4")
    assert store.get("s4") is None and len(store) == 2


def far_prior(dim=4):
    """A one-component mixture at 5·1, far from N(0, I); its draws are counted."""
    from model.prior import GaussianMixture

    prior = GaussianMixture(torch.ones(1), torch.full((1, dim), 5.0), torch.eye(dim)[None])
    prior.drawn, sample = [], prior.sample
    prior.sample = lambda n, generator=None: prior.drawn.append(n) or sample(n, generator)
    return prior


def same(a, b) -> bool:
    """Two runs (players or lists of frames) gave the same pictures, frame for frame."""
    a, b = list(a), list(b)
    return len(a) == len(b) and all((x.x == y.x).all() for x, y in zip(a, b))


def test_ex_post_prior_for_unconditional_chains_only(tiny):
    s = ChainSettings(n_samples=2, latent_steps=3, data_steps=2, seed=4, compare=True)
    standard = list(ChainPlayer(tiny, None, None, s))
    prior = far_prior()
    p = ChainPlayer(Sampler(tiny.model, prior), None, None, s)
    snaps = list(p)
    assert p.prior is prior and prior.drawn == [2]                   # z drawn from the prior, once
    assert not (snaps[0].x == standard[0].x).all()                    # another proposal than N(0, I)'s
    noise = [(a.noise_x, b.noise_x) for a, b in zip(snaps, standard) if a.noise_x is not None]
    assert len(noise) == 3 and all((a == b).all() for a, b in noise)  # the chain from noise does not use z
    assert same(snaps, ChainPlayer(Sampler(tiny.model, prior), None, None, s))  # same seed, same frames
    off = ChainPlayer(Sampler(tiny.model, prior), None, None, ChainSettings(**{**s.__dict__, "ex_post_prior": False}))
    assert off.prior is None and same(off, standard)
    conditioned = player(tiny, prior=prior)
    assert conditioned.prior is None and same(conditioned, player(tiny))
    assert prior.drawn == [2, 2]                                      # drawn only for the unconditional chains


def test_player_counts_the_ebm_latent_steps_of_its_mode():
    """Conditional players run (and count) ebm_latent_cond_steps, unconditional ones ebm_latent_steps."""
    torch.manual_seed(0)
    model = Sampler(MultimodalEBMVAE(ModelConfig.from_dict(dict(latent_dim=4, width=8, ebm_width=8, ebm_features=16,
                                                                ebm_latent_steps=2, ebm_latent_cond_steps=0))))
    s = ChainSettings(n_samples=2, latent_steps=2, data_steps=2)
    cond = ChainPlayer(model, torch.rand(1, 5, 3, 28, 28), observed_mask([0], 5), s)
    list(cond)
    assert "ebm_latent" not in cond.totals and cond.stages == ["proposal", "latent", "data"]
    free = ChainPlayer(model, None, None, s)
    list(free)
    assert free.totals["ebm_latent"] == 2 and free.stages == ["proposal", "ebm_latent", "data"]
