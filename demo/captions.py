"""The caption modality in the page: the second bundled model (five images + caption), a typed caption checked
into token ids (one-line messages that name what is wrong), and the generated captions of every stage as plain
text."""
from __future__ import annotations

import html
import os
from pathlib import Path

import torch

from model.captions import DIGIT_WORDS, MAX_CHARS, NUMERALS, CaptionError, Tokenizer
from model.langevin import stage_title

from .inputs import rejected, shown

IMAGES, CAPTIONS = "images", "captions"
MODEL_CHOICES = [("Five images", IMAGES), ("+ caption", CAPTIONS)]
FOLDER = "mebm_captions"      # the captioned checkpoint's folder, beside the five-image one
# examples for the caption box: HELD_IN wordings of the training captions, then wordings never seen in training
EXAMPLES = ["a thin seven leaning right", "a large bold zero", "an 8 with a thin stroke",
            "the digit 3, bold", "bold and leaning left, a two", "the small number 4", "a 6 that is large and thin"]
HELD_IN = 3


def caption_checkpoint(explicit: str | None, checkpoint: str | Path) -> Path | None:
    """The captioned checkpoint's folder: ``explicit`` (the app's --caption-checkpoint), else
    MEBM_CAPTION_CHECKPOINT, else ``mebm_captions`` beside the five-image ``checkpoint``; None when that folder
    has no config.json (the page then shows the five-image model alone)."""
    chosen = explicit or os.environ.get("MEBM_CAPTION_CHECKPOINT") or Path(checkpoint).parent / FOLDER
    path = Path(chosen)
    return path if (path / "config.json").is_file() else None


def model_choice(value, available: bool) -> str:
    """The model a visitor chose (IMAGES or CAPTIONS); the app's one line for anything else."""
    if value in (None, ""):
        return IMAGES
    if value not in (IMAGES, CAPTIONS):
        raise rejected(f"'model' must be {IMAGES!r} or {CAPTIONS!r} (got {shown(value)}).")
    if value == CAPTIONS and not available:
        raise rejected("This server has no model with captions: choose the five-image model.")
    return value


def vocabulary(tokenizer: Tokenizer) -> str:
    """The words a caption may use, as one line of plain text (the pad word left out)."""
    return " ".join(w for w in tokenizer.words if w != tokenizer.words[tokenizer.pad_id])


def caption_ids(text, tokenizer: Tokenizer) -> torch.Tensor:
    """Token ids [1, L] of a visitor's caption; the app's one line (the visitor's words quoted as plain text) for
    an empty, over-long, non-ASCII or unknown-word caption, or one of too many words."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise rejected(f"The caption must be text (got {shown(text)}).")
    if len(text) > MAX_CHARS:
        raise rejected(f"The caption is too long: {len(text)} characters, at most {MAX_CHARS}.")
    if not text.strip():
        raise rejected("The caption is empty: type a few words, e.g. 'a bold 3'.")
    odd = list(dict.fromkeys(c for c in text if not c.isascii()))   # in order of appearance
    if odd:
        raise rejected(f"The caption may use plain English letters, digits and commas only (found "
                       f"{shown(''.join(odd[:5]))}).")
    try:
        return torch.tensor([tokenizer.encode(text)], dtype=torch.int64)
    except CaptionError as e:
        if e.unknown:
            words = ", ".join(shown(w[:20]) for w in e.unknown[:5]) + (f" and {len(e.unknown) - 5} more"
                                                                        if len(e.unknown) > 5 else "")
            raise rejected(f"Unknown word{'s' if len(e.unknown) > 1 else ''} in the caption: {words}. The model "
                           f"knows {len(tokenizer) - 1} words, listed under the caption box.") from None
        said = html.escape(str(e), quote=False)      # e.g. "the caption has 17 words; at most 16"
        raise rejected(said[:1].upper() + said[1:] + ".") from None


def caption_digit(caption: str) -> int | None:
    """The digit a caption names (as a word or a numeral), or None when it names none or two."""
    named = {DIGIT_WORDS.index(w) if w in DIGIT_WORDS else NUMERALS.index(w) for w in Tokenizer().split(caption)
             if w in DIGIT_WORDS or w in NUMERALS}
    return named.pop() if len(named) == 1 else None


def caption_mask(n_images: int) -> torch.Tensor:
    """The observed mask [M + 1] of a caption alone: no image, the caption (last) given."""
    mask = torch.zeros(n_images + 1, dtype=torch.bool)
    mask[-1] = True
    return mask


def stage_captions(run, upto=None) -> str:
    """Each sample's caption after every stage of ``run`` (a demo.view.PageRun), as plain text; "" for a model
    without captions. ``upto``: as the run stood at that frame. A typed caption is given once: it never moves."""
    if run.text is not None:
        return f"Given caption: {run.caption}\n(held fixed in every stage; the images are generated from it)"
    lines = []
    lasts = run.lasts(upto)
    for stage in run.expected_stages():
        snap = lasts.get(stage)
        total = run.player.totals.get(stage) or 0
        step = f" · step {snap.step}/{total}" if snap is not None and stage != "proposal" else ""
        lines.append(stage_title(stage) + step)
        if snap is None or snap.captions is None:
            lines.append("  not reached yet")
            continue
        lines += [f"  {b + 1}: {c}" for b, c in enumerate(snap.captions)]
    if not any(s.captions is not None for s in lasts.values()):
        return ""
    return "\n".join(lines)
