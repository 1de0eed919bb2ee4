"""`python app.py` in a subprocess, driven over HTTP with gradio_client (streamed updates included)."""
import numpy as np
import pytest
from PIL import Image

from helpers_app import ROOT, save_tiny_model, start_app, stop_app, stroke_sketch

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLE = str(ROOT / "assets/example_7.png")
# outputs of /run over the API: the session State ("record") is not sent
OUT = {name: i for i, name in enumerate(n for n in ("grid", "noise_grid", "input_preview", "energy_plot",
       "posterior_plot", "readout", "status", "record", "scrub", "gif", "png") if n != "record")}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    proc, url = start_app(save_tiny_model(tmp / "mebm"), tmp)
    try:
        yield Client(url, verbose=False), tmp
    finally:
        stop_app(proc)


def args(source="upload", sketch=None, upload=None, n=2, latent_steps=3, data_steps=4, step=0.03, seed=0):
    return dict(source=source, sketch=sketch, upload=upload, modality=0, n_samples=n, latent_steps=latent_steps,
                latent_step_size=step, data_steps=data_steps, data_step_size=1.0, noise=True, seed=seed, compare=True)


def stream(c, **kw):
    job = c.submit(*args(**kw).values(), api_name="/run")
    updates = list(job)
    job.result()  # raises the app's message when the event failed
    return updates, job.outputs()


def test_api_lists_run_scrub_preset(client):
    c, _ = client
    api = c.view_api(print_info=False, return_format="dict")
    assert {"/run", "/scrub", "/preset"} <= set(api["named_endpoints"])


def test_upload_streams_every_frame(client):
    c, _ = client
    updates, outputs = stream(c, upload=handle_file(EXAMPLE))
    n_frames = 1 + 4 + 5
    assert len(outputs) >= n_frames - 1  # every frame streamed (client may coalesce the odd one), then downloads
    final, downloads = outputs[-2], outputs[-1]  # the last frame, then the GIF/PNG
    grid, status = final[OUT["grid"]], final[OUT["status"]]
    gif, png = downloads[OUT["gif"]], downloads[OUT["png"]]
    assert not any(isinstance(o[OUT["gif"]], str) for o in outputs[:-2])  # downloads come last
    assert Image.open(grid).size[0] > 100
    assert "Done" in status
    assert Image.open(gif).n_frames == n_frames and Image.open(png).size == Image.open(grid).size
    readout = final[OUT["readout"]]
    assert "agree" in readout["headers"] and len(readout["data"]) == 2


def test_sketch_over_http(client):
    c, tmp = client
    sk = stroke_sketch()
    p = tmp / "sketch.png"
    Image.fromarray(sk["composite"]).save(p)
    layer = tmp / "layer.png"
    Image.fromarray(sk["layers"][0]).save(layer)
    sketch = {"background": handle_file(p), "layers": [handle_file(layer)], "composite": handle_file(p), "id": None}
    _, outputs = stream(c, source="draw", sketch=sketch)
    assert "Done" in outputs[-2][OUT["status"]]


def test_unconditional_and_preset_and_scrub(client):
    c, _ = client
    _, outputs = stream(c, source="unconditional", n=3)
    assert "Done" in outputs[-2][OUT["status"]]
    preset = c.predict("Step size too small", api_name="/preset")
    assert preset[0] == 20 and "nothing move" in preset[-1]


@pytest.mark.parametrize("kw,msg", [
    (dict(source="draw", sketch=None), "empty"),
    (dict(n=99), "between 1 and 16|greater than maximum value 16"),   # ours or Gradio's own check
    (dict(step=-1.0), "latent step size|less than minimum value"),
    (dict(seed=-3), "seed|less than minimum value")])
def test_bad_input_is_a_message_and_app_keeps_serving(client, kw, msg):
    c, _ = client
    with pytest.raises(Exception, match=msg):
        stream(c, upload=handle_file(EXAMPLE), **kw)
    _, outputs = stream(c, upload=handle_file(EXAMPLE))
    assert "Done" in outputs[-2][OUT["status"]]


def test_corrupt_file(client):
    c, tmp = client
    bad = tmp / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    with pytest.raises(Exception, match="Could not read"):
        stream(c, upload=handle_file(bad))


def test_diverging_chain_over_http(client):
    c, _ = client
    _, outputs = stream(c, upload=handle_file(EXAMPLE), step=10.0, latent_steps=50)
    assert "Stopped" in outputs[-2][OUT["status"]]


def test_page_says_which_weights(client):
    import urllib.request
    c, _ = client
    html = urllib.request.urlopen(c.src).read().decode()
    assert "bundled" in html or "Weights in use" in html
