"""A class pressing Run at once, in one process and without a browser or HTTP: where the app's time goes.

    python -m benchmarks.profile_class [--users 30] [--batch on|off] [--out runs/profile_class.txt]
    py-spy record --format raw -o runs/class.raw -- python -m benchmarks.profile_class   # then --split it:
    python -m benchmarks.profile_class --split runs/class.raw

Each user's Run goes through Gradio's own ``Blocks.process_api`` as the queue calls it (preprocess, the event's
generator one step at a time in a worker thread, postprocess: the PNG data URLs, the plots' and tables'
conversion, the streaming diffs), and every message is serialised with orjson as the queue's stream does; only the
network and the clients are left out. The input is example 7 as a share link's digit (modality 0, the default
settings, each user its own seed). Printed: time to the first frame and to the last (p50 / p95), all done, frames
per run, and the CPU seconds of the process. ``--split``: a py-spy raw profile of such a run summed by what the
samples were doing (model pass, PNG, classifier, plots, Gradio, serialisation, ...).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets/example_7.png"

# (what, pattern in a py-spy frame "function (file:line)"): the first match from the leaf up names a sample
IDLE = r"^(Condition\.wait|Event\.wait|EpollSelector\.select|_pace|held|Queue\.get|Job\.stream) "   # a leaf that waits
PARTS = [
    ("start-up (not counted)", r"_find_and_load|^(build_demo|setup|warm_up|load_model) "),
    ("PNG encoding", r"(^|\.)png_bytes \(|ImageFile\._save|zlib"),
    ("classifier read-outs", r"^classify \(.*app\.py|Classifiers?\.predict "),
    ("model pass (scheduler)", r"^Scheduler\.(_step|_propose|_update|_decoded|_next_stage) "),
    ("model pass (own chain)", r"langevin\.py|sampler\.py"),
    ("plots, table, what-changed (app side)", r"^(figures|latent_picture|energy_histogram) |^PageRun\.(plots|trace|"
                                             r"readout|changes|explain) "),
    ("plots and tables (Gradio side)", r"native_plot\.py|dataframe\.py"),
    ("strip and captions", r"^PageRun\.strip |stage_strip "),
    ("frame intake (take, record)", r"^(ChainPlayer|PageRun)\.(take|record) "),
    ("Gradio: gr.update's new component and page config", r"^(SessionState\._update_config|SessionState\.__setitem__|"
                                                          r"updateable\.<locals>\.wrapper) "),
    ("Gradio postprocess, other", r"postprocess_data|handle_streaming"),
    ("message serialisation (orjson)", r"^serialise "),
    ("scheduler, other", r"^Scheduler\."),
    ("run_chain, other (incl. pacing)", r"^run_chain "),
    ("threads, event loop, other", r"."),
]


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))] if values else float("nan")


def split(raw_path: str) -> list[tuple[str, int]]:
    """A py-spy raw profile ("frame;frame;... count", root first) summed by PARTS, leaving out the samples of
    threads that wait (IDLE: py-spy counts a Python-level wait as busy)."""
    counts: Counter = Counter()
    for line in Path(raw_path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")[::-1]
        if re.search(IDLE, frames[0]):
            continue
        for what, pattern in PARTS:
            if any(re.search(pattern, f) for f in frames):
                counts[what] += int(n)
                break
    return counts.most_common()


def serialise(data) -> int:
    import orjson

    msg = {"msg": "process_generating", "output": {"data": data}, "success": True}
    return len(orjson.dumps(msg, option=orjson.OPT_SERIALIZE_NUMPY, default=str))


class Visitor:
    def __init__(self, i):
        self.session_hash = f"user{i}"
        self.query_params, self.headers, self.username = {}, {}, None


async def user(demo, block_fn, seed, rec):
    import app
    from gradio.state_holder import SessionState
    from model.preprocess import encode_digit
    from PIL import Image
    import numpy as np

    cfg = app.model_config()
    digit = encode_digit(np.asarray(Image.open(EXAMPLE).convert("L").resize((28, 28))))
    inputs = ["link", None, None, 0, app.default_samples(cfg), cfg.chains.latent.steps, cfg.chains.latent.step_size,
              cfg.chains.data.steps, cfg.chains.data.step_size, True, seed, False, digit, True, app.IMAGES, ""]
    state, request, iterator, t0 = SessionState(demo), Visitor(seed), None, time.perf_counter()
    while True:
        out = await demo.process_api(block_fn, inputs, state, request, iterator, session_hash=request.session_hash,
                                     event_id=f"e{seed}")
        if not out["is_generating"] and iterator is not None:
            break
        serialise(out["data"])
        rec["frames"] = rec.get("frames", 0) + 1
        rec.setdefault("first", time.perf_counter() - t0)
        iterator = out["iterator"]
        if not out["is_generating"]:
            break
    rec["end"] = time.perf_counter() - t0


async def classroom(demo, block_fn, users):
    recs = [{} for _ in range(users)]
    t0 = time.perf_counter()
    await asyncio.gather(*(user(demo, block_fn, 100 + i, r) for i, r in enumerate(recs)))
    return recs, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=30, help="users pressing Run at once (default 30)")
    p.add_argument("--batch", choices=("on", "off"), default="on", help="the app's MEBM_BATCH (default on)")
    p.add_argument("--fps", default=os.environ.get("MEBM_FPS", "40"), help="the app's MEBM_FPS (default 40)")
    p.add_argument("--split", default=None, help="sum a py-spy raw profile by what it was doing, and stop")
    a = p.parse_args(argv)
    if a.split:
        parts = dict(split(a.split))
        start = parts.pop(PARTS[0][0], 0)
        total = sum(parts.values()) or 1
        print(f"{total} busy samples of the class ({start} more at start-up, not counted):")
        for what, n in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"{100 * n / total:5.1f} %  {what}")
        return
    os.environ.update(MEBM_BATCH="1" if a.batch == "on" else "0", MEBM_FPS=str(a.fps))
    import anyio.to_thread
    import torch

    import app

    torch.set_num_threads(1)
    app.setup()
    app.warm_up()
    demo = app.build_demo()
    block_fn = next(fn for fn in demo.fns.values() if fn.api_name == "run")

    async def go():
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(40, 2 * app.chain_concurrency())
        await classroom(demo, block_fn, 1)   # warm-up
        return await classroom(demo, block_fn, a.users)

    print(f"{a.users} users, MEBM_BATCH={os.environ['MEBM_BATCH']}, {os.cpu_count()} CPU cores, load average "
          f"before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    cpu0 = time.process_time()
    recs, wall = asyncio.run(go())
    firsts, ends = [r["first"] for r in recs if "first" in r], [r["end"] for r in recs if "end" in r]
    print(f"all done in {wall:.1f} s; CPU {time.process_time() - cpu0:.1f} s; frames per run "
          f"{statistics.median(r.get('frames', 0) for r in recs):.0f}; complete {len(ends)} of {a.users}")
    print(f"  first frame p50 {pct(firsts, 50):.2f} s, p95 {pct(firsts, 95):.2f} s; last frame p50 "
          f"{pct(ends, 50):.2f} s, p95 {pct(ends, 95):.2f} s")
    print(f"  load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
