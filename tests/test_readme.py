"""README.md, docs/ and the model cards stay in step with the code: every `python -m` module they name
exists, every repository path they name exists, every flag of a documented command is in that command's
--help, the recipes in scripts/ parse and print their steps (--dry-run) with flags their commands know,
and the README's Python snippet runs as written from another folder.

docs/history.md is left out on purpose: it records commands as they were run, with the flags of the time."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("checkpoints/*/README.md"))]
DOCS = [p for p in DOCS if p.name != "history.md"]
RECIPES = sorted(p for p in (ROOT / "scripts").glob("*.sh") if p.name != "lib.sh")
TOP = ("model", "scripts", "benchmarks", "tests", "checkpoints", "assets", "docs", ".ci")
FILES = ("app.py", "requirements.txt", "requirements-dev.txt", "requirements-peer.txt", "pyproject.toml", "LICENSE")
PLACEHOLDER = re.compile(r"(^|/)[A-Z_]{2,}(/|$)|<|\*|\$|\{")   # PATH, ORG/NAME, CHECKPOINT, <commit>, globs, variables


def rel(path):
    return str(path.relative_to(ROOT))


def code_blocks(text):
    """The shell code blocks of a markdown text (fenced as bash, sh or nothing; and indented blocks, as in the
    cards), continuation lines joined."""
    blocks, current, lang = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                if lang in ("", "bash", "sh"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    blocks += re.findall(r"\n\n((?:    \S.*\n)+)", text)
    return [re.sub(r"\\\n\s*", " ", b) for b in blocks]


def inline_code(text):
    """The inline code spans of a markdown text, outside its fenced blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", prose)


def commands(text):
    """(program, args) for every documented command: `python -m MOD ...` (also under torchrun),
    `python app.py ...` and `bash scripts/X.sh ...`, from code blocks and inline code."""
    lines = [line for block in code_blocks(text) for line in block.splitlines()]
    lines += [span for span in inline_code(text) if span.startswith(("python -m", "python app.py", "bash scripts/"))]
    return parse_commands(lines)


def parse_commands(lines):
    """(program, args) for every command of these shell lines."""
    out = []
    for line in lines:
        line = re.sub(r"(^|\s)#.*", "", line)            # comments
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                tokens = shlex.split(part)
            except ValueError:
                continue
            for i, tok in enumerate(tokens):
                if tok == "-m" and i + 1 < len(tokens) and i > 0:
                    out.append((tokens[i + 1], tokens[i + 2:]))
                    break
                if tok == "app.py" and i > 0 and tokens[i - 1].startswith("python"):
                    out.append(("app.py", tokens[i + 1:]))
                    break
                if tok.startswith("scripts/") and tok.endswith(".sh") and i > 0 and tokens[i - 1] == "bash":
                    out.append((tok, tokens[i + 1:]))
                    break
    return out


def flags(args):
    return {a.split("=", 1)[0] for a in args if a.startswith("--") and len(a) > 2}


def documented():
    """{program: {flag: [doc files]}} over every doc."""
    found = {}
    for doc in DOCS:
        for prog, args in commands(doc.read_text()):
            entry = found.setdefault(prog, {})
            for f in flags(args):
                entry.setdefault(f, set()).add(rel(doc))
    return found


def module_file(mod):
    base = ROOT / mod.replace(".", "/")
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


HELP_SCRIPT = r"""
import contextlib, io, json, runpy, sys
out = {}
for prog in sys.argv[1:]:
    buf = io.StringIO()
    sys.argv = [prog, "--help"]
    try:
        with contextlib.redirect_stdout(buf):
            if prog.endswith(".py"):
                runpy.run_path(prog, run_name="__main__")
            else:
                runpy.run_module(prog, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    except Exception as e:
        buf.write(f"ERROR {type(e).__name__}: {e}")
    out[prog] = buf.getvalue()
sys.stdout = sys.__stdout__
print(json.dumps(out))
"""


