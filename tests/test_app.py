"""The app's event functions called directly, with every input kind and every bad input."""
import urllib.parse
import warnings
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from demo import texts
from demo.share import share_link
from demo.view import agreement
from helpers_app import EMPTY_SKETCH, ROOT, save_tiny_model, stroke_sketch

EXAMPLE = str(ROOT / "assets/example_7.png")
# source, sketch, upload, modality, n, latent_steps, latent_step_size, data_steps, data_step_size, noise, seed,
# compare, link_digit, ex_post_prior
BASE = dict(source="draw", sketch=None, upload=None, modality=0, n_samples=2, latent_steps=3, latent_step_size=0.03,
            data_steps=4, data_step_size=1.0, noise=True, seed=0, compare=False, link_digit="", ex_post_prior=True)


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


def req(name="s1"):
    return SimpleNamespace(session_hash=name, query_params={})


def args(**kw):
    return list({**BASE, **kw}.values())


PAGES: dict = {}   # session -> what its page shows (see ``page``)


def run(request=None, **kw):
    """All yields as dicts (outputs by name); what the visitor's page then shows: ``page(session)``."""
    request = request or req()
    outs = [dict(zip(app.RUN_OUTPUTS, out)) for out in app.run_chain(*args(**kw), request=request)]
    fold(PAGES.setdefault(request.session_hash, {}), outs)
    return outs


def fold(shown: dict, outs) -> dict:
    """What a page shows after the updates ``outs``, as Gradio's page applies them: each output's last value sent
    (under "value") and its props (visible, title, ...) as last set; a skipped output stays as it was."""
    for out in outs:
        for k, v in out.items():
            if is_skip(v):
                continue
            props = {a: b for a, b in v.items() if a != "__type__"} if is_update(v) else {"value": v}
            shown[k] = {**shown.get(k, {}), **props}
    return shown


def page(name="s1") -> dict:
    return PAGES[name]


def chain(name="s1"):
    """The chain kept for a visitor (the run's model.player.ChainPlayer)."""
    return app.SESSIONS.get(name).player


def is_update(v):
    return isinstance(v, dict) and v.get("__type__") == "update"


def is_skip(v):
    return is_update(v) and len(v) == 1


def value(v):
    return v["value"] if isinstance(v, dict) and "value" in v else v


def test_draw_upload_example_stream_the_stages():
    for kw in (dict(source="draw", sketch=stroke_sketch()), dict(source="upload", upload=EXAMPLE),
               dict(source="upload", upload=str(ROOT / "assets/example_paper_2.png"), modality=3)):
        outs = run(**kw)
        # at most one yield per frame, then the final picture (a page that reads slower than the chain's rounds
        # gets the frames made meanwhile together: fewer yields, never fewer frames)
        assert 3 <= len(outs) <= 1 + 4 + 5 + 1 and len(app.SESSIONS.get("s1").player.frames) == 1 + 4 + 5
        assert outs[0]["input_preview"].shape == (28, 58, 3)
        last = outs[-1]
        assert "Done" in last["status"] and "10 frames" in last["status"]
        assert last["grid"].dtype == np.uint8 and last["grid"].shape == (5 * 29 + 1, 3 * (2 * 29 + 1) + 8, 3)
        for stage in ("proposal", "latent revision · step 3/3", "EBM data revision · step 4/4", "energy", "agree"):
            assert stage in last["captions"]
        shown = page()   # the figures as the page shows them: those unchanged since they were sent are not sent again
        assert value(shown["scrub"]) == 9 and shown["scrub"]["interactive"]
        assert "share_link" in last["share"]
        assert "agree" in value(shown["readout"]).columns
        given = kw.get("modality", 0)
        player = chain("s1")
        assert all((f.x[:, given] == player.frames[0].x[:, given]).all() for f in player.frames)  # clamped


def test_stages_are_shown_by_name_running_one_marked():
    outs = run(source="upload", upload=EXAMPLE)
    assert "cap running" in outs[2]["captions"] and "not reached yet" in outs[2]["captions"]
    assert outs[-1]["captions"].count("not reached yet") == 0
    stages = chain("s1").stages
    assert stages[0] == "proposal" and stages[-1] == "data"
    for st in stages:                                   # whatever stages ran (ebm_latent too), each has a caption
        assert app.stage_title(st) in outs[-1]["captions"]


def test_plots_agreement_and_readout():
    run(source="upload", upload=EXAMPLE)
    last = page()
    energy, post, agree = (value(last[k]) for k in ("energy_plot", "posterior_plot", "agreement_plot"))
    assert set(energy["chain"]) == {"mean", "lowest", "highest"} and set(energy["stage"]) >= {"proposal", "data"}
    assert set(post["stage"]) == {"proposal", "latent"}
    stages = chain("s1").stages
    assert list(agree["stage"]) == [f"{i + 1}. {texts.SHORT[s]}" for i, s in enumerate(stages)]
    assert agree["agreement"].between(0, 100).all()
    assert all(last[k]["visible"] for k in ("energy_plot", "posterior_plot", "agreement_plot", "readout"))


def test_agreement_definitions():
    digits = np.array([[7, 7, 7, 1, 7], [7, 2, 7, 7, 7]])
    pred = (digits, np.ones_like(digits, float))
    assert agreement(pred, 0) == pytest.approx(6 / 8)        # generated images read as the input's digit
    assert agreement(pred, None) == 0.0                      # no sample has one digit everywhere
    assert agreement((np.array([[3, 3, 3, 3, 3], [1, 2, 1, 1, 1]]), None), None) == 0.5
    assert agreement(None, 0) is None


def test_unconditional_shows_joint_agreement():
    outs = run(source="unconditional", n_samples=3, sketch=EMPTY_SKETCH)
    last = outs[-1]
    assert outs[0]["input_preview"] is None or is_skip(outs[0]["input_preview"])
    assert "latent" not in chain("s1").stages
    assert "show one digit in every modality" in last["status"]
    assert "z ~ N(0, I)" in last["status"]                       # the tiny checkpoint has no ex-post prior
    agree = value(page()["agreement_plot"])
    assert list(agree["stage"])[0] == "1. proposal" and len(agree) == len(chain("s1").stages)


def test_same_seed_same_frames_and_step_mode_matches_stream():
    kw = dict(source="upload", upload=EXAMPLE, seed=5)
    run(request=req("a"), **kw)
    run(request=req("b"), **kw)
    a, b = [f.x for f in chain("a").frames], [f.x for f in chain("b").frames]
    assert all((x == y).all() for x, y in zip(a, b))
    run(request=req("c"), **{**kw, "seed": 6})
    assert not all((x == y).all() for x, y in zip(a, [f.x for f in chain("c").frames]))
    # step mode: the first press shows the proposal, each press one Langevin step, the same frames
    r = req("step")
    out = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *args(**kw), request=r)))
    assert "proposal" in out["status"] and (chain("step").current.x == a[0]).all()
    out = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *args(**kw), request=r)))
    assert "latent revision, step 1/3" in out["status"] and "moved by" in out["status"] and "Δ" in out["status"]
    out = dict(zip(app.RUN_OUTPUTS, app.step_chain(5, *args(**kw), request=r)))  # 2 latent + 3 data steps
    p = chain("step")
    assert p.current.stage == "data" and p.current.step == 3 and "5 steps" in out["status"]
    app.step_chain(5, *args(**kw), request=r)
    out = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *args(**kw), request=r)))
    assert "has ended" in out["status"]
    stepped = [f.x for f in p.frames]
    assert len(stepped) == len(a) and all((x == y).all() for x, y in zip(stepped, a))
    out = dict(zip(app.RUN_OUTPUTS, app.reset_chain(*args(**kw), request=r)))
    assert "Reset" in out["status"] and (chain("step").current.x == a[0]).all()
    out = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *args(**{**kw, "seed": 9}), request=r)))
    assert "New chain" in out["status"]                     # other settings: a new chain, from its proposal


