"""The README's "Load a trained model" snippet runs as written from another folder (the package importable,
as after `pip install -e .`; the bundled checkpoint found without a relative path)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_load_snippet_runs_from_another_folder(tmp_path):
    text = (ROOT / "README.md").read_text()
    start = text.index("```python", text.index("### Load a trained model")) + len("```python\n")
    snippet = text[start:text.index("```", start)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    shapes = {line.split()[0]: line.split(" ", 1)[1] for line in r.stdout.splitlines()
              if line.startswith(("proposal", "latent", "data"))}
    assert shapes.keys() >= {"proposal", "latent", "data"} and set(shapes.values()) == {"(4, 5, 3, 28, 28)"}
