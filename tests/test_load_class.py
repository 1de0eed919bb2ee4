"""A class over HTTP: several API clients press Run at once on `python app.py` (the batched scheduler, a tiny
model): every run completes with its own frames, a run's frames do not depend on who else was running (the
same seed alone and among others: the same final picture), and one client's Stop leaves the others' runs whole."""
import threading

import numpy as np
import pytest

from helpers_app import save_tiny_model, start_app, stop_app
from test_app_http import EXAMPLE, OUT, args, picture

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    proc, url = start_app(save_tiny_model(tmp / "mebm"), tmp, {"MEBM_BATCH": "1", "MEBM_SHOW_WAIT": "1"})
    try:
        yield url
    finally:
        stop_app(proc)


def run(client, seed, **kw):
    """One Run: (its updates, its final outputs)."""
    job = client.submit(*args(upload=handle_file(EXAMPLE), seed=seed, **kw).values(), api_name="/run")
    updates = list(job)
    job.result()
    return updates, job.outputs()[-1]


def assert_same_picture(a, b):
    """Equal up to the last float bits of a batched convolution (one grey level in at most 0.1 % of pixels)."""
    diff = np.abs(picture(a).astype(int) - picture(b).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3


def test_clients_at_once_get_their_own_runs(url):
    """Five clients press Run together (seeds 5 to 9), then seed 5 runs alone: every run ends with Done and the
    same number of frames; seed 5's final picture is the same among the five as alone, and differs from the
    others'. The pages say how many steps are left, and about how long (MEBM_SHOW_WAIT)."""
    clients = [Client(url, verbose=False) for _ in range(5)]
    results, errors = {}, []
    barrier = threading.Barrier(len(clients))

    def user(client, seed):
        barrier.wait()
        try:
            results[seed] = run(client, seed, latent_steps=10, data_steps=10)
        except Exception as e:   # reported below, with the seed
            errors.append((seed, e))

    threads = [threading.Thread(target=user, args=(c, 5 + i)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and sorted(results) == [5, 6, 7, 8, 9]
    done = {seed: final[OUT["status"]] for seed, (_, final) in results.items()}
    assert all(s.startswith("<b>Done:</b> 23 frames") for s in done.values()), done
    told = [u[OUT["status"]] for updates, _ in results.values() for u in updates if isinstance(u[OUT["status"]], str)]
    assert any("steps to go" in s for s in told)
    _, alone = run(clients[0], 5, latent_steps=10, data_steps=10)
    assert_same_picture(results[5][1][OUT["grid"]], alone[OUT["grid"]])
    for seed in (6, 7, 8, 9):
        assert not np.array_equal(picture(results[seed][1][OUT["grid"]]), picture(alone[OUT["grid"]]))


def test_one_clients_stop_leaves_the_others_whole(url):
    """Three clients run long chains at once; one cancels after its first frames: the other two end with Done
    and every frame of their chains."""
    clients = [Client(url, verbose=False) for _ in range(3)]
    long = dict(n=8, latent_steps=60, data_steps=60)
    jobs = [c.submit(*args(upload=handle_file(EXAMPLE), seed=20 + i, **long).values(), api_name="/run")
            for i, c in enumerate(clients)]
    stopped = jobs[0]
    for _ in stopped:   # its first update: the chain is running
        break
    stopped.cancel()
    for job in jobs[1:]:
        job.result()
        final = job.outputs()[-1]
        assert final[OUT["status"]].startswith("<b>Done:</b> 123 frames"), final[OUT["status"]]
