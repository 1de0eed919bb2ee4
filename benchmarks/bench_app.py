"""Speed of the demo with its default settings (3 samples x M modalities, the chain from noise off).

    python -m benchmarks.bench_app [--checkpoint checkpoints/mebm] [--repeats 5] [--no-direct] [--no-http]
                                   [--no-browser] [--compare] [--debug] [--batch env|both]

Three measurements, each the median over --repeats runs of the default chain on MNIST example 7:
  direct   run_chain() called in-process: time to the first frame, to the final picture, and frames per
           second (pictures encoded as PNG as the page gets them);
  http     `python app.py` in a subprocess driven by gradio_client: the same, as a client sees it;
  browser  Chromium (Playwright) clicks Run: time until the grid first shows, until 'Done', and how
           often the grid picture changed per second in the page.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "assets/example_7.png")


def direct(checkpoint, repeats, compare=False):
    import torch

    import app
    from model import render

    torch.set_num_threads(1)
    app.setup(checkpoint=checkpoint, offline=True)
    cfg = app.model_config()
    ch = cfg.chains
    args = ("upload", None, EXAMPLE, 0, app.default_samples(cfg), ch.latent.steps, ch.latent.step_size, ch.data.steps,
            ch.data.step_size, True, 0, compare, "")

    def frames():
        for out in app.run_chain(*args):
            render.png_bytes(out[0])  # what LiveImage does before sending
            yield out

    list(frames())  # warm-up
    rows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stamps = [time.perf_counter() - t0 for _ in frames()]
        n = len(stamps)
        rows.append((stamps[0], stamps[-1], None, (n - 1) / (stamps[-1] - stamps[0])))
    return rows, n


def http(checkpoint, repeats, compare=False, debug=False):
    sys.path.insert(0, str(ROOT / "tests"))
    from gradio_client import Client, handle_file
    from helpers_app import start_app, stop_app

    import app

    tmp = Path(tempfile.mkdtemp())
    proc, url = start_app(checkpoint, tmp, {"MEBM_FPS": os.environ.get("MEBM_FPS", "40")})
    try:
        c = Client(url, verbose=False, download_files=False)
        cfg = app.ModelConfig()
        ch = cfg.chains
        args = ("upload", None, handle_file(EXAMPLE), 0, app.default_samples(cfg), ch.latent.steps,
                ch.latent.step_size, ch.data.steps, ch.data.step_size, True, 0, compare, "")
        c.submit(*args, api_name="/run").result()
        rows = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            job = c.submit(*args, api_name="/run")
            stamps = []
            for _ in job:
                stamps.append(time.perf_counter() - t0)
            job.result()
            rows.append((stamps[0], stamps[-1], None, (len(stamps) - 1) / (stamps[-1] - stamps[0])))
        if debug:
            print("server log:", tmp / "app.log")
        return rows, url, proc, tmp
    except BaseException:
        stop_app(proc)
        raise


def browser(url, repeats, compare=False, debug=False):
    from playwright.sync_api import expect, sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
    watch = """() => { (window.__observers || []).forEach(o => o.disconnect()); window.__observers = [];
      window.__changes = []; const t0 = performance.now();
      const note = () => { const img = document.querySelector('#grid img');
        const src = img && img.getAttribute('src');
        if (src && src !== window.__last) { window.__last = src; window.__changes.push(performance.now() - t0); } };
      const obs = new MutationObserver(note); window.__observers.push(obs);
      obs.observe(document.querySelector('#grid'), {subtree: true, childList: true, attributes: true}); }"""
    rows = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = b.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url)
        if compare:
            page.get_by_role("tab", name="Settings").click()
            page.locator("#compare input").check()
        if debug:
            t00 = time.perf_counter()
            page.on("request", lambda r: print(f"{time.perf_counter() - t00:.3f} {r.method} {r.url[len(url):][:60]}")
                    if "/gradio_api/file=" not in r.url else None)
        page.get_by_role("tab", name="Upload").click()
        page.locator("#upload input[type=file]").set_input_files(EXAMPLE)
        expect(page.locator("#source input[value=upload]")).to_be_checked()
        for i in range(repeats + 1):
            page.evaluate("() => { window.__last = document.querySelector('#grid img')?.getAttribute('src'); }")
            page.evaluate(watch)
            if debug:
                print(f"{time.perf_counter() - t00:.3f} click")
            page.locator("#run").click()
            expect(page.locator("#status")).not_to_contain_text("Done", timeout=10000)
            expect(page.locator("#status")).to_contain_text("Done", timeout=60000)
            page.wait_for_timeout(300)
            ch = page.evaluate("() => window.__changes")
            if debug:
                print([round(c) for c in ch])
            if i and len(ch) > 2:  # the first run warms up
                rows.append((ch[0] / 1000, ch[-1] / 1000, None, (len(ch) - 1) / ((ch[-1] - ch[0]) / 1000)))
        b.close()
    return rows


def report(name, rows, n=None):
    med = [statistics.median(r[i] for r in rows) if rows[0][i] is not None else None for i in range(4)]
    extra = f", {n} updates per run" if n else ""
    print(f"{name:8s} first frame {med[0]:.3f} s | whole chain (last picture) {med[1]:.3f} s"
          + f" | {med[3]:.1f} frames/s{extra}  (median of {len(rows)})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints/mebm"),
                   help="the model folder (default: the bundled checkpoints/mebm)")
    p.add_argument("--repeats", type=int, default=5, help="runs per measurement; the median is reported (default 5)")
    p.add_argument("--no-http", action="store_true", help="skip the measurement over HTTP (the app in a subprocess)")
    p.add_argument("--no-browser", action="store_true", help="skip the measurement in Chromium")
    p.add_argument("--compare", action="store_true", help="also run the data steps from noise (doubles the work)")
    p.add_argument("--no-direct", action="store_true", help="skip the in-process measurement")
    p.add_argument("--debug", action="store_true", help="print the page's requests and grid changes")
    p.add_argument("--batch", choices=("env", "both"), default="env",
                   help="in-process: the app's MEBM_BATCH as set (env), or the batched and the unbatched path "
                        "alternated twice in this run, each with the load average (both) (default env)")
    a = p.parse_args()
    compare = a.compare
    print(f"default chain: 3 samples, chain from noise {'on' if compare else 'off'}, "
          f"MEBM_FPS={os.environ.get('MEBM_FPS', '40')}, "
          f"{os.cpu_count()} CPU cores, torch threads 1 per chain")
    if not a.no_direct:
        for batch in ([os.environ.get("MEBM_BATCH")] if a.batch == "env" else ["1", "0", "1", "0"]):
            if batch is not None:
                os.environ["MEBM_BATCH"] = batch
            rows, n = direct(a.checkpoint, a.repeats, compare)
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            report("direct" if batch is None else f"direct, {'batched' if batch == '1' else 'unbatched'} "
                   f"(load {load})", rows, n)
    if a.no_http:
        return
    rows, url, proc, tmp = http(a.checkpoint, a.repeats, compare, a.debug)
    try:
        report("http", rows)
        if not a.no_browser and Path("/usr/bin/chromium").exists():
            report("browser", browser(url, a.repeats, compare, a.debug))
    finally:
        from helpers_app import stop_app
        stop_app(proc)


if __name__ == "__main__":
    main()