def test_side_by_side_from_noise():
    outs = run(source="upload", upload=EXAMPLE, compare=True)
    pics = [o["noise_grid"] for o in outs if isinstance(o["noise_grid"], np.ndarray)]
    assert pics and pics[-1].shape == (5 * 29 + 1, 2 * 29 + 1, 3)
    off = run(source="upload", upload=EXAMPLE, compare=False)
    assert all(is_skip(o["noise_grid"]) for o in off)


def test_scrub_and_downloads():
    run(source="upload", upload=EXAMPLE)
    player = chain("s1")
    grid, caps, _ = app.scrub(2, request=req())
    assert grid.shape == (5 * 29 + 1, 3 * (2 * 29 + 1) + 8, 3) and "latent revision · step 1/3" in caps
    assert "not reached yet" in caps                                 # as the run stood then
    assert "step 4/4" in app.scrub(999, request=req())[1]
    assert "proposal" in app.scrub(-5, request=req())[1]
    with pytest.raises(gr.Error, match="press Run"):
        app.scrub(0, request=req("nobody"))
    with pytest.raises(gr.Error, match="number"):
        app.scrub("x", request=req())
    links = app.downloads(request=req())
    assert 'download="mebm_chain_seed0.gif"' in links and "data:image/gif;base64," in links
    assert "data:image/png;base64," in links and len(player.frames) == 10


def test_share_link_round_trip():
    run(source="draw", sketch=stroke_sketch(), modality=2, seed=11, data_steps=3)
    link = share_link(app.SESSIONS.get("s1"))
    q = dict(urllib.parse.parse_qsl(link[1:]))
    assert q["src"] == "link" and q["m"] == "2" and q["seed"] == "11" and len(link) < 1200
    restored = app.restore(SimpleNamespace(session_hash="r", query_params=q))
    assert restored[0] == "link" and restored[1] == 2 and restored[8] == 11 and "restored" in restored[-1]
    source, modality, n, ls, lss, ds, dss, noise, seed, compare, digit, _, _ = restored
    run(request=req("r"), source=source, modality=modality, n_samples=n, latent_steps=ls, latent_step_size=lss,
        data_steps=ds, data_step_size=dss, noise=noise, seed=seed, compare=compare, link_digit=digit)
    a, b = chain("s1").frames, chain("r").frames
    assert len(a) == len(b) and all((x.x == y.x).all() for x, y in zip(a, b))
    unc = app.restore(SimpleNamespace(query_params={"src": "unconditional", "seed": "3", "n": "4"}))
    assert unc[0] == "unconditional" and unc[2] == 4
    bad = app.restore(SimpleNamespace(query_params={"src": "link", "d": "garbage", "seed": "1"}))
    assert "could not be restored" in bad[-1] and "damaged" in bad[-1]
    assert all(is_skip(v) for v in app.restore(SimpleNamespace(query_params={})))


def test_diverging_chain_stops_with_message():
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no toast (gr.Warning) over the buttons: the message is in the status
        outs = run(source="upload", upload=EXAMPLE, latent_step_size=10.0, latent_steps=50)
    assert "Stopped" in outs[-1]["status"] and "latent chain diverged" in outs[-1]["status"]
    assert len(chain("s1").frames) < 1 + 51 + 5


def test_stop_closes_the_chain():
    gen = app.run_chain(*args(source="upload", upload=EXAMPLE, data_steps=50), request=req("stop"))
    assert next(gen)[0] is not None
    gen.close()  # what Gradio's cancel does; must not raise, and frees the chain's lock
    assert chain("stop").lock.acquire(blocking=False)


def test_presets(tiny_app):
    """Each classroom preset does what its text promises, seen in the frames the shipped checkpoint produces
    (a random model's energy is flat whatever the step size)."""
    app.setup(checkpoint=str(ROOT / "checkpoints/mebm"), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    try:
        effects, traces = {}, {}
        for name in app.presets(app.model_config()):
            ls, lss, ds, dss, noise, watch = app.apply_preset(name)
            assert watch.startswith("**What to watch:**") and len(watch) > 40
            outs = run(request=req(name), source="upload", upload=EXAMPLE, latent_steps=ls, latent_step_size=lss,
                       data_steps=min(ds, 8), data_step_size=dss, noise=noise)
            frames = chain(name).frames
            data = [f.energy.mean() for f in frames if f.stage == "data"]
            effects[name] = outs[-1]["status"], [f.stage for f in frames], data[0] - data[-1] if data else None
            traces[name] = outs[-1]["trace_plot"]
    finally:
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    status, stages, drop = effects["Default"]
    assert status.startswith("<b>Done:</b>") and stages[:2] == ["proposal", "latent"] and stages[-1] == "data"
    assert drop > 1.0                                                  # the data revision lowers the energy
    status, stages, _ = effects["Step size too large"]
    assert "Stopped" in status and "diverged" in status              # it blows up and says so, in the status
    assert stages.count("latent") > 10, stages                        # ... after frames a class can watch
    trace = value(traces["Step size too large"])
    latent = trace[trace["stage"] == "latent"]["change"]
    assert latent.max() > 1000                                        # -log posterior shot up (measured: +2800)
    status, stages, small_drop = effects["Step size too small"]
    assert status.startswith("<b>Done:</b>") and "latent" in stages and abs(small_drop) < drop / 5   # flat energy
    status, stages, no_latent_drop = effects["No latent revision"]
    assert status.startswith("<b>Done:</b>") and "latent" not in stages and no_latent_drop > 1.0   # straight to the EBM
    with pytest.raises(gr.Error, match="Unknown preset"):
        app.apply_preset("nope")


@pytest.mark.parametrize("kw,msg", [
    (dict(source="draw", sketch=None), "empty"),
    (dict(source="draw", sketch=EMPTY_SKETCH), "empty"),
    (dict(source="draw", sketch={"background": None, "layers": [np.zeros((280, 280, 4), np.uint8)],
                                 "composite": np.full((280, 280, 4), 255, np.uint8)}), "blank"),
    (dict(source="upload", upload=None), "No image"),
    (dict(source="upload", upload=np.zeros((64, 64), np.uint8)), "blank"),
    (dict(source="link", link_digit="not a digit"), "damaged"),
    (dict(n_samples=0), "between 1 and 16"), (dict(n_samples=17), "between 1 and 16"),
    (dict(n_samples=2.5), "whole number"), (dict(n_samples="abc"), "must be a number"),
    (dict(n_samples="nan"), "finite"), (dict(n_samples=float("nan")), "finite"), (dict(latent_steps=-1), "between 0"),
    (dict(latent_steps=10 ** 6), "between 0 and 100"), (dict(data_steps=None), "must be a number"),
    (dict(latent_step_size=-0.1), "latent step size"), (dict(data_step_size=1e9), "data step size"),
    (dict(data_step_size="inf"), "finite"), (dict(seed=-1), "seed"), (dict(seed=2 ** 40), "seed"),
    (dict(modality=7), "modality"), (dict(modality="x"), "modality"), (dict(source="webcam"), "Input source"),
    (dict(noise="maybe"), "true or false"), (dict(ex_post_prior="maybe"), "'ex_post_prior' must be true or false"),
    (dict(ex_post_prior=None), "'ex_post_prior' must be true or false"),
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
    assert run(source="upload", upload=EXAMPLE)[-1]["status"].startswith("<b>Done")  # still serving


def test_missing_classifier_missing_model_and_mismatched_checkpoint(tiny_app, tmp_path):
    try:
        app.setup(checkpoint=str(tiny_app), classifier=str(tmp_path / "no_classifier"), offline=True)
        last = run(source="upload", upload=EXAMPLE)[-1]
        assert "unavailable" in value(page()["readout"]).iloc[0, 0] and "unavailable" in last["status"]
        assert "unavailable" in app.weights_banner()
        app.setup(checkpoint=str(tmp_path / "no_model"), offline=True)
        assert "No model loaded" in app.weights_banner()
        with pytest.raises(gr.Error, match="No model checkpoint"):
            run(source="upload", upload=EXAMPLE)
        assert isinstance(app.build_demo(), gr.Blocks)  # the page still builds
        # a checkpoint whose shapes do not match its config: one line, no state-dict dump, no server path
        import json
        import shutil
        odd = tmp_path / "odd"
        shutil.copytree(tiny_app, odd)
        cfg = json.loads((odd / "config.json").read_text())
        cfg.get("config", cfg)["width"] = 16
        (odd / "config.json").write_text(json.dumps(cfg))
        app.setup(checkpoint=str(odd), offline=True)
        banner = app.weights_banner()
        assert "No model loaded" in banner and "\n" not in banner and len(banner) < 500
        assert str(tmp_path) not in banner and "/" + str(tmp_path).split("/")[1] + "/" not in banner
    finally:
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)


def test_one_line_messages_hide_server_paths():
    msg = app.one_line(f"Error(s) in loading state_dict at {app.ROOT}/checkpoints/mebm/model.safetensors:\n"
                       "size mismatch for x: copying a param with shape ...\n" * 50)
    assert "\n" not in msg and str(app.ROOT) not in msg and len(msg) <= 240
    assert app.one_line("failed at /home/someone/secret/dir/file.bin") == "failed at file.bin"


def test_build_demo_first_picture_and_modality_strip():
    assert isinstance(app.build_demo(), gr.Blocks)
    pic, caps = app.first_picture(app.model_config())
    assert pic.shape == (5 * 29 + 1, 3 * (3 * 29 + 1) + 8, 3) and "press Run" in caps and "proposal" in caps
    assert app.modality_strip(app.model_config()).shape[1] == (5 * 30 + 2) * 2
    assert len(app.example_paths()) >= 10
    assert "bundled checkpoint" in app.weights_banner() and str(ROOT) not in app.weights_banner()


def prior_box():
    demo = app.build_demo()
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "ex_post_prior")


def test_ex_post_prior_of_the_shipped_checkpoint(tiny_app):
    """The shipped checkpoint carries its ex-post prior: unconditional runs draw z from it unless the box is
    off; the final status says which, and the share link keeps the choice. A checkpoint without one: N(0, I)."""
    app.setup(checkpoint=str(ROOT / "checkpoints/mebm"), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    try:
        box = prior_box()
        assert box.value is True and box.interactive and "ex-post prior (a 20-component mixture" in box.label
        kw = dict(source="unconditional", sketch=EMPTY_SKETCH, data_steps=2, seed=1)
        on, off = run(request=req("pp1"), **kw)[-1], run(request=req("pp0"), **{**kw, "ex_post_prior": False})[-1]
        assert "z from the ex-post prior" in on["status"] and "z ~ N(0, I)" in off["status"]
        assert on["grid"].shape == off["grid"].shape and not (on["grid"] == off["grid"]).all()
        for key, flag in (("pp1", True), ("pp0", False)):
            q = dict(urllib.parse.parse_qsl(share_link(app.SESSIONS.get(key))[1:]))
            assert q["pp"] == str(int(flag)) and app.restore(SimpleNamespace(query_params=q))[11] is flag
        first = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *args(**kw), request=req("pps"))))
        assert "the proposal (z from the ex-post prior)" in first["status"]
    finally:
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    box = prior_box()                                     # the tiny checkpoint has none: shown, not offered
    assert box.value is False and not box.interactive and "no ex-post prior" in box.label
    assert app.restore(SimpleNamespace(query_params={"src": "unconditional", "seed": "1", "pp": "1"}))[11] is False


