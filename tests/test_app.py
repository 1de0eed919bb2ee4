"""The app's event functions called directly, with every input kind and every bad input."""
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from helpers_app import EMPTY_SKETCH, ROOT, save_tiny_model, stroke_sketch

EXAMPLE = str(ROOT / "assets/example_7.png")
# source, sketch, upload, modality, n, latent_steps, latent_step_size, data_steps, data_step_size, noise, seed, compare
BASE = dict(source="draw", sketch=None, upload=None, modality=0, n_samples=2, latent_steps=3, latent_step_size=0.03,
            data_steps=4, data_step_size=1.0, noise=True, seed=0, compare=True)


@pytest.fixture(scope="module", autouse=True)
def tiny_app(tmp_path_factory):
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEBM_FPS", "0")
    path = save_tiny_model(tmp_path_factory.mktemp("tiny") / "mebm")
    app.setup(checkpoint=str(path), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    yield path
    app._LOADED.clear()
    mp.undo()


def load(v):
    return np.asarray(Image.open(v)) if isinstance(v, str) and v.endswith(".png") else v


def run(**kw):
    """All yields as dicts, pictures loaded; the last yield (the downloads) folded into the final frame."""
    outs = [dict(zip(app.RUN_OUTPUTS, out)) for out in app.run_chain(*{**BASE, **kw}.values())]
    assert all(is_skip(v) for k, v in outs[-1].items() if k not in ("gif", "png"))
    outs[-2].update(gif=outs[-1]["gif"], png=outs[-1]["png"])
    return [{k: load(v) if k in ("grid", "noise_grid") else v for k, v in o.items()} for o in outs[:-1]]


def is_skip(v):
    return isinstance(v, dict) and v.get("__type__") == "update" and len(v) == 1


def check_final(outs, n_frames, n=2, M=5):
    assert len(outs) == n_frames  # one yield per frame (the last with downloads)
    last = outs[-1]
    rec = last["record"]
    assert len(rec["frames"]) == n_frames and rec["frames"][0].shape == (n, M, 3, 28, 28)
    assert last["grid"].shape[2] == 3 and last["grid"].dtype == np.uint8
    assert Path(last["gif"]).stat().st_size > 0 and Image.open(last["gif"]).n_frames == n_frames
    assert Image.open(last["png"]).size[0] == last["grid"].shape[1]
    assert last["scrub"]["maximum"] == n_frames - 1 and last["scrub"]["interactive"]
    assert "Done" in last["status"]
    table = last["readout"]
    assert len(table) == n and "agree" in table.columns
    return last


def test_draw_upload_example():
    for kw in (dict(source="draw", sketch=stroke_sketch()), dict(source="upload", upload=EXAMPLE),
               dict(source="upload", upload=str(ROOT / "assets/example_paper_2.png"), modality=3)):
        outs = run(**kw)
        last = check_final(outs, 1 + 4 + 5)
        assert outs[0]["input_preview"].shape == (112, 58 * 4, 3)
        titles = last["record"]["titles"]
        assert titles[0].startswith("proposal") and "latent revision · step 3/3" in titles[4]
        assert titles[-1].startswith("data revision on the EBM · step 4/4")
        given = kw.get("modality", 0)
        frames = last["record"]["frames"]
        assert all((f[:, given] == frames[0][:, given]).all() for f in frames)  # observed modality clamped
        assert f"m{given} (given)" in last["readout"].columns


def test_unconditional():
    outs = run(source="unconditional", n_samples=3, sketch=EMPTY_SKETCH)
    last = check_final(outs, 1 + 5, n=3)
    assert last["record"]["observed"] is None and outs[0]["input_preview"] is None
    assert len(last["posterior_plot"]) == 3  # prior log-density of the proposal only (mean, lowest, highest)


def test_streams_plots_and_stages():
    outs = run(source="upload", upload=EXAMPLE)
    assert len(outs[0]["energy_plot"]) > 0 and set(outs[-1]["energy_plot"]["stage"]) == {"proposal", "latent", "data"}
    assert set(outs[-1]["energy_plot"]["chain"]) == set(app.SERIES)
    assert set(outs[-1]["posterior_plot"]["stage"]) == {"proposal", "latent"}
    assert all(o["grid"] is not None and not is_skip(o["grid"]) for o in outs)
    assert "step" in outs[3]["status"]


def test_same_seed_same_frames():
    a = run(source="upload", upload=EXAMPLE, seed=5)[-1]["record"]["frames"]
    b = run(source="upload", upload=EXAMPLE, seed=5)[-1]["record"]["frames"]
    c = run(source="upload", upload=EXAMPLE, seed=6)[-1]["record"]["frames"]
    assert all((x == y).all() for x, y in zip(a, b))
    assert not all((x == y).all() for x, y in zip(a, c))


def test_side_by_side_from_noise():
    last = run(source="upload", upload=EXAMPLE, compare=True)[-1]
    assert last["noise_grid"].shape == last["grid"].shape
    noise = last["record"]["noise"]
    assert noise[0] is None and noise[-1] is not None
    assert "from noise" in last["record"]["noise_titles"][-1]
    off = run(source="upload", upload=EXAMPLE, compare=False)[-1]
    assert is_skip(off["noise_grid"]) and off["record"]["noise"][-1] is None


def test_noise_off_is_deterministic_descent():
    a = run(source="upload", upload=EXAMPLE, noise=False, seed=1)[-1]["record"]["frames"][-1]
    b = run(source="upload", upload=EXAMPLE, noise=False, seed=1)[-1]["record"]["frames"][-1]
    assert (a == b).all()


def test_scrub():
    rec = run(source="upload", upload=EXAMPLE)[-1]["record"]
    grid, noise = app.scrub(2, rec)
    assert (load(grid) == app.render_record(rec, 2)[0]).all()
    assert (load(app.scrub(999, rec)[0]) == app.render_record(rec, len(rec["frames"]) - 1)[0]).all()
    assert (load(app.scrub(-5, rec)[0]) == app.render_record(rec, 0)[0]).all()
    with pytest.raises(gr.Error, match="press Run"):
        app.scrub(0, None)
    with pytest.raises(gr.Error, match="number"):
        app.scrub("x", rec)


def test_diverging_chain_stops_with_message():
    outs = run(source="upload", upload=EXAMPLE, latent_step_size=10.0, latent_steps=50)
    last = outs[-1]
    assert "Stopped" in last["status"] and "latent chain diverged" in last["status"]
    assert len(last["record"]["frames"]) < 1 + 51 + 5 and Path(last["gif"]).exists()


def test_stop_closes_the_chain():
    gen = app.run_chain(*{**BASE, "source": "upload", "upload": EXAMPLE, "data_steps": 50}.values())
    first = next(gen)
    assert first[0] is not None
    gen.close()  # what Gradio's cancel does; must not raise


def test_presets():
    cfg = app.model_config()
    for name in app.presets(cfg):
        ls, lss, ds, dss, noise, watch = app.apply_preset(name)
        assert watch.startswith("**What to watch:**")
        outs = run(source="upload", upload=EXAMPLE, latent_steps=ls, latent_step_size=lss, data_steps=ds,
                   data_step_size=dss, noise=noise)
        assert outs[-1]["status"]
    assert app.apply_preset("No latent revision")[0] == 0
    with pytest.raises(gr.Error, match="Unknown preset"):
        app.apply_preset("nope")


@pytest.mark.parametrize("kw,msg", [
    (dict(source="draw", sketch=None), "empty"),
    (dict(source="draw", sketch=EMPTY_SKETCH), "empty"),
    (dict(source="draw", sketch={"background": None, "layers": [np.zeros((280, 280, 4), np.uint8)],
                                 "composite": np.full((280, 280, 4), 255, np.uint8)}), "blank"),
    (dict(source="upload", upload=None), "No image"),
    (dict(source="upload", upload=np.zeros((64, 64), np.uint8)), "blank"),
    (dict(source="upload", upload=np.full((64, 64, 3), 255, np.uint8)), "blank"),
    (dict(n_samples=0), "between 1 and 16"), (dict(n_samples=17), "between 1 and 16"),
    (dict(n_samples=2.5), "whole number"), (dict(n_samples="abc"), "must be a number"),
    (dict(n_samples=float("nan")), "finite"), (dict(latent_steps=-1), "between 0 and 100"),
    (dict(latent_steps=10 ** 6), "between 0 and 100"), (dict(data_steps=None), "must be a number"),
    (dict(latent_step_size=-0.1), "latent step size"), (dict(data_step_size=1e9), "data step size"),
    (dict(seed=-1), "seed"), (dict(seed=2 ** 40), "seed"), (dict(modality=7), "modality"),
    (dict(modality="x"), "modality"), (dict(source="webcam"), "Input source"),
])
def test_bad_input_messages(kw, msg):
    with pytest.raises(gr.Error, match=msg):
        run(**{"sketch": stroke_sketch(), **kw})


def test_bad_files(tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    with pytest.raises(gr.Error, match="Could not read"):
        run(source="upload", upload=str(bad))
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 5000)).save(huge)
    with pytest.raises(gr.Error, match="too large"):
        run(source="upload", upload=str(huge))
    ink = tmp_path / "ink.png"
    Image.new("RGB", (100, 100), "white").save(ink)
    with pytest.raises(gr.Error, match="blank"):
        run(source="upload", upload=str(ink))
    assert run(source="upload", upload=EXAMPLE)[-1]["status"].startswith("**Done")  # still serving


