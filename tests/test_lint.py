"""ruff (its settings in pyproject.toml: the line limit, the rules) holds on the whole repository; the slow-test
table names tests that exist."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff_command():
    try:
        import ruff  # noqa: F401  (the dev extra installs it as a module)
        return [sys.executable, "-m", "ruff"]
    except ImportError:
        exe = shutil.which("ruff")
        if exe is None:
            pytest.skip("ruff is not installed (pip install -e .[dev]): the lint check is skipped")
        return [exe]


def test_ruff_finds_nothing():
    r = subprocess.run(ruff_command() + ["check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-1000:]


def test_slow_table_names_existing_tests():
    """A renamed test must not lose its slow mark silently: every name in conftest's SLOW_TESTS is defined in
    its file, and every SLOW_MODULES file exists."""
    from conftest import SLOW_MODULES, SLOW_TESTS

    here = Path(__file__).parent
    for f, tests in SLOW_TESTS.items():
        defined = set(re.findall(r"^def (test_\w+)\(", (here / f).read_text(), re.M))
        assert tests <= defined, f"{f}: {sorted(tests - defined)} named in SLOW_TESTS but not defined"
    assert all((here / f).is_file() for f in SLOW_MODULES)