def test_a_new_stage_is_shown_by_name(monkeypatch):
    """A sampler with a stage between the latent and the data revision (the EBM's latent chain): the page
    shows it in order, with its steps, without knowing it in advance."""
    import model.sampler as mp   # the player runs the sampler's chain
    from model.langevin import Frame

    real = mp.conditional_sampling

    def with_ebm_latent(model, x_obs, observed, **kw):
        for f in real(model, x_obs, observed, **kw):
            if f.stage == "data" and f.step == 0 and kw.get("data_init", "generator") == "generator":
                for k in range(3):
                    yield Frame("ebm_latent", k, f.x, f.energy, None)
            yield f

    monkeypatch.setattr(mp, "conditional_sampling", with_ebm_latent)
    monkeypatch.setitem(app._LOADED, "scheduler", None)   # the player's own chain (the scheduler has no such stage)
    outs = run(source="upload", upload=EXAMPLE)
    assert chain("s1").stages == ["proposal", "latent", "ebm_latent", "data"]
    caps = outs[-1]["captions"]
    assert caps.index("latent revision · step 3/3") < caps.index("EBM latent revision · step 2/2") < \
        caps.index("EBM data revision · step 4/4")
    assert outs[-1]["grid"].shape[1] == 4 * (2 * 29 + 1) + 3 * 4
    assert list(value(page()["agreement_plot"])["stage"])[2] == "3. EBM latent"


def test_the_real_ebm_latent_stage_runs_from_the_checkpoint_config(tmp_path, tiny_app):
    """A checkpoint whose config asks for the EBM's latent revision in conditional generation
    (ebm_latent_cond_steps): the real sampler runs it, between the latent and the data revision, with the
    observed modality clamped."""
    path = save_tiny_model(tmp_path / "mebm", ebm_latent_cond_steps=2)
    app.setup(checkpoint=str(path), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    try:
        outs = run(source="upload", upload=EXAMPLE, request=req("s-ebm"))
        player = chain("s-ebm")
        assert player.stages == ["proposal", "latent", "ebm_latent", "data"]
        assert "EBM latent revision · step 2/2" in outs[-1]["captions"]
        assert all((f.x[:, 0] == player.frames[0].x[:, 0]).all() for f in player.frames)  # clamped throughout
    finally:
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)


