"""A classroom at once, then a term: load and soak of the demo, on loopback only.

    python -m benchmarks.load_app [--users 30] [--soak 200] [--checkpoint checkpoints/mebm] [--concurrency 4]
                                  [--batch on|off|both] [--stoppers 5] [--deadline 600]

1. ``--users`` gradio_client users (at most 64) press Run at the same moment (default settings, each its own
   seed): time to their first frame (p50 / p95), time to their last frame, runs lost (errors, queue
   full, malformed updates), the queue's wait estimate against the wait they had, and the page's own estimate
   ("about N s", from the scheduler's measured rounds) against the time the run then took, and the CPU seconds
   the app and the clients used meanwhile (the clients share the machine: their decoding counts against the
   app). The users connect first (a page open before the class presses Run); the times count from the press.
   Each client looks for the app's messages every 20 ms (``--client-wait spin``: gradio_client's own iterator,
   which looks every millisecond and so spends more of the shared cores than the app's messages cost).
   ``--batch both`` measures the batched path (MEBM_BATCH=1: one model pass per step for every visitor) and
   the unbatched one in the same run, one app after the other, with their throughput (complete runs per
   minute). ``--stoppers``: that many of the users press Stop a moment (``--stop-after``) after their first
   frame, as the page does (the app's stop event and the queue's cancel of their event, at once): the time
   from their Stop to the end of their stream (p50 / p95; the page's Stop should end a visitor's chain within
   0.5 s), and whether the others still complete.
2. ``--soak`` runs in a row (at most 1000) by one client: the server's resident memory and its temp
   folder (files, bytes) before and after.
The app runs in a subprocess on 127.0.0.1 (a free port) with its own temp folder, and is stopped at the
end; every run has a time limit (``--run-timeout``), and the whole measurement one (``--deadline``): what is
not done by then counts as lost, the report is printed with what there is, and the exit status is 1. Figures
measured on a busy machine say so: the
script prints the load average beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "assets/example_7.png")
TOLD = re.compile(r"about (\d+(?:\.5)?) s")   # the page's estimate: half seconds below 10 s
# One TLS context for every client, as a browser has one: gradio_client's default (ssl_verify=True) makes httpx
# load the CA bundle for each of its requests (three a run), tens of ms of CPU each, even over plain HTTP; thirty
# clients in one process then spent seconds of the class's first moments on it (the app shares these cores).
TLS = ssl.create_default_context()
# How often a client looks for the app's new messages (s). gradio_client's own iterator (Job.__next__) looks every
# millisecond, under a lock: sixty clients in one process then spent 23-65 CPU-s of a 60-user class (the app: 35-42)
# mostly waking to find nothing, on the cores the app shares. A page is woken by its messages.
POLL = 0.02


def pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def rss_mb(pid) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid) -> float:
    """User and system CPU time of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def usage(folder: Path):
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.exists() else []
    return len(files), sum(f.stat().st_size for f in files)


def connect(url, verify=TLS):
    """A user's page, open before the class presses Run: an API client that has sent one small event (a preset),
    as a page does its load events, so that the server has made this visitor's session state (Gradio builds
    every component's settings for a new session, ~0.1 s of CPU each) before the press, as for a browser."""
    import httpx
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False, ssl_verify=verify)
    client.predict("Default", api_name="/preset")
    client.page_http = httpx.Client(timeout=30, verify=verify)   # the page's own connection, for what it posts (Stop)
    client.page_http.head(url)
    return client