def help_texts(programs):
    """--help of every Python program, in one process (torch imported once); the recipes' by bash."""
    py = [p for p in programs if not p.endswith(".sh")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", HELP_SCRIPT, *py], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    texts = json.loads(r.stdout.strip().splitlines()[-1])
    for p in programs:
        if p.endswith(".sh"):
            texts[p] = subprocess.run(["bash", p, "--help"], cwd=ROOT, capture_output=True, text=True,
                                      timeout=60).stdout
    return texts


def has_flag(help_text, flag):
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def ours(mod):
    """A module of this repository (not python -m venv / pytest), named in full (not model.<name>)."""
    return mod.split(".")[0] in ("model", "scripts", "benchmarks") and re.fullmatch(r"[\w.]+", mod) is not None


def test_documented_modules_exist():
    found = documented()
    named = {m for doc in DOCS for m in re.findall(r"python -m ([\w.]+)", doc.read_text())} | set(found)
    missing = [(mod, sorted({d for docs in found.get(mod, {}).values() for d in docs}))
               for mod in sorted(named) if ours(mod) and module_file(mod) is None]
    assert not missing, f"documented modules that do not exist: {missing}"


def test_documented_paths_exist():
    missing = []
    for doc in DOCS:
        text = doc.read_text()
        spans = inline_code(text) + code_blocks(text)
        for span in spans:
            for tok in re.findall(r"(?<![\w./-])((?:%s)/[\w./-]*[\w/]|(?:%s)(?![\w.-]))" % (
                    "|".join(map(re.escape, TOP)), "|".join(map(re.escape, FILES))), span):
                placeholder = tok not in FILES and PLACEHOLDER.search(tok)
                if not placeholder and not (ROOT / tok).exists():
                    missing.append((rel(doc), tok))
        for target in re.findall(r"\]\(([^)\s#]+)", text):   # links and images, relative to the doc
            if not target.startswith(("http://", "https://", "mailto:")) and not (doc.parent / target).exists():
                missing.append((rel(doc), target))
    assert not missing, f"documented paths that do not exist: {sorted(set(missing))}"


def test_documented_flags_exist_in_help():
    found = documented()
    texts = help_texts(sorted(p for p in found if p.endswith((".py", ".sh")) or module_file(p)))
    errors = [(prog, text[text.index("ERROR"):][:200]) for prog, text in texts.items() if "ERROR" in text]
    assert not errors, f"--help failed: {errors}"
    unknown = [(prog, flag, sorted(docs)) for prog, entry in found.items() if prog in texts
               for flag, docs in entry.items() if not has_flag(texts[prog], flag)]
    assert not unknown, f"flags documented but not in the command's --help: {unknown}"


def dry_run(recipe, cwd):
    return subprocess.run(["bash", str(recipe), "--dry-run", "--mnist", "mnist.npz"], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_and_dry_runs(recipe, tmp_path):
    """bash -n, --help, and --dry-run from another folder: exit 0, nothing written, a relative --mnist taken
    from the caller's folder, outputs only under runs/, nothing copied into checkpoints/."""
    assert subprocess.run(["bash", "-n", str(recipe)], capture_output=True).returncode == 0
    helped = subprocess.run(["bash", str(recipe), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--dry-run" in helped.stdout and "Run time" in helped.stdout, helped.stderr
    before = sorted(p.name for p in ROOT.iterdir())
    r = dry_run(recipe, tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before, "a dry run wrote into the repository"
    steps = [line[2:] for line in r.stdout.splitlines() if line.startswith("+ ")]
    assert steps, r.stdout
    assert f"{tmp_path}/mnist.npz" in r.stdout, "a relative --mnist is taken from the caller's folder"
    for step in steps:
        tokens = step.split()
        for i, tok in enumerate(tokens):
            if tok in ("--out", "--image") and i + 1 < len(tokens):
                assert tokens[i + 1].startswith("runs/"), step
        assert not (tokens[0] == "cp" and tokens[-1].startswith("checkpoints")), f"writes into checkpoints/: {step}"


def test_recipe_steps_use_known_flags(tmp_path):
    """Every command a recipe runs uses only flags its --help lists."""
    progs = {}
    for recipe in RECIPES:
        steps = [line[2:] for line in dry_run(recipe, tmp_path).stdout.splitlines() if line.startswith("+ ")]
        for prog, args in parse_commands(steps):
            progs.setdefault(prog, {}).update({f: recipe.name for f in flags(args)})
    assert {"model.train", "model.sample", "model.evaluate", "model.prior", "model.classifier"} <= set(progs)
    texts = help_texts(sorted(p for p in progs if module_file(p)))
    errors = [(prog, text[text.index("ERROR"):][:200]) for prog, text in texts.items() if "ERROR" in text]
    assert not errors, f"--help failed: {errors}"
    unknown = [(p, f, r) for p, fs in progs.items() if p in texts for f, r in sorted(fs.items())
               if not has_flag(texts[p], f)]
    assert not unknown, f"recipes use flags their commands do not know: {unknown}"


def test_recipe_install_is_refused_where_it_would_overwrite_nothing_shipped():
    """Table recipes have no --install: asking for it is a one-line error, not a silent run."""
    r = subprocess.run(["bash", str(ROOT / "scripts/table_readme.sh"), "--install", "--dry-run"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--install" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_load_snippet_runs_from_another_folder(tmp_path):
    """The README's snippet runs as written from another folder (the package importable, as after
    `pip install -e .`; the bundled checkpoint found without a relative path) and prints every stage."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```python", text.index("## Use the model in Python")) + len("```python\n")
    snippet = text[start:text.index("```", start)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    shapes = {line.split()[0]: line.split(" ", 1)[1] for line in r.stdout.splitlines()
              if line.startswith(("proposal", "latent", "data", "final"))}
    assert list(shapes) == ["proposal", "latent", "data", "final"], r.stdout
    assert set(shapes.values()) == {"(4, 5, 3, 28, 28)"}


def test_readme_is_for_users():
    """At most about 250 lines, the screenshot before the first section, no words about how it was made."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 260
    assert text.index("assets/screenshot.png") < text.index("\n## ")
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        hits = re.findall(r"\b(?:sessions?|issue \d+)\b", doc.read_text(), re.I)
        assert not hits, f"{rel(doc)}: {hits}"