def test_device_flag_is_checked_before_anything_loads(capsys):
    with pytest.raises(SystemExit) as e:
        app.main(["--device", "tpu"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown device") and "\n" not in err and "Traceback" not in err


# ---------------------------------------------------------------- hostile input, limits and messages

def test_share_link_decoder_is_bounded():
    """A zlib bomb in a share link (1.4 MB that inflate to 1 GiB) is refused without inflating it: the peak
    memory of this process does not move; digits round-trip; anything else is 'damaged'."""
    import base64
    import resource
    import zlib

    from model.preprocess import InputError, decode_digit, encode_digit
    z = zlib.compressobj(9)
    bomb = base64.urlsafe_b64encode(b"".join(z.compress(b"\0" * 2 ** 20) for _ in range(1024)) + z.flush()).decode()
    small_bomb = base64.urlsafe_b64encode(zlib.compress(b"\0" * 500_000, 9)).decode()  # within the length cap
    digit = np.arange(784, dtype=np.uint8).reshape(28, 28)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trailing = base64.urlsafe_b64encode(base64.urlsafe_b64decode(encode_digit(digit)) + b"junk").decode()
    for bad in (bomb, small_bomb, trailing, "é" * 10, None, 123, ["x"], "", "not a digit"):
        with pytest.raises(InputError, match="damaged"):
            decode_digit(bad)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak < 100
    assert (decode_digit(encode_digit(digit)) == digit).all()
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)   # incompressible: the longest link
    assert (decode_digit(encode_digit(noise)) == noise).all()


@pytest.mark.parametrize("m", ["**Server notice:** your session expired, [log in again](https://evil.example?next=x)",
                               "![](http://evil.example?victim=1)", "<img src=http://evil.example/x.png>",
                               "x www.evil.example user@evil.example `code` $$x$$"])
def test_a_visitors_text_is_never_markdown_or_html(m):
    """A rejected value is quoted in the status (HTML) as plain text: no tag of it, no Markdown rendering."""
    import re
    status = app.restore(SimpleNamespace(session_hash="r", query_params={"src": "unconditional", "seed": "1", "m": m}))
    status = status[-1]
    assert status.startswith("<b>This shared link could not be restored:</b> ")
    quoted = status.split(":</b> ", 1)[1]
    assert not re.search(r"[<>]", quoted), quoted                       # < and > as HTML entities: no tag
    with pytest.raises(gr.Error) as e:                                  # the error popup (HTML): escaped as well
        run(modality=m, sketch=stroke_sketch())
    assert "<" not in e.value.message and "(got '" in e.value.message and len(e.value.message) < 100


def test_rejected_values_are_one_log_line_and_no_traceback(caplog):
    with caplog.at_level("INFO", logger="mebm.app"):
        with pytest.raises(gr.Error) as e:
            run(n_samples="abc", sketch=stroke_sketch())
    assert e.value.print_exception is False            # Gradio prints no traceback for it
    lines = [r.getMessage() for r in caplog.records if r.name == "mebm.app"]
    assert lines == ["rejected: 'n samples' must be a number (got 'abc')."]


def test_messages_print_whole_numbers_and_accept_documented_modalities():
    with pytest.raises(gr.Error, match=r"'seed' must be between 0 and 2147483647 \(got 2147483648\)"):
        run(seed=2 ** 31, sketch=stroke_sketch())
    with pytest.raises(gr.Error, match=r"whole number \(got 2.5\)"):
        run(n_samples=2.5, sketch=stroke_sketch())
    for m in ("0", "4", 1, 2.0, np.int64(3)):
        assert run(modality=m, sketch=stroke_sketch())[-1]["status"].startswith("<b>Done")
    for m in ("1.5", True, "5", [1], None):
        with pytest.raises(gr.Error, match="modality between 0 and 4"):
            run(modality=m, sketch=stroke_sketch())


def test_scrub_bad_values_are_the_apps_message():
    run(source="upload", upload=EXAMPLE)
    for bad in ("nan", "inf", float("inf"), None, "abc", [1], {"a": 1}):
        with pytest.raises(gr.Error, match="'frame' must be a (finite )?number"):
            app.scrub(bad, request=req())
    assert "step 4/4" in app.scrub("1e9", request=req())[1]


def test_drawings_are_size_checked_before_decoding(tmp_path):
    """Gradio's Sketchpad decodes every layer it is sent; the app's checks the headers first (a 353 kB PNG can
    hold 9380x9380 pixels: 350 MB decoded) and the number of images."""
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from helpers_app import blank_png
    huge = FileData(path=str(blank_png(tmp_path / "huge.png", 3000, 3000)))
    small = FileData(path=str(blank_png(tmp_path / "small.png", 280, 280)))
    pad = app.Sketchpad(type="numpy")
    for payload, msg in ((EditorData(background=None, layers=[huge], composite=small), "too large .3000x3000"),
                         (EditorData(background=small, layers=[small] * 5, composite=small), "7 images")):
        with pytest.raises(gr.Error, match=msg):
            pad.preprocess(payload)
    out = pad.preprocess(EditorData(background=None, layers=[small], composite=small))
    assert out["layers"][0].shape == (280, 280, 4)
    big = {"background": None, "layers": [np.zeros((1000, 1000, 4), np.uint8)] * 2,
           "composite": np.zeros((1000, 1000, 4), np.uint8)}     # in memory: checked from the shapes
    with pytest.raises(gr.Error, match="drawing is too large"):
        run(sketch=big)


def test_every_chain_event_declares_the_same_concurrency_limit(monkeypatch):
    """Gradio lowers a concurrency group's limit to the lowest one pushed into it: a Step, Reset or download
    (the default limit, 4) once cut the runs at once from 32 to 4 for good. Now every member declares it."""
    monkeypatch.setenv("MEBM_CONCURRENCY", "32")
    demo = app.build_demo()
    demo.queue(default_concurrency_limit=4)             # as app.main does
    group = [fn for fn in demo.fns.values() if fn.concurrency_id == "chain"]
    assert {"run_chain", "step_chain", "reset_chain", "downloads"} <= {fn.name for fn in group}
    queue = demo._queue
    for fn in sorted(group, key=lambda f: f.name != "run_chain"):     # a Run, then Steps, Resets, downloads
        queue.create_event_queue_for_fn(fn)
        assert queue.event_queue_per_concurrency_id["chain"].concurrency_limit == 32, fn.name


def test_reset_is_keyed_by_the_visitors_session():
    kw = dict(source="upload", upload=EXAMPLE, seed=5)
    app.step_chain(1, *args(**kw), request=req("alice"))
    app.step_chain(1, *args(**kw), request=req("alice"))
    alice = chain("alice")
    app.reset_chain(*args(**kw), request=req("bob"))
    assert chain("alice") is alice and alice.current.step == 1     # Bob's Reset left Alice's chain
    assert app.SESSIONS.get("bob") is not None and app.SESSIONS.get("local") is None


def test_freed_memory_is_handed_back_after_runs_and_when_visitors_leave(monkeypatch):
    from model.serving import trim_heap
    calls = []
    monkeypatch.setattr(app, "trim_heap", lambda interval=0: calls.append(interval))
    run(source="upload", upload=EXAMPLE)
    app.forget(request=req())
    assert len(calls) == 2 and app.SESSIONS.get("s1") is None
    import platform
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert trim_heap() is True and trim_heap(3600) is False        # at most once per interval


def test_launch_keeps_few_page_states_and_guards_long_addresses():
    """Gradio keeps each visitor's page state (10,000 by default): the app keeps 64, so memory levels off over
    a term of visitors (benchmarks/soak_sessions.py: flat over 400 sessions, +0.30 MB per session before)."""
    opts = app.launch_options()
    assert opts["state_session_capacity"] == app.SESSION_STATES <= 2 * app.SESSIONS.max_sessions
    (guard,) = opts["app_kwargs"]["middleware"]
    assert guard.cls.__name__ == "URLLengthLimit" and guard.kwargs["limit"] == app.MAX_URL_BYTES


def test_upload_sweeper_bounds_the_folder(tmp_path):
    """Empty leftovers and directories go, the oldest uploads go until the budget holds, files younger than
    min_age and the page's own files (keep) stay."""
    import os
    import time

    from model.serving import UploadSweeper
    old, now = time.time() - 100, time.time()

    def put(name, size, when):
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x" * size)
        os.utime(p, (when, when))
        return p

    example = put("e1/example_7.png", 5000, old - 10_000)
    empty = put("tmpabc", 0, old)
    oldest, older, young = put("a/up1.png", 4000, old - 50), put("b/up2.png", 4000, old), put("c/up3.png", 4000, now)
    (tmp_path / "d").mkdir()
    for d in ("a", "b", "d", "e1"):
        os.utime(tmp_path / d, (old, old))
    sweeper = UploadSweeper(tmp_path, max_bytes=8000, min_age=10, max_age=10_000, keep=[example])
    left = sweeper.sweep()
    assert not empty.exists() and not oldest.exists() and older.exists() and young.exists() and example.exists()
    assert not (tmp_path / "d").exists() and left["bytes"] == 8000
    assert sweeper.files() and str(example) in sweeper.files()


# ---------------------------------------------------------------- hosting: ZeroGPU and the device

def fake_spaces(calls):
    """A stand-in for the ``spaces`` package: GPU(duration=...) wraps a generator function and counts its calls."""
    import types

    def GPU(duration=None):
        def wrap(fn):
            calls.append(("decorated", fn.__name__, duration))

            def held(*a, **kw):
                calls.append(("call", a[3:]))
                yield from fn(*a, **kw)
            return held
        return wrap
    return types.SimpleNamespace(GPU=GPU)


def test_zerogpu_runs_the_chain_in_a_gpu_function_with_the_same_frames(tiny_app, monkeypatch):
    """On ZeroGPU (SPACES_ZERO_GPU) setup decorates the chain's work with spaces.GPU(duration=...), and Run, Step
    and Reset compute through it: the same frames as without ZeroGPU (same seed). Elsewhere nothing is wrapped."""
    calls = []
    monkeypatch.setitem(__import__("sys").modules, "spaces", fake_spaces(calls))
    run(request=req("zg"), source="upload", upload=EXAMPLE)
    local_frames = [f.x for f in chain("zg").frames]
    assert app.loaded()["chain_work"] is None and calls == []
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("MEBM_GPU_SECONDS", "15")
    try:
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
        assert calls == [("decorated", "chain_work", 15)]
        outs = run(request=req("zg"), source="upload", upload=EXAMPLE)
        assert len(outs) == len(local_frames) + 1 and "Done" in outs[-1]["status"]   # alone: every frame shown
        assert calls[1] == ("call", (0, None))
        player = chain("zg")
        assert player.finished and len(player.frames) == len(local_frames)
        assert all((a == b).all() for a, b in zip(local_frames, (f.x for f in player.frames)))
        kw = {**BASE, "source": "upload", "upload": EXAMPLE}
        app.reset_chain(*args(**kw), request=req("zg"))
        assert calls[-1] == ("call", (0, 1)) and chain("zg").current.index == 0
        app.step_chain(3, *args(**kw), request=req("zg"))
        assert calls[-1] == ("call", (1, 3))
        stepped = chain("zg")
        # the proposal, then the latent stage's step 0 (the same state) with steps 1-3
        assert stepped.current.index == 4 and (stepped.current.x == local_frames[4]).all()
    finally:
        monkeypatch.delenv("SPACES_ZERO_GPU")
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    assert app.loaded()["chain_work"] is None


def test_a_diverged_chain_crosses_a_process_boundary_whole():
    """A ZeroGPU call runs in a process of its own: ChainDiverged is pickled back with its message."""
    import pickle
    e = pickle.loads(pickle.dumps(app.ChainDiverged("data", 3, "non-finite values")))
    assert isinstance(e, app.ChainDiverged) and (e.stage, e.step) == ("data", 3) and "step 3 (non-finite" in str(e)


def test_zerogpu_without_the_spaces_package_runs_here(monkeypatch):
    from demo.zerogpu import gpu_function, on_zerogpu
    monkeypatch.setitem(__import__("sys").modules, "spaces", None)   # import spaces -> ImportError
    assert on_zerogpu({"SPACES_ZERO_GPU": "True"}) and not on_zerogpu({}) and not on_zerogpu({"SPACES_ZERO_GPU": "0"})
    assert gpu_function(app.chain_work, 20, {"SPACES_ZERO_GPU": "1"}) is None


def test_device_defaults_to_auto(monkeypatch):
    seen = []

    def resolve(name):
        seen.append(name)
        raise app.DeviceError("stop here")
    monkeypatch.delenv("MEBM_DEVICE", raising=False)
    monkeypatch.setattr(app, "resolve_device", resolve)
    with pytest.raises(SystemExit):
        app.main([])
    assert seen == ["auto"]


def test_runs_at_once_are_batched_and_give_each_visitor_its_own_frames(monkeypatch):
    """Two visitors' Runs streamed at the same time go through the scheduler (one batch) and each gets the frames
    its run has alone, computed without the scheduler (same seed, same uint8 frames); Stop (closing one stream)
    takes that chain out of the scheduler and lets the other finish."""
    kws = [dict(source="upload", upload=EXAMPLE, seed=1), dict(source="unconditional", seed=2, n_samples=3),
           dict(source="upload", upload=EXAMPLE, seed=3, modality=2)]
    with monkeypatch.context() as m:
        m.setitem(app._LOADED, "scheduler", None)
        alone = []
        for i, kw in enumerate(kws):
            run(request=req(f"alone{i}"), **kw)
            alone.append([f.x for f in chain(f"alone{i}").frames])
    scheduler = app.loaded()["scheduler"]
    assert scheduler is not None
    streams = [app.run_chain(*args(**kw), request=req(f"b{i}")) for i, kw in enumerate(kws)]
    for s in streams:
        next(s)
    assert all(app.SESSIONS.get(f"b{i}").job is not None for i in range(3))
    streams[2].close()                                       # Stop
    job = app.SESSIONS.get("b2").job
    assert job.cancelled
    live = streams[:2]
    while live:
        live = [s for s in live if next(s, None) is not None]
    assert job not in scheduler.jobs
    for i in range(2):
        player = chain(f"b{i}")
        assert player.finished and len(player.frames) == len(alone[i])
        assert all((a == b).all() for a, b in zip(alone[i], (f.x for f in player.frames)))


def test_pages_of_a_batched_class_share_the_frame_rate(monkeypatch):
    """Alone, a page streams at MEBM_FPS; with 30 chains in the scheduler, each page gets its share of
    MEBM_CLASS_FPS; without pacing (MEBM_FPS=0), none."""
    from types import SimpleNamespace as NS
    scheduler = NS(jobs=[object()])
    monkeypatch.setitem(app._LOADED, "scheduler", scheduler)
    player = NS(job=object())
    monkeypatch.setenv("MEBM_FPS", "40")
    assert app.frame_interval(player) == pytest.approx(1 / 40)
    scheduler.jobs = [object()] * 30
    monkeypatch.setenv("MEBM_CLASS_FPS", "15")
    assert app.frame_interval(player) == pytest.approx(29 / 15)
    assert app.frame_interval(NS(job=None)) == pytest.approx(1 / 40)     # compare mode: its own chain
    monkeypatch.setenv("MEBM_FPS", "0")
    assert app.frame_interval(player) == 0.0


def test_trace_of_what_each_stage_descends_and_what_changed():
    run(source="upload", upload=EXAMPLE)
    last, player = {k: value(v) for k, v in page().items()}, chain("s1")
    trace = last["trace_plot"]
    assert set(trace["stage"]) == {"latent", "data"} and page()["trace_plot"]["visible"]
    for stage, frames in (("latent", [f for f in player.frames if f.stage == "latent"]),
                          ("data", [f for f in player.frames if f.stage == "data"])):
        rows = trace[trace["stage"] == stage]
        assert rows["change"].iloc[0] == 0.0 and list(rows["step"]) == [f.index for f in frames]
        assert rows["chain"].iloc[0] == texts.TRACE_SERIES[stage]
    data = [f for f in player.frames if f.stage == "data"]
    assert trace[trace["stage"] == "data"]["change"].iloc[-1] == pytest.approx(
        float(data[-1].energy.mean() - data[0].energy.mean()), abs=1e-5)
    assert last["changes"].shape == last["grid"].shape                  # one panel per stage, as the grid
    caps = last["changes_caps"]
    assert "the start" in caps and caps.count("white = ") == 2 and "×" in caps
    assert "Data revision" in last["explain"]


def test_difference_gain_is_round_and_bounded():
    from demo.view import gain_for
    assert gain_for(0.3) == 2 and gain_for(1.0) == 1 and gain_for(0.04) == 20
    assert gain_for(0.0) == gain_for(0.0023) == 100                   # at most MAX_GAIN


def test_a_stage_that_barely_moves_is_said_so_with_how_much():
    run(source="upload", upload=EXAMPLE, latent_step_size=0.0001, data_step_size=0.001, noise=False)
    explain = value(page()["explain"])
    assert "latent revision barely changed the pictures" in explain and "per pixel on average" in explain
    assert "data revision barely changed" in explain.lower()
    run(source="upload", upload=EXAMPLE, data_step_size=50.0)
    moving = value(page()["explain"])
    assert "data revision barely" not in moving.lower()


def test_a_stage_still_running_is_not_said_to_have_barely_moved():
    """Two steps into the data revision the pictures have barely moved yet: the sentence is kept for the stage's
    end (a page of a class shows the stage's sentence from its first frames until its closing message)."""
    run(request=req("barely"), source="upload", upload=EXAMPLE, data_step_size=0.001, noise=False)
    r = app.SESSIONS.get("barely")
    early = next(s for s in r.player.frames if s.stage == "data" and s.step == 1)
    last = r.player.frames[-1]
    assert "data revision barely" not in r.explain(early).lower()    # running: not said yet
    assert "data revision barely changed" in r.explain(last).lower()  # ended, and it did barely move


def test_unconditional_has_its_own_labels_and_one_measure_with_n():
    status = run(source="unconditional", n_samples=3, sketch=EMPTY_SKETCH)[-1]["status"]
    last = page()
    assert last["posterior_plot"]["title"] == "log p(z) (no input)"
    assert "n = 3" in last["agreement_plot"]["title"] and "one digit" in last["agreement_plot"]["title"]
    agree = value(last["readout"])["agree"]
    assert set(agree) <= {"one digit", "mixed"}
    share = value(last["agreement_plot"])["agreement"].iloc[-1] / 100
    assert f"{round(share * 3)} of the 3 samples show one digit" in status   # the table, the bars, the status
    assert sum(a == "one digit" for a in agree) == round(share * 3)
    assert "input" not in value(last["explain"])
    run(source="upload", upload=EXAMPLE)
    cond = page()
    assert cond["posterior_plot"]["title"] == "log p(z | input)" and "n = 8" in cond["agreement_plot"]["title"]


def test_status_and_captions_agree_on_the_step_while_streaming():
    outs = run(source="upload", upload=EXAMPLE, latent_steps=5, data_steps=6)
    for out in outs[:-1]:
        running = out["captions"].split('class="cap running"')[1].split("<b>")[1].split("</b>")[0]  # "... · step 2/5"
        if "step" in running:
            assert running.split("step ")[1] in out["status"], (running, out["status"])
            assert stage_of(running) in out["status"].lower()


def stage_of(title: str) -> str:
    return title.split(" · ")[0].lower()


def test_first_step_after_stop_shows_the_next_frame():
    kw = dict(source="upload", upload=EXAMPLE, data_steps=8)
    gen = app.run_chain(*args(**kw), request=req("stopstep"))
    for _ in range(4):
        next(gen)
    shown = app.SESSIONS.get("stopstep").shown   # the frame before the one Stop met in flight
    gen.close()                                     # Stop
    assert app.SESSIONS.get("stopstep").stopped
    out = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *args(**kw), request=req("stopstep"))))
    current = chain("stopstep").current
    assert current.index == shown + 1 and "step" in out["status"]     # no frame skipped, none repeated
    list(app.run_chain(*args(**kw), request=req("alone")))
    assert (chain("alone").frames[shown + 1].x == current.x).all()   # the same chain (same seed)


