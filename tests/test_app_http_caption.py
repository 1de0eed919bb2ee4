"""`python app.py` with the model with captions beside the five-image one, driven over HTTP with gradio_client: a
typed caption streams its frames and the captions of every stage, images give generated captions, and every bad
caption is the app's one line (logged in one line, no traceback)."""
import time

import pytest

from helpers_app import ROOT, save_tiny_caption_model, save_tiny_model, start_app, stop_app

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLE = str(ROOT / "assets/example_7.png")
OUT = {name: i for i, name in enumerate(("grid", "captions", "noise_grid", "input_preview", "energy_plot",
                                         "posterior_plot", "agreement_plot", "readout", "status", "scrub", "share"))}
OUT["stage_captions"] = -1   # the last output (the API leaves the Reveal button out of the list)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http_caption")
    save_tiny_caption_model(tmp / "mebm_captions")   # found beside the five-image checkpoint
    proc, url = start_app(save_tiny_model(tmp / "mebm"), tmp)
    try:
        yield Client(url, verbose=False), tmp
    finally:
        stop_app(proc)


def args(source="caption", caption="a thin seven leaning right", model="captions", upload=None):
    return dict(source=source, sketch=None, upload=upload, modality=0, n_samples=2, latent_steps=3,
                latent_step_size=0.03, data_steps=4, data_step_size=1.0, noise=True, seed=0, compare=False,
                link_digit="", ex_post_prior=True, model=model, caption=caption)


def stream(c, **kw):
    job = c.submit(*args(**kw).values(), api_name="/run")
    list(job)
    job.result()  # raises the app's message when the event failed
    return job.outputs()


def test_a_caption_run_streams_frames_and_its_captions(served):
    c, _ = served
    outputs = stream(c)
    assert len(outputs) >= 2 and "Done" in outputs[-1][OUT["status"]]
    assert "10 frames" in outputs[-1][OUT["status"]]
    assert "Given caption: a thin seven leaning right" in outputs[-1][OUT["stage_captions"]]
    assert "share_link" in outputs[-1][OUT["share"]] and "src=caption" in outputs[-1][OUT["share"]]
    outputs = stream(c, source="upload", caption="", upload=handle_file(EXAMPLE))
    text = outputs[-1][OUT["stage_captions"]]
    assert text.startswith("proposal\n  1: ") and "EBM data revision · step 4/4\n  1: " in text
    # the five-image model, as before: the captions' box is left alone (hidden in the page)
    outputs = stream(c, source="upload", caption="", upload=handle_file(EXAMPLE), model="images")
    assert "Done" in outputs[-1][OUT["status"]] and outputs[-1][OUT["stage_captions"]] == {"__type__": "update"}


@pytest.mark.parametrize("kw,msg", [
    (dict(caption=""), "The caption is empty"),
    (dict(caption="a purple seven"), "Unknown word in the caption: 'purple'"),
    (dict(caption="x" * 5000), "The caption is too long: 5000 characters, at most 200"),
    (dict(caption="a bold 3 café"), "plain English letters, digits and commas only"),
    (dict(model="images"), "A typed caption needs the model with captions"),
    (dict(model="<b>x</b>"), "'model' must be 'images' or 'captions' .got '&lt;b&gt;x&lt;/b&gt;'"),
])
def test_bad_captions_are_the_apps_one_line_and_logged_in_one_line(served, kw, msg):
    c, tmp = served
    log = tmp / "app.log"
    start = log.stat().st_size
    with pytest.raises(Exception, match=msg):
        stream(c, **kw)
    time.sleep(0.3)
    with open(log, "rb") as f:
        f.seek(start)
        new = f.read().decode(errors="replace")
    assert "Traceback" not in new and new.count("rejected:") == 1, new[-2000:]
    assert "Done" in stream(c)[-1][OUT["status"]]   # and the app keeps serving
