"""Memory over many visitors: every run from a new gradio_client (a new session), one after another.

    python -m benchmarks.soak_sessions [--runs 400] [--checkpoint DIR] [--every 50]

The app runs in a subprocess on 127.0.0.1 with its own temp folder; by default on a tiny random model with
short chains (what is measured is what the server keeps per visitor, not the chains' cost). Prints the
server's resident memory every ``--every`` runs, and the growth per session after the first 50 (by then the
app's 32 kept chains are full and its working memory is set): a flat line means memory does not grow with
the number of visitors. The load average is printed beside the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "assets/example_7.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=400, help="runs, each from a new session (default 400)")
    p.add_argument("--checkpoint", default=None, help="weights folder (default: a tiny random model)")
    p.add_argument("--every", type=int, default=50, help="print the resident memory every N runs (default 50)")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from gradio_client import Client, handle_file
    from helpers_app import rss_mb, save_tiny_model, start_app, stop_app

    tmp = Path(tempfile.mkdtemp(prefix="mebm_soak_"))
    checkpoint = a.checkpoint or save_tiny_model(tmp / "mebm")
    proc, url = start_app(checkpoint, tmp, {"MEBM_FPS": "0"})
    try:
        print(f"app on {url}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}", flush=True)
        marks, t0 = {}, time.perf_counter()
        for i in range(a.runs):
            c = Client(url, verbose=False, download_files=False)
            c.predict("upload", None, handle_file(EXAMPLE), 0, 2, 3, 0.03, 4, 1.0, True, i, False, "", True,
                      api_name="/run")
            if (i + 1) % a.every == 0 or i + 1 == a.runs:
                time.sleep(2.5)   # past the app's trim interval
                marks[i + 1] = rss_mb(proc.pid)
                print(f"after {i + 1} runs: resident memory {marks[i + 1]:.0f} MB", flush=True)
        first = min((k for k in marks if k >= 50), default=None)
        last = max(marks)
        if first is not None and last > first:
            grown = marks[last] - marks[first]
            print(f"runs {first}-{last}: {marks[first]:.0f} -> {marks[last]:.0f} MB, {grown:+.0f} MB "
                  f"({grown / (last - first):+.3f} MB per session); {time.perf_counter() - t0:.0f} s; "
                  f"load average {os.getloadavg()[0]:.1f}")
    finally:
        stop_app(proc)


if __name__ == "__main__":
    main()