def test_a_slow_run_yields_while_it_waits_so_that_stop_ends_it_at_once():
    """Slow motion (1 step a second): between two frames the run yields empty updates every STOP_SLICE seconds,
    because Gradio closes a generator (Stop) only at a yield: Stop then ends it without waiting for the next
    frame."""
    app.set_pace(1, False, request=req("slow"))
    try:
        gen = app.run_chain(*args(source="upload", upload=EXAMPLE, data_steps=4), request=req("slow"))
        first = dict(zip(app.RUN_OUTPUTS, next(gen)))
        assert not is_skip(first["grid"])
        beat = dict(zip(app.RUN_OUTPUTS, next(gen)))   # before the next frame, due a second later
        assert all(is_skip(v) for v in beat.values()) and app.STOP_SLICE < 1.0
        gen.close()   # Stop during the wait
        run = app.SESSIONS.get("slow")
        assert run.stopped and run.shown == 0   # Step goes on from the frame the page shows: the first
    finally:
        app.set_pace(40, False, request=req("slow"))


def test_stop_wakes_a_run_waiting_for_its_turn_and_it_ends_stopped(monkeypatch):
    """A page of a class waits seconds for its next frame (here an hour): the page's Stop (stop_run, unqueued) wakes
    it; the run yields its last update, Stopped, and ends without showing the frames made meanwhile. Its chain left
    the scheduler, and Step goes on from the frame the page showed."""
    import asyncio
    import threading

    scheduler = app.loaded()["scheduler"]
    assert scheduler is not None
    interval = [0.0]   # the first frames at once, then the page's turn an hour later
    monkeypatch.setattr(app, "frame_interval", lambda run: interval[0])
    kw = dict(source="upload", upload=EXAMPLE, data_steps=50)
    gen = app.run_chain(*args(**kw), request=req("waiting"))
    firsts = [dict(zip(app.RUN_OUTPUTS, next(gen))) for _ in range(3)]
    interval[0] = 3600.0
    run = app.SESSIONS.get("waiting")
    assert not is_skip(firsts[-1]["grid"]) and run.job in scheduler.jobs
    rest, ended = [], threading.Event()

    def page():   # Gradio's worker thread, asking for the next update
        rest.extend(dict(zip(app.RUN_OUTPUTS, out)) for out in gen)
        ended.set()

    worker = threading.Thread(target=page, daemon=True)
    with scheduler.lock:   # the class's rounds held (the chain's end would wake the page too)
        worker.start()
        worker.join(0.5)
        assert not ended.is_set()   # waiting its turn
        asyncio.run(app.stop_run(request=req("waiting")))
        worker.join(60)
    assert ended.is_set() and len(rest) == 1 and rest[0]["status"] == texts.status_html(texts.STOPPED)
    assert run.job not in scheduler.finishing   # a stopped page is waited for by no estimate
    shown = run.player.frames[-1].index   # the third update's frame: none taken after it
    assert is_skip(rest[0]["grid"]) and run.stopped and run.shown == shown and run.job.cancelled
    assert "waiting" not in app.STREAMING and chain("waiting").lock.acquire(blocking=False)
    chain("waiting").lock.release()
    out = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *args(**kw), request=req("waiting"))))
    assert chain("waiting").current.index == shown + 1 and "step" in out["status"]


