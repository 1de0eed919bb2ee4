"""The page's second model, with the caption modality: the Model choice, a typed caption as the input, each stage's
generated captions, the messages for bad captions, share links and the scheduler (event functions called
directly, as tests/test_app.py does)."""
import urllib.parse
from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

import app
from demo import captions as demo_captions
from demo.captions import CAPTIONS, IMAGES, caption_checkpoint, stage_captions
from demo.share import share_link
from helpers_app import ROOT, save_tiny_caption_model, save_tiny_model
from test_app import fold
from model.captions import Tokenizer

EXAMPLE = str(ROOT / "assets/example_7.png")
BASE = dict(source="caption", sketch=None, upload=None, modality=0, n_samples=2, latent_steps=3,
            latent_step_size=0.03, data_steps=4, data_step_size=1.0, noise=True, seed=0, compare=False, link_digit="",
            ex_post_prior=True, model=CAPTIONS, caption="a thin seven leaning right")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("captioned")
    # the model with captions runs its latent revision at noise 0.01, as the shipped one
    return save_tiny_model(tmp / "mebm"), save_tiny_caption_model(tmp / "mebm_captions", latent_noise=0.01)


@pytest.fixture(scope="module", autouse=True)
def tiny_app(folders):
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEBM_FPS", "0")
    mp.delenv("MEBM_CAPTION_CHECKPOINT", raising=False)
    app.setup(checkpoint=str(folders[0]), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
    yield
    app._LOADED.clear()
    mp.undo()


def req(name="c1", query=None):
    return SimpleNamespace(session_hash=name, query_params=query or {})


def run(request=None, **kw):
    """All yields of a Run as dicts (outputs by name)."""
    values = list({**BASE, **kw}.values())
    return [dict(zip(app.RUN_OUTPUTS, out)) for out in app.run_chain(*values, request=request or req())]


def value(v):
    return v["value"] if isinstance(v, dict) and "value" in v else v


def words_known(text: str) -> bool:
    return all(w in Tokenizer().index for w in Tokenizer().split(text))


def test_the_checkpoint_is_found_beside_the_five_image_one_or_named(folders, tmp_path, monkeypatch):
    images, captioned = folders
    assert caption_checkpoint(None, images) == captioned
    assert caption_checkpoint(None, tmp_path / "mebm") is None                  # nothing beside it
    monkeypatch.setenv("MEBM_CAPTION_CHECKPOINT", str(tmp_path / "missing"))
    assert caption_checkpoint(None, images) is None
    assert caption_checkpoint(str(captioned), tmp_path / "mebm") == captioned   # --caption-checkpoint first
    monkeypatch.setenv("MEBM_CAPTION_CHECKPOINT", str(captioned))
    assert caption_checkpoint(None, tmp_path / "mebm") == captioned
    # a folder whose model has no caption modality is not offered
    assert app.load_caption_model(str(images), images, "cpu") is None


def test_a_typed_caption_streams_the_images_and_stays_as_typed():
    outs = run(caption=" a thin seven\n leaning right ")   # white space of any kind, as in the API
    last = outs[-1]
    assert "Done" in last["status"] and "10 frames" in last["status"]
    assert "a thin seven leaning right" in last["stage_captions"]
    # the agreement: the share of the images read as the caption's digit, in the status, the bars and the table
    assert "The caption names <b>7</b>;" in last["status"] and " of the 10 images read as it" in last["status"]
    shown = fold({}, outs)   # a figure is sent when it changed, its title once per page
    assert shown["agreement_plot"]["title"] == "Images read as the caption's 7 (%, n = 10)"
    assert value(shown["readout"])["agree"].str.fullmatch(r"\d/5").all()
    streamed = [o["stage_captions"] for o in outs if isinstance(o["stage_captions"], str)]
    assert streamed and all("a thin seven leaning right" in t for t in streamed)
    player = app.SESSIONS.get("c1").player
    assert player.conditioned and player.text.shape == (2, 16)
    assert all(f.captions == ["a thin seven leaning right"] * 2 for f in player.frames)
    assert [f.stage for f in player.frames] == ["proposal"] + ["latent"] * 4 + ["data"] * 5
    assert "caption" in app.SESSIONS.get("c1").explain(player.frames[0])
    latent = player.frames[1]
    assert "explain your caption better" in app.SESSIONS.get("c1").explain(latent)
    text = player.model.config.text
    try:   # a model whose latent revision gives the caption the weight 0 says so
        player.model.config.text = replace(text, latent_weight=0.0)
        assert "leaves your caption out" in app.SESSIONS.get("c1").explain(latent)
    finally:
        player.model.config.text = text
    again = run(request=req("c2"))
    assert len(again) == len(outs)
    assert all((a.x == b.x).all() for a, b in zip(player.frames, app.SESSIONS.get("c2").player.frames))


@pytest.mark.parametrize("source,kw", [("upload", dict(upload=EXAMPLE)), ("unconditional", {})])
def test_images_to_captions_show_each_samples_caption_per_stage(source, kw):
    outs = run(source=source, caption="", **kw)
    text = outs[-1]["stage_captions"]
    lines = text.splitlines()
    stages = ["proposal", "EBM data revision · step 4/4"]
    stages += ["latent revision · step 3/3"] if source == "upload" else []
    assert all(s in lines for s in stages), text
    samples = [ln.strip()[3:] for ln in lines if ln.startswith("  1: ") or ln.startswith("  2: ")]
    assert len(samples) == 2 * len(stages) and all(words_known(c) for c in samples), text
    # streamed: the captions of the stages reached so far
    streamed = [o["stage_captions"] for o in outs[:-1] if isinstance(o["stage_captions"], str)]
    assert streamed and "not reached yet" in streamed[0]
    # scrubbing back to the proposal shows the captions as they stood then
    scrubbed = app.scrub_captions(0, req())
    assert "proposal" in scrubbed and "not reached yet" in scrubbed


def test_the_five_image_model_runs_as_before_with_no_captions():
    outs = run(model=IMAGES, source="upload", upload=EXAMPLE, caption="")
    assert "Done" in outs[-1]["status"]
    assert all(isinstance(o["stage_captions"], dict) and o["stage_captions"].get("__type__") == "update"
               for o in outs)   # gr.skip(): the box is left alone
    assert app.SESSIONS.get("c1").player.frames[-1].captions is None


@pytest.mark.parametrize("caption,msg", [
    ("", "The caption is empty"),
    ("   ", "The caption is empty"),
    ("a purple seven", "Unknown word in the caption: 'purple'. The model knows 42 words, listed under the caption box"),
    ("a <b>bold</b> 3", "Unknown word in the caption: '&lt;b&gt;bold&lt;/b&gt;'"),
    ("x" * 201, "The caption is too long: 201 characters, at most 200"),
    ("a bold 3 – café", "plain English letters, digits and commas only .found '–é'"),
    ("a " * 17, "The caption has 17 words; at most 16"),
    (["a", "3"], "The caption must be text"),
])
def test_bad_captions_get_one_line(caption, msg):
    with pytest.raises(gr.Error, match=msg) as e:
        run(caption=caption)
    assert "\n" not in e.value.message


def test_a_caption_needs_the_model_with_captions():
    with pytest.raises(gr.Error, match="A typed caption needs the model with captions"):
        run(model=IMAGES)
    with pytest.raises(gr.Error, match="'model' must be 'images' or 'captions'"):
        run(model="both")


def test_captions_model_absent_the_page_is_the_five_image_page(folders, monkeypatch):
    images, captioned = folders

    def model_radio():
        demo = app.build_demo()
        blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
        # the page's load events get as many values as they have outputs
        link = {"src": "caption", "mdl": "captions", "cap": "a 3", "seed": "1"}
        for fn in (app.restore, app.restore_caption):
            outputs = [f.outputs for f in demo.fns.values() if getattr(f.fn, "__name__", "") == fn.__name__]
            assert (outputs or fn is app.restore_caption) and all(len(o) == len(fn(req(query=link))) for o in outputs)
        return blocks["model"], blocks["source"], blocks["caption_box"], blocks["stage_captions"]

    model, source, box, text = model_radio()
    assert model.visible and [v for _, v in model.choices] == [IMAGES, CAPTIONS]
    assert [v for _, v in source.choices] == [v for _, v in app.SOURCE_LABELS] and not box.visible and not text.visible
    monkeypatch.setenv("MEBM_CAPTION_CHECKPOINT", str(images.parent / "nothing"))
    try:
        app.setup(checkpoint=str(images), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
        assert app.loaded()["caption_sampler"] is None
        model, source, box, _ = model_radio()
        assert not model.visible and [v for _, v in model.choices] == [IMAGES]
        with pytest.raises(gr.Error, match="no model with captions"):
            run()
        link = {"src": "caption", "mdl": "captions", "cap": "a 3", "seed": "1"}
        assert "no model with captions" in app.restore(req(query=link))[-1]
    finally:
        monkeypatch.delenv("MEBM_CAPTION_CHECKPOINT")
        app.setup(checkpoint=str(images), classifier=str(ROOT / "checkpoints/classifier"), offline=True)


def test_choosing_a_model_shows_its_inputs_and_settings():
    source, box, text, ls, lss, ds, dss, noise = app.choose_model(CAPTIONS)
    assert ("Caption (typed below)", "caption") in source["choices"] and box["visible"] and text["visible"]
    chains = app.loaded()["caption_sampler"].chains
    assert (ls, lss, ds, dss) == (chains.latent.steps, chains.latent.step_size, chains.data.steps,
                                  chains.data.step_size)
    assert noise["label"].startswith("Langevin noise on (latent 0.01,")     # the page names its own model's noise
    source, box, text, *_, noise = app.choose_model(IMAGES)
    assert source["value"] == "draw" and source["choices"] == app.SOURCE_LABELS and not box["visible"]
    assert noise["label"].startswith(f"Langevin noise on (latent {app.model_config().chains.latent.noise:g},")


def test_share_link_of_a_caption_run_gives_the_same_frames():
    run(caption="The digit 3, bold", seed=5)
    link = share_link(app.SESSIONS.get("c1"))
    q = dict(urllib.parse.parse_qsl(link[1:]))
    assert q["src"] == "caption" and q["mdl"] == "captions" and q["cap"] == "The digit 3, bold"
    restored = app.restore(req("r", q))
    assert restored[0]["value"] == "caption" and "restored" in restored[-1]
    model, caption, box, text = app.restore_caption(req("r", q))
    assert (model, caption) == (CAPTIONS, "The digit 3, bold") and box["visible"]
    source, modality, n, ls, lss, ds, dss, noise, seed, compare, digit, pp, _ = restored
    run(request=req("r"), source=source["value"], modality=modality, n_samples=n, latent_steps=ls,
        latent_step_size=lss, data_steps=ds, data_step_size=dss, noise=noise, seed=seed, compare=compare,
        link_digit=digit, ex_post_prior=pp, model=model, caption=caption)
    a, b = app.SESSIONS.get("c1").player.frames, app.SESSIONS.get("r").player.frames
    assert len(a) == len(b) and all((x.x == y.x).all() for x, y in zip(a, b))
    # an image run of the model with captions keeps its model; a five-image link stays as it was
    run(source="upload", upload=EXAMPLE, caption="")
    q = dict(urllib.parse.parse_qsl(share_link(app.SESSIONS.get("c1"))[1:]))
    assert q["mdl"] == "captions" and q["src"] == "link" and "cap" not in q
    run(model=IMAGES, source="upload", upload=EXAMPLE)
    assert "mdl" not in share_link(app.SESSIONS.get("c1"))
    assert app.restore_caption(req("r", {"src": "unconditional", "seed": "1"}))[0]["__type__"] == "update"


@pytest.mark.parametrize("cap,msg", [("a purple 3", "purple"), ("<img src=x>", "&lt;img"), ("", "empty")])
def test_a_bad_caption_in_a_link_is_refused_in_one_line(cap, msg):
    status = app.restore(req("r", {"src": "caption", "mdl": "captions", "cap": cap, "seed": "1"}))[-1]
    assert "could not be restored" in status and msg in status and "<img" not in status
    assert all(v["__type__"] == "update" for v in app.restore_caption(req("r", {"src": "caption", "cap": cap,
                                                                                 "mdl": "captions", "seed": "1"})))


def test_chains_of_the_two_models_are_never_batched_together():
    scheduler = app.loaded()["scheduler"]
    assert scheduler is not None and scheduler.sampler is app.loaded()["sampler"]
    seen = []
    submit = scheduler.submit

    def spy(player):
        seen.append(player.sampler)
        return submit(player)

    scheduler.submit = spy
    try:
        run(source="upload", upload=EXAMPLE, caption="")     # the model with captions: computed alone
        assert app.SESSIONS.get("c1").job is None
        run(model=IMAGES, source="upload", upload=EXAMPLE)   # the five-image model: batched with the class
        assert app.SESSIONS.get("c1").job is not None
    finally:
        scheduler.submit = submit
    assert seen == [app.loaded()["sampler"]]


def test_fifty_samples_of_a_caption():
    values = list(BASE.values())
    out = list(app.fifty_samples(*values, request=req("stats")))
    words, table = out[-1]
    assert "50 samples" in words and "read as the caption's digit (7)" in words
    assert len(table["value"]) >= 2 and (table["value"]["agree"].str.split("/").str[1] == "250").all()


@pytest.mark.parametrize("caption,digit", [("a thin seven leaning right", 7), ("the digit 3, bold", 3),
                                           ("An 8.", 8), ("thin and upright", None), ("a 3 or a four", None),
                                           ("one, 1", 1)])
def test_the_digit_a_caption_names(caption, digit):
    assert demo_captions.caption_digit(caption) == digit


def test_a_caption_naming_no_digit_counts_samples_of_one_digit():
    outs = run(caption="thin and upright")
    assert "of the 2 samples show one digit in every modality" in outs[-1]["status"]
    assert fold({}, outs)["agreement_plot"]["title"] == "Samples with one digit in all rows (%, n = 2)"


def test_stage_captions_of_a_run_are_plain_text():
    run(source="unconditional", caption="")
    text = stage_captions(app.SESSIONS.get("c1"))
    assert "<" not in text and text.startswith("proposal")
    assert demo_captions.vocabulary(Tokenizer()).split() == list(Tokenizer().words[1:])


def test_example_captions_are_worded_as_labelled():
    from model.captions import caption_language

    seen = set(caption_language())
    assert all(c in seen for c in demo_captions.EXAMPLES[:demo_captions.HELD_IN])
    assert not any(c in seen for c in demo_captions.EXAMPLES[demo_captions.HELD_IN:])
    assert all(demo_captions.caption_ids(c, Tokenizer()).shape == (1, 16) for c in demo_captions.EXAMPLES)


def test_step_mode_shows_the_captions_of_the_stages_reached():
    values = list({**BASE, "source": "upload", "upload": EXAMPLE, "caption": ""}.values())
    first = dict(zip(app.RUN_OUTPUTS, app.step_chain(1, *values, request=req("st"))))
    assert "proposal\n  1: " in first["stage_captions"] and "not reached yet" in first["stage_captions"]
    later = dict(zip(app.RUN_OUTPUTS, app.step_chain(2, *values, request=req("st"))))
    assert "latent revision · step 2/3\n  1: " in later["stage_captions"]


def test_zerogpu_computes_a_caption_run_with_the_model_with_captions(folders, monkeypatch):
    """On ZeroGPU the GPU function is handed the model chosen and the typed caption: the same frames as here."""
    from test_app import fake_spaces

    run(request=req("zg"))
    here = [f.x for f in app.SESSIONS.get("zg").player.frames]
    calls = []
    monkeypatch.setitem(__import__("sys").modules, "spaces", fake_spaces(calls))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    try:
        app.setup(checkpoint=str(folders[0]), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
        assert "Done" in run(request=req("zg"))[-1]["status"]
        frames = app.SESSIONS.get("zg").player.frames
        assert len(frames) == len(here) and all((f.x == x).all() for f, x in zip(frames, here))
        assert [c[0] for c in calls] == ["decorated", "call"]
    finally:
        monkeypatch.delenv("SPACES_ZERO_GPU")
        app.setup(checkpoint=str(folders[0]), classifier=str(ROOT / "checkpoints/classifier"), offline=True)
