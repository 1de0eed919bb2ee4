"""The layers point one way: the library (model/) never imports the demo (app.py, gradio, a demo package) nor
the scripts; read from the source with ast, so an import inside a function counts too."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"gradio", "gradio_client", "app", "demo", "scripts", "benchmarks", "tests"}


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (relative imports stay inside the package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_the_library_never_imports_the_demo():
    sources = sorted((ROOT / "model").rglob("*.py"))
    assert len(sources) > 10
    bad = {p.relative_to(ROOT).as_posix(): sorted(imported_modules(p) & FORBIDDEN) for p in sources}
    assert not {k: v for k, v in bad.items() if v}


def test_the_check_sees_imports_anywhere(tmp_path):
    """The check itself: imports at the top, inside a function, from a submodule and by importlib are found."""
    src = tmp_path / "m.py"
    src.write_text("import os\nfrom . import networks\n\ndef f():\n    import gradio as gr\n    from app import demo\n"
                   "    import importlib\n    importlib.import_module('demo.ui')\n")
    assert imported_modules(src) == {"os", "gradio", "app", "importlib", "demo"}