def test_a_page_waiting_its_turn_is_woken_when_its_chain_ends(monkeypatch):
    """A page of a class waits for its next frame (here an hour); its chain's end wakes it: the frames made
    meanwhile and the closing message come at once, Done, and the page's finish is timed for the estimates."""
    import threading

    scheduler = app.loaded()["scheduler"]
    interval = [0.0]
    monkeypatch.setattr(app, "frame_interval", lambda run: interval[0])
    gen = app.run_chain(*args(source="upload", upload=EXAMPLE, data_steps=20), request=req("woken"))
    next(gen)
    interval[0] = 3600.0
    rest, ended = [], threading.Event()

    def page():
        rest.extend(dict(zip(app.RUN_OUTPUTS, out)) for out in gen)
        ended.set()

    run = app.SESSIONS.get("woken")
    threading.Thread(target=page, daemon=True).start()
    assert ended.wait(60)
    assert "Done" in rest[-1]["status"] and run.job.ended_at is not None and not run.stopped
    assert run.job not in scheduler.finishing   # the page said it finished (its time goes on the FinishClock)


def test_a_page_whose_chain_ended_behind_another_says_so_until_its_turn():
    """Pages whose chains end together send their results one at a time: a page with another ahead of it says so
    (how many, and about how long) as soon as its chain ends, and ends with Done once the page ahead has finished."""
    import threading
    import time

    scheduler = app.loaded()["scheduler"]

    class Ahead:   # another visitor's page, its chain ended, holding the finish turn
        ended_at, order, turn_at = time.perf_counter(), 0, time.perf_counter()

    ahead = Ahead()
    with scheduler.lock:
        scheduler.finishing.add(ahead)
        scheduler._turn = ahead
    released = []
    timer = threading.Timer(1.0, lambda: (released.append(time.perf_counter()), scheduler.page_finished(ahead)))
    timer.start()
    try:
        outs = run(source="upload", upload=EXAMPLE, latent_steps=2, data_steps=2)
    finally:
        timer.cancel()
        scheduler.page_finished(ahead)
    waiting = [o["status"] for o in outs if "Finishing" in str(o["status"])]
    assert len(waiting) == 1 and "1 other page sends its results first" in waiting[0]
    assert "Done" in outs[-1]["status"] and released   # the closing message came after the page ahead finished