def test_missing_classifier_and_missing_model(tiny_app, tmp_path):
    try:
        app.setup(checkpoint=str(tiny_app), classifier=str(tmp_path / "no_classifier"), offline=True)
        last = run(source="upload", upload=EXAMPLE)[-1]
        assert "unavailable" in last["readout"].iloc[0, 0] and "unavailable" in last["status"]
        assert "unavailable" in app.weights_banner()
        app.setup(checkpoint=str(tmp_path / "no_model"), offline=True)
        assert "No model loaded" in app.weights_banner()
        with pytest.raises(gr.Error, match="No model checkpoint"):
            run(source="upload", upload=EXAMPLE)
        assert isinstance(app.build_demo(), gr.Blocks)  # the page still builds
    finally:
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)


def test_build_demo_and_modality_strip():
    assert isinstance(app.build_demo(), gr.Blocks)
    strip = app.modality_strip(app.model_config())
    assert strip.shape[1] == (5 * 30 + 2) * 2
    assert len(app.example_paths()) >= 10


def test_live_preview():
    p = app.preview_drawing(stroke_sketch(), 2, 0)
    assert p.shape == (112, 232, 3)
    assert app.preview_drawing(EMPTY_SKETCH, 0, 0) is None  # nothing usable yet: no message mid-drawing
    assert app.preview_upload(EXAMPLE, 0, 0).shape == (112, 232, 3)
    assert app.preview_input("upload", None, EXAMPLE, 99, 0) is None