def press_stop(client, job, rec, t0):
    """Stop as the page presses it: two requests at once on the page's open connection, the app's unqueued stop event
    (``/stop``: it wakes this visitor's run from its wait for the next frame) and the queue's cancel of this
    visitor's running event. The client goes on reading the stream, to see when it ends."""
    ids = {d.get("api_name"): d["id"] for d in client.config["dependencies"]}
    rec["stop"] = time.perf_counter() - t0
    rec["frames_at_stop"] = rec["frames"]

    session = client.session_hash
    requests = {   # the page's two requests: its unqueued stop event (posted directly) and the queue's cancel
        "run/stop": {"data": [], "fn_index": ids["stop"], "event_data": None, "session_hash": session},
        "cancel": {"fn_index": ids["run"], "session_hash": session, "event_id": job.communicator.event_id}}
    errors = []

    def send(path):
        try:
            client.page_http.post(client.src_prefixed + path, json=requests[path]).raise_for_status()
        except Exception as e:   # reported with the run
            errors.append(f"Stop: {type(e).__name__}: {e}")

    calls = [threading.Thread(target=send, args=(call,)) for call in requests]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    if errors:
        rec["error"] = errors[0]


def updates(job, poll):
    """The job's updates as they come: looked for every ``poll`` seconds (None: gradio_client's own iterator, which
    looks every millisecond). A message is seen at most ``poll`` late, so times measured are at most that long."""
    if poll is None:
        yield from job
        return
    from gradio_client.utils import Status

    seen, talk = 0, job.communicator
    while True:
        with talk.lock:
            new, finished = talk.job.outputs[seen:], talk.job.latest_status.code == Status.FINISHED
        seen += len(new)
        yield from new
        if finished and not new:
            return
        if not new:
            time.sleep(poll)