def test_stop_of_a_visitor_with_no_run_does_nothing():
    asyncio_run = __import__("asyncio").run
    asyncio_run(app.stop_run(request=req("nobody")))
    assert "nobody" not in app.STREAMING


def test_pace_speed_and_pause():
    pace = app.PACES.get("pace")
    assert pace.interval() == 0.0 and not pace.every_frame() and not pace.held()
    app.set_pace(2, False, request=req("pace"))
    assert pace.interval() == pytest.approx(0.5) and pace.every_frame()
    label, status = app.toggle_pause(request=req("pace"))
    assert label["value"].startswith("Resume") and "Paused" in status and pace.held()
    app.toggle_pause(request=req("pace"))
    assert not pace.held()
    with pytest.raises(gr.Error, match="speed"):
        app.set_pace(1000, False, request=req("pace"))


def test_lesson_mode_holds_the_run_at_each_stage_boundary_until_revealed():
    import threading
    app.set_pace(40, True, request=req("lesson"))
    outs, gen = [], app.run_chain(*args(source="upload", upload=EXAMPLE), request=req("lesson"))
    done = threading.Event()

    def drive():
        for out in gen:
            outs.append(dict(zip(app.RUN_OUTPUTS, out)))
        done.set()

    threading.Thread(target=drive, daemon=True).start()
    for boundary in ("latent revision", "EBM data revision"):
        for _ in range(200):
            if any("Predict" in str(o["explain"]) and boundary in str(o["status"]) for o in outs):
                break
            done.wait(0.05)
        asked = next(o for o in outs if "Predict" in str(o["explain"]) and boundary in str(o["status"]))
        assert asked["reveal"]["visible"] and "Reveal" in asked["explain"]
        n = len(outs)
        done.wait(1.2)                                   # held: nothing but empty updates meanwhile
        assert all(all(is_skip(v) for v in o.values()) for o in outs[n:]) and not done.is_set()
        app.reveal(request=req("lesson"))
    assert done.wait(30) and "Done" in outs[-1]["status"]
    app.set_pace(40, False, request=req("lesson"))


def test_steps_to_go_count_from_the_frame_shown():
    """The count is of the steps after the frame shown. The chain's last frame is not streamed on its own: the
    closing message (Done) shows it, so that a class's pages finish sooner."""
    outs = run(source="upload", upload=EXAMPLE, latent_steps=3, data_steps=4)
    statuses = [o["status"] for o in outs[:-1]]
    assert "7 steps to go" in statuses[0] and "1 steps to go" in statuses[-1]   # proposal: 3 + 4 steps ahead
    assert "step 3/4" in statuses[-1] and "Done" in outs[-1]["status"] and not is_skip(outs[-1]["grid"])


def test_first_look_with_several_frames_still_shows_the_input(monkeypatch):
    """Under load the scheduler hands a page the frames made since it last looked; when the first look holds
    several frames (the proposal and the next steps), the page still gets the input picture and the status."""
    real = app.run_frames

    def bunched(run):
        frames = [f for batch in real(run) for f in batch]
        yield frames[:3]
        yield from ([f] for f in frames[3:])

    monkeypatch.setattr(app, "run_frames", bunched)
    outs = run(source="upload", upload=EXAMPLE)
    assert outs[0]["input_preview"].shape == (28, 58, 3)
    assert "step 1/3" in outs[0]["status"] and "Done" in outs[-1]["status"]


def test_energy_check_beside_the_weights_marks_the_runs_final_energies(tiny_app, monkeypatch):
    import shutil

    from demo.energy import ENERGY_FILE
    assert app.loaded()["energy_check"] is None        # none beside these weights: the histogram is left alone
    assert all(is_skip(o["energy_hist"]) for o in run(source="upload", upload=EXAMPLE))
    shutil.copy(ROOT / "checkpoints/mebm" / ENERGY_FILE, tiny_app / ENERGY_FILE)
    try:
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
        check = app.loaded()["energy_check"]
        assert check is not None and check.n >= 100
        outs = run(source="upload", upload=EXAMPLE)
        assert all(is_skip(o["energy_hist"]) for o in outs[:-1])     # drawn once, at the end of the run
        marked = outs[-1]["energy_hist"]
        assert isinstance(marked, np.ndarray) and not np.array_equal(marked, app.histogram(check))
        r = req("hist")
        outs = [dict(zip(app.RUN_OUTPUTS, app.step_chain(k, *args(source="upload", upload=EXAMPLE), request=r)))
                for k in (1, 1, 100)]
        assert is_skip(outs[1]["energy_hist"]) and isinstance(outs[2]["energy_hist"], np.ndarray)   # at the end
    finally:
        (tiny_app / ENERGY_FILE).unlink()
        app.setup(checkpoint=str(tiny_app), classifier=str(ROOT / "checkpoints/classifier"), offline=True)


def test_fifty_samples_count_each_stage_with_n_and_an_interval(monkeypatch):
    from demo import stats
    monkeypatch.setattr(stats, "N_STATS", 6)   # the tiny model: few samples, the same arithmetic
    outs = list(app.fifty_samples(*args(source="upload", upload=EXAMPLE, latent_steps=12, data_steps=12),
                                  request=req("st")))
    assert len(outs) >= 2 and all("Counting 6 samples" in w and is_skip(t) for w, t in outs[:-1])
    words, table = outs[-1]
    df = value(table)
    assert list(df["stage"]) == ["proposal", "latent revision", "EBM data revision"]
    M = app.model_config().n_modalities
    for _, r in df.iterrows():
        k, n = map(int, r["agree"].split("/"))
        lo, hi = (float(v) for v in r["95 % interval"].rstrip(" %").split("–"))
        assert n == 6 * (M - 1) and lo <= 100 * k / n <= hi and r["%"] == round(100 * k / n, 1)
    assert f"6 samples × {M - 1} generated modalities" in words
    unconditional = args(source="unconditional", sketch=EMPTY_SKETCH)
    joint = value(list(app.fifty_samples(*unconditional, request=req("st")))[-1][1])
    assert set(joint["chain"]) == {"N(0, I)"}           # these weights have no ex-post prior
    from model.prior import GaussianMixture
    d = app.model_config().latent_dim
    monkeypatch.setattr(app.loaded()["sampler"], "prior",
                        GaussianMixture(torch.ones(2) / 2, torch.randn(2, d), torch.eye(d).expand(2, d, d)))
    joint = value(list(app.fifty_samples(*unconditional, request=req("st")))[-1][1])
    assert list(joint["chain"].unique()) == ["ex-post prior", "N(0, I)"]   # both, on the same count
    assert set(joint["agree"].str.split("/").str[1]) == {"6"}
    app.STATS_RUNNING.add("busy")      # one at a time per visitor
    with pytest.raises(gr.Error, match="still being counted"):
        next(app.fifty_samples(*args(source="upload", upload=EXAMPLE), request=req("busy")))
    app.STATS_RUNNING.discard("busy")
    assert not app.STATS_RUNNING


def test_latent_view_draws_a_path_per_sample_as_the_run_streams():
    kw = dict(source="upload", upload=EXAMPLE, n_samples=2, latent_steps=3, data_steps=2)
    outs = run(request=req("latent"), **kw)
    pictures = [o["latent_view"] for o in outs if not is_skip(o["latent_view"])]
    assert pictures and pictures[0]["visible"]                 # a new page: the view made visible with its picture
    again = [o["latent_view"] for o in run(request=req("latent"), **kw) if not is_skip(o["latent_view"])]
    assert again and all(isinstance(p, np.ndarray) for p in again)   # the page's next run: the picture alone
    rows = app.SESSIONS.get("latent").z_rows
    assert [st for st, _ in rows] == ["proposal"] + ["latent"] * 4 and all(z.shape == (2, 2) for _, z in rows)
    p = chain("latent")
    assert all((f.z is None) == (f.stage == "data") for f in p.frames)
    assert np.allclose(rows[0][1], app.loaded()["latent_view"].project(p.frames[0].z))
    assert not np.array_equal(again[-1], app.picture(app.loaded()["latent_view"], []))


