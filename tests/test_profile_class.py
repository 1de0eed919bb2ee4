"""benchmarks.profile_class --split: a py-spy raw profile summed by what the samples were doing."""
from benchmarks.profile_class import split

RAW = """\
Thread.run (threading.py:1);Scheduler._loop (demo/scheduler.py:1);Scheduler.advance (demo/scheduler.py:2);\
Scheduler._step (demo/scheduler.py:3);forward (torch/nn/modules/conv.py:4) 7
Handle._run (asyncio/events.py:1);Blocks.postprocess_data (gradio/blocks.py:2);LiveImage.postprocess \
(demo/components.py:3);png_bytes (model/render.py:4);Image.save (PIL/Image.py:5) 3
Thread.run (threading.py:1);run_chain (app.py:2);classify (app.py:3);Classifiers.predict (model/classifier.py:4) 2
Thread.run (threading.py:1);WorkerThread.run (anyio/_backends/_asyncio.py:2);Queue.get (queue.py:3);\
Condition.wait (threading.py:4) 50
<module> (app.py:1);build_demo (app.py:2) 4
"""


def test_split_names_each_sample_by_the_first_part_from_the_leaf_up_and_leaves_out_waits(tmp_path):
    raw = tmp_path / "class.raw"
    raw.write_text(RAW)
    assert dict(split(str(raw))) == {"model pass (scheduler)": 7, "PNG encoding": 3, "classifier read-outs": 2,
                                     "start-up (not counted)": 4}


def test_a_user_runs_through_the_apps_own_process_api(tmp_path, monkeypatch):
    """The driver sends what the page sends (every input of the Run event): one user's run streams frames to
    its end."""
    import asyncio

    import app
    from benchmarks.profile_class import classroom
    from helpers_app import save_tiny_model

    monkeypatch.setenv("MEBM_FPS", "0")
    app.setup(checkpoint=str(save_tiny_model(tmp_path / "mebm")), offline=True)
    try:
        demo = app.build_demo()
        block_fn = next(fn for fn in demo.fns.values() if fn.api_name == "run")
        recs, _ = asyncio.run(classroom(demo, block_fn, 1))
        assert recs[0]["frames"] > 1 and "end" in recs[0]
    finally:
        if app._LOADED.get("scheduler") is not None:
            app._LOADED["scheduler"].close()
        app._LOADED.clear()
