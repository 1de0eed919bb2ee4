"""Where the repository's files are: the bundled checkpoints are found from the package's location, so that the
defaults (``checkpoints/mebm``, the judges ``checkpoints/classifier``) work from any working folder."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent   # the repository checkout this package was imported from


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder as given or, when a relative path is not there, the same path in the repository checkout
    this package comes from (where the bundled ``checkpoints/...`` are): so ``--checkpoint checkpoints/mebm`` and the
    judges' default ``checkpoints/classifier`` work from any working folder."""
    path = Path(path)
    if path.exists() or path.is_absolute() or not (REPO_ROOT / path).exists():
        return path
    return REPO_ROOT / path