FIGURES = ("energy_plot", "posterior_plot", "agreement_plot", "readout", "trace_plot", "latent_view")


def same(a, b) -> bool:
    return a.equals(b) if hasattr(a, "equals") else np.array_equal(a, b)


def test_a_page_is_sent_only_what_it_lacks():
    """Props (visible, titles) go to a page once: its first run makes the figures visible, its next runs send their
    values alone (Gradio builds a new component for every change of props); within a run an unchanged figure is
    not sent again (but the run's last message carries them all), and outside lesson mode the Reveal button is
    left alone. The page shows the same as when everything was sent: the same seed, the same figures."""
    kw = dict(source="upload", upload=EXAMPLE)
    first = run(request=req("lacks"), **kw)
    after_first = {k: dict(v) for k, v in page("lacks").items()}
    second = run(request=req("lacks"), **kw)
    for k in FIGURES:
        sent = [o[k] for o in first if not is_skip(o[k])]
        assert sent and is_update(sent[0]) and sent[0]["visible"], k
        again = [o[k] for o in second if not is_skip(o[k])]
        assert again and not any(is_update(v) for v in again), k
        assert same(value(page("lacks")[k]), value(after_first[k])), k
    # the run's last message carries every figure again, as values: Chromium showed, after a run, the figures of
    # the last stage end but one when that message skipped them
    assert all(not is_skip(second[-1][k]) and not is_update(second[-1][k]) for k in FIGURES)
    assert all(is_skip(o["reveal"]) for o in first + second)
    assert page("lacks")["scrub"]["interactive"] and value(page("lacks")["scrub"]) == len(chain("lacks").frames) - 1
    uncond = run(request=req("lacks"), source="unconditional", sketch=EMPTY_SKETCH)   # other titles: sent
    titled = [o["posterior_plot"] for o in uncond if is_update(o["posterior_plot"]) and len(o["posterior_plot"]) > 1]
    assert titled and titled[0]["title"] == "log p(z) (no input)"


def test_skipped_outputs_are_answered_as_gradio_does_without_a_new_component():
    """The page's Blocks (demo.components.Page) answers a streamed frame exactly as Gradio's own does, but builds
    no new component for an output the frame skips (Gradio 6.31 did, for each: most of a frame's server time)."""
    import asyncio

    from gradio.state_holder import SessionState
    demo = app.build_demo()
    fn = next(f for f in demo.fns.values() if f.api_name == "run")
    pic, caps = app.first_picture(app.model_config())
    for frame in (app.outputs(grid=pic, captions=caps, status="step 1", reveal=gr.update(visible=True)),
                  app.outputs(status="one output"), app.outputs()):
        ours = asyncio.run(demo.postprocess_data(fn, list(frame), SessionState(demo)))
        theirs = asyncio.run(gr.Blocks.postprocess_data(demo, fn, list(frame), SessionState(demo)))
        assert ours == theirs
    state, status = SessionState(demo), fn.outputs[app.RUN_OUTPUTS.index("status")]._id
    kept = {b._id: state[b._id] for b in fn.outputs if b._id != status}
    asyncio.run(demo.postprocess_data(fn, list(app.outputs(status="x")), state))
    assert all(state[k] is c for k, c in kept.items())
    asyncio.run(gr.Blocks.postprocess_data(demo, fn, list(app.outputs(status="x")), state))
    assert not any(state[k] is c for k, c in kept.items())      # what Gradio itself does with a skip


def page_applies(held, edits):
    """What Gradio's page (@gradio/client's apply_diff) does with one output's edits in a streamed message: a
    replace of the whole value hands the component the message's object; any other edit changes the object the
    page holds, in place, and that is the object its component was handed by an earlier message."""
    for action, path, new in edits:
        if not path:
            held = new if action == "replace" else held + new
            continue
        target = held
        for key in path[:-1]:
            target = target[key]
        if action == "delete":
            target.pop(path[-1])
        elif action == "add" and isinstance(target, list):
            target.insert(path[-1], new)
        else:
            target[path[-1]] = target[path[-1]] + new if action == "append" else new
    return held


def test_a_streamed_message_never_changes_what_the_page_was_handed_before():
    """A lesson's run driven as its page drives it (Run, then Reveal at each question), every message through
    Gradio's own process_api and its streaming diffs, applied as Chromium's page applies them. A figure sent as
    a value and skipped in the next message was edited in place, key by key, into the skip under the plot that
    showed it: the page threw (reading 'stage' of a plot's columns that had gone) and drew nothing more, so the
    question stayed after Reveal and the plots were stale. The page's values must stay what the server sent, and
    nothing it was handed may change afterwards."""
    import asyncio
    import copy
    import json

    from gradio.state_holder import SessionState
    demo = app.build_demo()
    fn = next(f for f in demo.fns.values() if f.api_name == "run")
    visitor = SimpleNamespace(session_hash="diffs", query_params={}, headers={}, username=None)
    app.set_pace(40, True, request=visitor)
    from model.preprocess import encode_digit
    digit = encode_digit(np.asarray(Image.open(EXAMPLE).convert("L").resize((28, 28))))
    inputs = args(source="link", link_digit=digit) + ["images", ""]   # as the page sends them (model, caption)

    async def stream():
        state, iterator, messages = SessionState(demo), None, []
        while True:
            out = await demo.process_api(fn, inputs, state, visitor, iterator, session_hash="diffs", event_id="e1")
            if not out["is_generating"]:
                return messages
            messages.append(json.loads(json.dumps(out["data"], default=str)))   # as the page receives it
            if any("Predict" in str(v) for v in out["data"]):
                app.reveal(request=visitor)
            iterator = out["iterator"]

    held, handed, asked = None, [], 0
    for message in asyncio.run(stream()):
        held = list(message) if held is None else [page_applies(h, e) for h, e in zip(held, message)]
        handed += [(v, copy.deepcopy(v)) for v in held if isinstance(v, (dict, list))]
        asked += "Predict" in str(held[app.RUN_OUTPUTS.index("explain")])
    app.set_pace(40, False, request=visitor)
    assert asked >= 2 and "Done" in held[app.RUN_OUTPUTS.index("status")]
    assert "Predict" not in held[app.RUN_OUTPUTS.index("explain")]
    changed_later = [now for now, then in handed if now != then]
    assert not changed_later, changed_later[:1]


def test_the_estimate_a_frame_shows_is_made_as_it_is_shown_after_its_wait(monkeypatch):
    """A page of a class waits for its turn before each frame (up to seconds): the status line, with its estimate of
    the time to go, is made after that wait, so the estimate counts from the moment the page shows it."""
    events = []
    real_pace, real_status = app._pace_awake, app.streaming_status

    def pace(*a, **kw):
        events.append("wait")
        return (yield from real_pace(*a, **kw))

    def status(run, snap):
        events.append("status")
        return real_status(run, snap)

    monkeypatch.setattr(app, "_pace_awake", pace)
    monkeypatch.setattr(app, "streaming_status", status)
    outs = run(request=req("told"), source="upload", upload=EXAMPLE, data_steps=5)
    frames = [o for o in outs if "grid" in o and not isinstance(o["grid"], type(app.gr.skip()))]
    assert len(frames) > 2 and events.count("status") >= len(frames) - 1
    # every status line made while streaming comes right after its frame's wait (none before it)
    assert events[0] == "wait" and all(i > 0 and events[i - 1] == "wait" for i, e in enumerate(events) if e == "status")
