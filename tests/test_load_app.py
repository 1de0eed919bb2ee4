"""benchmarks.load_app on a tiny model: the Stop measurement (some users press Stop after their first frame, the
others still complete) and the overall deadline (what is not done by then counts as lost, the report is printed
and the exit status is 1)."""
import re

import pytest

from benchmarks import load_app
from helpers_app import save_tiny_model

pytestmark = pytest.mark.slow
pytest.importorskip("gradio_client")


def test_stoppers_are_measured_and_the_others_complete(tmp_path, capsys):
    code = load_app.main(["--users", "3", "--stoppers", "1", "--stop-after", "0", "--soak", "0", "--fps", "60",
                          "--checkpoint", str(save_tiny_model(tmp_path / "mebm")), "--deadline", "500"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 complete runs, 1 stopped, 0 lost" in out
    stop = re.search(r"Stop: 1 users pressed it 0 s after their first frame; (\d+) streams ended after it, (\d+) had "
                     r"ended before; from Stop to the stream's end: (.*); the other 2 users: 2 complete", out)
    assert stop, out
    assert int(stop[1]) + int(stop[2]) == 1 and (stop[3] == "none") == (stop[1] == "0"), out


def test_a_deadline_reports_what_there_is_and_fails(tmp_path, capsys):
    code = load_app.main(["--users", "2", "--soak", "3", "--fps", "60", "--deadline", "0",
                          "--checkpoint", str(save_tiny_model(tmp_path / "mebm"))])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "0 complete runs, 2 lost" in out and "cut by the deadline" in out and "the measurement is incomplete" in out
    assert "soak:" not in out


def test_a_polling_client_sees_every_update_in_order_and_stops_when_finished():
    """The clients' own wait (``updates``): messages appended while it sleeps all come, in order, and the iteration
    ends once the job is finished and nothing is left, not before."""
    import threading
    import time
    from types import SimpleNamespace

    from gradio_client.utils import Status

    state = SimpleNamespace(outputs=[], latest_status=SimpleNamespace(code=Status.PROCESSING))
    job = SimpleNamespace(communicator=SimpleNamespace(lock=threading.Lock(), job=state))

    def app_side():
        for k in range(5):
            time.sleep(0.01)
            with job.communicator.lock:
                state.outputs.append(k)
        with job.communicator.lock:
            state.outputs.append("last")
            state.latest_status.code = Status.FINISHED

    t = threading.Thread(target=app_side)
    t.start()
    got = list(load_app.updates(job, poll=0.003))
    t.join()
    assert got == [0, 1, 2, 3, 4, "last"]
    assert list(load_app.updates(job, poll=0.003)) == [0, 1, 2, 3, 4, "last"]   # finished: all, then the end