def one_run(url, seed, timeout, out, client=None, stop_after=None, verify=TLS, poll=POLL):
    """One user: Run with the default settings (``client``: connected already, else connects first, which then
    counts in the times); records first-frame time, end time, errors, queue ETA, the page's own estimate.
    ``stop_after``: press Stop that many seconds after the first frame. The record is in ``out`` from the start
    (a run cut by the deadline is seen as unfinished)."""
    from gradio_client import handle_file

    import app

    rec = {"seed": seed, "first": None, "end": None, "error": None, "eta": None, "frames": 0, "told": None,
           "stopper": stop_after is not None}
    out.append(rec)
    t0, timer = time.perf_counter(), None
    try:
        c = client or connect(url, verify)
        cfg = app.ModelConfig()
        job = c.submit("upload", None, handle_file(EXAMPLE), 0, app.default_samples(cfg), cfg.chains.latent.steps,
                       cfg.chains.latent.step_size, cfg.chains.data.steps, cfg.chains.data.step_size, True, seed,
                       False, "", api_name="/run")
        t_submit = time.perf_counter()
        while not job.done():  # in the queue: what the client is told (position, estimated wait)
            st = job.status()
            code = str(getattr(st, "code", ""))
            if rec["eta"] is None and getattr(st, "eta", None) is not None:
                rec["eta"], rec["eta_at"] = float(st.eta), time.perf_counter() - t0
            if "PROCESSING" in code or "ITERATING" in code or job.outputs():
                rec["started"] = time.perf_counter() - t0
                break
            time.sleep(0.1)
        last_grid = None
        for update in updates(job, poll):
            if rec["first"] is None:
                grid = update[0] if isinstance(update, (list, tuple)) else None
                if not (isinstance(grid, dict) and str(grid.get("url", "")).startswith("data:image/png")):
                    raise RuntimeError(f"malformed first update: {str(update)[:120]}")
                rec["first"] = time.perf_counter() - t0
                if stop_after is not None:
                    timer = threading.Timer(stop_after, press_stop, (c, job, rec, t0))
                    timer.start()
            grid = update[0] if isinstance(update, (list, tuple)) else None
            if grid != last_grid:   # a frame (the page's empty updates while it waits for its next frame are not)
                rec["frames"] += 1
                last_grid = grid
            status = update[app.RUN_OUTPUTS.index("status")] if isinstance(update, (list, tuple)) else None
            told = TOLD.search(status) if isinstance(status, str) else None
            if told and rec["told"] is None:   # the first estimate the page gives (at its first frame, mostly)
                rec["told"] = (time.perf_counter() - t0, float(told.group(1)), rec["frames"])
            if time.perf_counter() - t0 > timeout:
                job.cancel()
                raise TimeoutError(f"no end after {timeout} s")
        end = time.perf_counter() - t0
        if timer is not None:
            timer.cancel()   # a run that ended before its Stop: not pressed
            timer.join()
        if "stop" not in rec:
            job.result(timeout=timeout)
        rec["end"], rec["submit"] = end, t_submit - t0
    except Exception as e:  # counted as a lost run
        rec["error"] = rec["error"] or f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def classroom(url, users, timeout, deadline, stoppers=0, stop_after=0.5, verify=TLS, poll=POLL):
    """``users`` pages connect, then all press Run at the same moment (the first ``stoppers`` press Stop
    ``stop_after`` seconds after their first frame). Waits until ``deadline`` (time.perf_counter()) at most: the
    runs not done by then are marked as cut."""
    out, threads, start, opening = [], [], [], threading.Semaphore(4)
    barrier = threading.Barrier(users, action=lambda: start.append(time.perf_counter()))

    def user(seed):
        with opening:   # pages open over a minute before a class, not all in the same second
            for _ in range(3):
                try:
                    client = connect(url, verify)
                    break
                except Exception as e:   # a page that could not open (three times) counts as a lost run
                    client = e
        try:
            barrier.wait(max(deadline - time.perf_counter(), 0))
        except threading.BrokenBarrierError:
            client = TimeoutError("the pages did not all open before the deadline")
        if isinstance(client, Exception):
            out.append({"seed": seed, "error": f"connect: {type(client).__name__}: {client}", "stopper": False})
            return
        one_run(url, seed, timeout, out, client, stop_after if seed < stoppers else None, verify, poll)

    for u in range(users):
        t = threading.Thread(target=user, args=(u,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(deadline - time.perf_counter(), 0))
    cut = time.perf_counter() >= deadline
    for r in list(out):
        if r.get("end") is None and r.get("error") is None:
            r["error"] = "cut by the deadline: no end yet"
    lost_pages = users - len(out)   # pages still opening at the deadline
    out += [{"seed": None, "error": "cut by the deadline: the page was not open", "stopper": False}] * lost_pages
    return out, (start[0] if start else time.perf_counter()), cut


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=30, help="simultaneous users (at most 64)")
    p.add_argument("--soak", type=int, default=200, help="runs in a row after the classroom (at most 1000; 0 = none)")
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints/mebm"),
                   help="the model folder the app serves (default: the bundled checkpoints/mebm)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="chains at once in the app (MEBM_CONCURRENCY; default: the app's own)")
    p.add_argument("--fps", default=os.environ.get("MEBM_FPS", "40"),
                   help="MEBM_FPS of the app (default: $MEBM_FPS, else 40)")
    p.add_argument("--run-timeout", type=float, default=300.0,
                   help="seconds a run may take before it counts as lost (default 300)")
    p.add_argument("--batch", choices=("on", "off", "both"), default="on",
                   help="the app's MEBM_BATCH: on (one model pass per step for all visitors), off, or both in turn "
                        "(default on)")
    p.add_argument("--stoppers", type=int, default=0,
                   help="users of the class who press Stop a moment after their first frame (default 0)")
    p.add_argument("--stop-after", type=float, default=0.5,
                   help="seconds after their first frame the stoppers press Stop (default 0.5)")
    p.add_argument("--classes", type=int, default=1,
                   help="classes in a row on the same app, each measured and reported (default 1; the scheduler's "
                        "estimates come from the rounds it measured, the class before included)")
    p.add_argument("--records", default=None,
                   help="write every user's record (times from the press, errors, estimates) to this JSON file "
                        "(default: none)")
    p.add_argument("--client-tls", choices=("shared", "per-request"), default="shared",
                   help="the clients' TLS context: one shared by all, as a browser has (default), or gradio_client's "
                        "own, built for each request")
    p.add_argument("--client-wait", choices=("poll", "spin"), default="poll",
                   help=f"how a client waits for the app's next message: it looks every {POLL * 1000:.0f} ms (a page, "
                        "woken by its messages, costs little; default), or gradio_client's own iterator, which looks "
                        "every millisecond")
    p.add_argument("--deadline", type=float, default=600.0,
                   help="seconds the whole measurement may take: what is not done then counts as lost, the report "
                        "is printed and the exit status is 1 (default 600)")
    a = p.parse_args(argv)
    users, soak = max(1, min(a.users, 64)), max(0, min(a.soak, 1000))
    a.stoppers = max(0, min(a.stoppers, users))
    deadline = time.perf_counter() + a.deadline
    sys.path.insert(0, str(ROOT / "tests"))

    modes = {"on": ["1"], "off": ["0"], "both": ["1", "0"]}[a.batch]
    for k, batch in enumerate(modes):
        last = k == len(modes) - 1
        if not measure(a, users, soak if last else 0, batch, deadline):
            print(f"deadline: {a.deadline:g} s passed; the measurement is incomplete", flush=True)
            return 1
    return 0


def summary(times) -> str:
    return f"p50 {pct(times, 50):.2f} s, p95 {pct(times, 95):.2f} s, max {max(times):.2f} s" if times else "none"


def measure(a, users, soak, batch, deadline) -> bool:
    """One app (MEBM_BATCH=batch): the classroom, then the soak; False when cut by the ``deadline``."""
    from helpers_app import start_app, stop_app

    tmp = Path(tempfile.mkdtemp(prefix="mebm_load_"))
    env = {"MEBM_FPS": str(a.fps), "MEBM_MAX_QUEUE": str(max(64, users + 8)), "MEBM_BATCH": batch,
           "MEBM_SHOW_WAIT": "1"}   # the page's estimate in seconds (the default), measured here
    if a.concurrency:
        env["MEBM_CONCURRENCY"] = str(a.concurrency)
    proc, url = start_app(a.checkpoint, tmp, env)   # 127.0.0.1, a free port
    try:
        print(f"{'batched' if batch == '1' else 'unbatched'} (MEBM_BATCH={batch}): app on {url} (loopback), "
              f"{os.cpu_count()} CPU cores, load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        warm = threading.Thread(target=one_run, args=(url, 999, a.run_timeout, []), daemon=True)
        warm.start()
        warm.join(max(deadline - time.perf_counter(), 0))
        verify = TLS if a.client_tls == "shared" else True   # True: gradio_client's default
        for lesson in range(a.classes):
            if lesson:   # the next class, on the same server: the scheduler has measured the one before
                time.sleep(2.0)
                print(f"class {lesson + 1} of {a.classes}, on the same app:")
            cpu0, app0 = os.times(), cpu_seconds(proc.pid)
            recs, t0, cut = classroom(url, users, a.run_timeout, deadline, a.stoppers, a.stop_after, verify,
                                      POLL if a.client_wait == "poll" else None)
            wall = time.perf_counter() - t0
            if a.records:
                path = Path(a.records if a.classes == 1 else f"{a.records}.{lesson + 1}")
                path.write_text(json.dumps(recs, indent=1))
            cpu1, app1 = os.times(), cpu_seconds(proc.pid)
            ok = [r for r in recs if r["error"] is None and not r["stopper"]]
            stopped = [r for r in recs if r["error"] is None and r["stopper"]]
            lost = [r for r in recs if r["error"] is not None]
            firsts = [r["first"] for r in ok]
            ends = [r["end"] for r in ok]
            print(f"classroom: {users} users at once, {len(ok)} complete runs, " + (f"{len(stopped)} stopped, " if
                  a.stoppers else "") + f"{len(lost)} lost, {wall:.1f} s in all "
                  f"({60 * len(ok) / wall:.1f} runs per minute); CPU seconds meanwhile: the app {app1 - app0:.1f}, "
                  f"the {users} clients {cpu1.user + cpu1.system - cpu0.user - cpu0.system:.1f}")
            if a.stoppers:
                pressed = [r for r in stopped if "stop" in r]
                print(f"  Stop: {a.stoppers} users pressed it {a.stop_after:g} s after their first frame; "
                      f"{len(pressed)} streams ended after it, {len(stopped) - len(pressed)} had ended before; from "
                      f"Stop to the stream's end: {summary([r['end'] - r['stop'] for r in pressed])}; the other "
                      f"{users - a.stoppers} users: {len(ok)} complete")
            if ok:
                print(f"  time to first frame: {summary(firsts)}")
                print(f"  time to last frame:  p50 {pct(ends, 50):.2f} s, p95 {pct(ends, 95):.2f} s; "
                      f"frames per run {statistics.median(r['frames'] for r in ok):.0f}")
                etas = [(r["eta"], r.get("started", r["first"]) - r["eta_at"]) for r in ok
                        if r["eta"] is not None and r["eta"] > 0.5]
                if etas:
                    ratios = [actual / eta for eta, actual in etas]
                    print(f"  queue wait estimates: {len(etas)} users were told a wait; actual/estimated median "
                          f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")
                else:
                    print("  no user was told a wait of more than 0.5 s (no queue, or no estimate)")
                told = [(r["told"][1], r["end"] - r["told"][0], r["told"][2]) for r in ok if r["told"] is not None]
                if told:
                    within = sum(abs(actual - est) <= 0.3 * max(actual, 1e-9) or abs(actual - est) <= 0.5
                                 for est, actual, _ in told)
                    ratios = sorted(actual / max(est, 0.5) for est, actual, _ in told)
                    print(f"  page's estimate ('about N s', half seconds below 10 s, the first one shown: at frame "
                          f"{statistics.median(k for *_, k in told):.0f} median): {len(told)} of {len(ok)} users told; "
                          f"within 30 % (or 0.5 s) of the time their run then took: {within} of {len(told)} "
                          f"({100 * within / len(ok):.0f} % of the complete runs); actual/told median "
                          f"{statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f})")
                else:
                    print("  the page gave no estimate in seconds")
            for r in lost[:5]:
                print(f"  lost: seed {r['seed']}: {r['error']}")
            print(f"  load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            if cut:
                return False
        if soak:
            folder = tmp / "gradio"
            rss0, (f0, b0) = rss_mb(proc.pid), usage(folder)
            t0, errors, times = time.perf_counter(), 0, []
            for i in range(soak):
                out = []
                run = threading.Thread(target=one_run, args=(url, 1000 + i, a.run_timeout, out), daemon=True)
                run.start()
                run.join(max(deadline - time.perf_counter(), 0))
                if run.is_alive():
                    print(f"soak: cut by the deadline after {i} runs ({errors} lost)", flush=True)
                    return False
                errors += out[0]["error"] is not None
                if out[0]["end"]:
                    times.append(out[0]["end"])
                if (i + 1) % 50 == 0:
                    print(f"  after {i + 1} runs: resident memory {rss_mb(proc.pid):.0f} MB, temp folder "
                          f"{usage(folder)[0]} files", flush=True)
            rss1, (f1, b1) = rss_mb(proc.pid), usage(folder)
            print(f"soak: {soak} runs in a row in {time.perf_counter() - t0:.0f} s, {errors} lost, run p50 "
                  f"{pct(times, 50):.2f} s")
            print(f"  resident memory {rss0:.0f} -> {rss1:.0f} MB; temp folder {f0} files / {b0 / 1024:.0f} kB -> "
                  f"{f1} files / {b1 / 1024:.0f} kB")
            print(f"  load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        stop_app(proc)
    return True


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)   # threads of runs cut by the deadline may still wait on the network: never wait for them
