"""Captions for the PolyMNIST-style tuples: measured style attributes, a seeded caption builder, a tokenizer.

Every tuple gets one English caption naming its digit and, in some wordings, style attributes measured on the
digit of modality 0 (plain ink in the built-in set): stroke thickness, slant and size. docs/captions.md lists
the vocabulary, the templates and the thresholds.

- ``measure(mask)``: the three raw measurements of binary digit masks [..., 28, 28].
- ``attribute_classes(measures, labels)``: the measurements as word classes (0, 1, 2 per attribute).
- ``ink_mask(images)``: the binary digit mask of PolyMNIST images [N, 3, 28, 28] (any modality, any release).
- ``build_captions(labels, classes, seed, split, held_out)``: one caption per tuple from the templates.
- ``describe(images, labels, seed, split)``: all of the above at once (what the data cache stores).
- ``Tokenizer``: word-level, fixed vocabulary, fixed length, pad id 0; unknown words are named, never guessed.

Everything here is numpy and deterministic: the same images, labels and seed give the same captions on any
machine, offline.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------- attributes

ATTRIBUTES = ("thickness", "slant", "size")
# the words of each attribute's three classes, in class order (0, 1, 2)
ATTRIBUTE_WORDS = {
    "thickness": ("thin", "regular", "bold"),
    "slant": ("leaning left", "upright", "leaning right"),
    "size": ("small", "medium-sized", "large"),
}
# Thresholds between the classes. Thickness: the tertiles of the MNIST training set (60,000 digits binarised at
# > 128, as the modalities are), so each word covers a third of it. Slant: symmetric about upright, a shear of
# 0.15 (about 8.5 degrees); on MNIST 17 % lean left, 40 % are upright, 43 % lean right. Size: the tertiles of
# the bounding-box area within each digit class (a 1 is narrow by nature: "a large 1" is large for a 1).
# ``thresholds(images, labels)`` recomputes the tertiles from any training split.
THICKNESS_THRESHOLDS = (1.7321, 2.1633)
SLANT_THRESHOLDS = (-0.15, 0.15)
SIZE_THRESHOLDS = ((320.0, 360.0), (120.0, 200.0), (320.0, 360.0), (280.0, 320.0), (280.0, 320.0),
                   (300.0, 360.0), (240.0, 306.0), (280.0, 320.0), (260.0, 320.0), (240.0, 280.0))


def measure(mask: np.ndarray) -> np.ndarray:
    """Raw style measurements of binary digit masks [..., 28, 28] (True = ink): float32 [..., 3] of

    - thickness: 2 * ink area / perimeter, the perimeter counted as ink-to-background pixel edges (4-neighbour).
      For a long stroke of width w it tends to w (a 2 x 20 bar: 1.8, a 5 x 20 bar: 4.0), in pixels.
    - slant: the second-moment shear -cov(col, row) / var(row) of the ink pixels: how many columns the ink
      moves right per row upward. 0 = upright, > 0 = the top leans right, < 0 = leans left (tan of the angle
      from vertical).
    - size: the area of the ink's bounding box, in pixels (height x width).

    An empty mask measures (0, 0, 0).
    """
    mask = np.asarray(mask, bool)
    area = mask.sum((-2, -1)).astype(np.float64)
    pad = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    perimeter = ((pad[..., 1:, :] != pad[..., :-1, :]).sum((-2, -1))
                 + (pad[..., :, 1:] != pad[..., :, :-1]).sum((-2, -1)))
    safe = np.maximum(area, 1.0)
    thickness = 2.0 * area / np.maximum(perimeter, 1)
    rows = np.arange(mask.shape[-2], dtype=np.float64)[:, None]
    cols = np.arange(mask.shape[-1], dtype=np.float64)[None, :]
    mr = (mask * rows).sum((-2, -1)) / safe
    mc = (mask * cols).sum((-2, -1)) / safe
    dr = rows - mr[..., None, None]
    dc = cols - mc[..., None, None]
    var_r = (mask * dr ** 2).sum((-2, -1)) / safe
    cov = (mask * dr * dc).sum((-2, -1)) / safe
    slant = np.where(var_r > 0, -cov / np.maximum(var_r, 1e-12), 0.0)
    any_r, any_c = mask.any(-1), mask.any(-2)
    height = np.where(area > 0, mask.shape[-2] - any_r.argmax(-1) - any_r[..., ::-1].argmax(-1), 0)
    width = np.where(area > 0, mask.shape[-1] - any_c.argmax(-1) - any_c[..., ::-1].argmax(-1), 0)
    return np.stack([thickness, slant, height * width], -1).astype(np.float32)


def attribute_classes(measures: np.ndarray, labels: np.ndarray, thickness=THICKNESS_THRESHOLDS,
                      slant=SLANT_THRESHOLDS, size=SIZE_THRESHOLDS) -> np.ndarray:
    """Word classes int8 [N, 3] (thickness, slant, size; 0, 1, 2 index ``ATTRIBUTE_WORDS``) of measurements
    [N, 3] (``measure``) of digits with ``labels`` [N]. A value on a threshold goes to the middle class."""
    measures = np.asarray(measures, np.float64)
    labels = np.asarray(labels, np.int64)
    lo_hi = np.array(size, np.float64)[labels]                       # [N, 2]: per-class size tertiles
    out = np.empty((len(measures), 3), np.int8)
    for a, (lo, hi) in enumerate((np.broadcast_to(np.array(thickness), (len(labels), 2)).T,
                                  np.broadcast_to(np.array(slant), (len(labels), 2)).T, lo_hi.T)):
        v = measures[:, a]
        out[:, a] = np.where(v < lo, 0, np.where(v > hi, 2, 1))
    return out


def thresholds(images: np.ndarray, labels: np.ndarray) -> dict:
    """The tertile thresholds of a training split (uint8 grey digits [N, 28, 28] binarised at > 128, or
    masks): {"thickness": (lo, hi), "size": ((lo, hi) per digit class)}. The frozen constants above are this
    on the MNIST training set; slant keeps its symmetric definition."""
    mask = images > 128 if images.dtype == np.uint8 else np.asarray(images, bool)
    m = measure(mask).astype(np.float64)
    labels = np.asarray(labels)
    tertiles = [100 / 3, 200 / 3]
    return {"thickness": tuple(float(v) for v in np.percentile(m[:, 0], tertiles)),
            "size": tuple(tuple(float(v) for v in np.percentile(m[labels == c, 2], tertiles)) if (labels == c).any()
                          else SIZE_THRESHOLDS[c] for c in range(10))}


def ink_mask(images: np.ndarray, iters: int = 8) -> np.ndarray:
    """The digit mask bool [N, 28, 28] of PolyMNIST images [N, 3, 28, 28] (uint8 0..255 or float 0..1).

    The recipe inverts the background's colours where the digit is, so ink and background form two colour
    groups: a two-means clustering of each image's pixel colours, the smaller group taken as ink (a digit
    covers under half of the square). On plain-ink images (white on black, modality 0 of the built-in set) it
    is exactly the binarised digit; on textured ones it is an estimate (docs/captions.md).
    """
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    out = np.empty((len(images), 28, 28), bool)
    for s in range(0, len(images), 4096):
        px = images[s:s + 4096].reshape(-1, 3, 784).transpose(0, 2, 1).astype(np.float32) / scale  # [n, 784, 3]
        bright = px.sum(-1)
        idx = np.arange(len(px))
        centres = np.stack([px[idx, bright.argmin(1)], px[idx, bright.argmax(1)]], 1)            # [n, 2, 3]
        group = None
        for _ in range(iters):
            d = ((px[:, :, None] - centres[:, None]) ** 2).sum(-1)                                 # [n, 784, 2]
            previous, group = group, d.argmin(-1)                                                  # [n, 784]
            if previous is not None and (previous == group).all():
                break
            for k in range(2):
                w = (group == k)[..., None]
                n_k = w.sum(1)
                centres[:, k] = np.where(n_k > 0, (px * w).sum(1) / np.maximum(n_k, 1), centres[:, k])
        ones = group.sum(1, keepdims=True)
        ink = np.where(ones <= 392, group == 1, group == 0)
        out[s:s + 4096] = ink.reshape(-1, 28, 28)
    return out


# ---------------------------------------------------------------- the caption builder

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMERALS = tuple(str(d) for d in range(10))
FILLER_WORDS = ("a", "an", "the", "digit", "number", "and", ",", "written", "that", "is", "with", "stroke")

# Templates: {digit} is the digit's word or numeral (each with probability 1/2), {thickness}, {slant}, {size}
# the attribute words. Held-in templates make the training captions; held-out ones only test captions, to
# check that a model reads the words rather than recognising a wording.
TEMPLATES = {
    "bare": "{digit}",
    "article": "a {digit}",
    "thickness": "a {thickness} {digit}",
    "size": "a {size} {digit}",
    "digit-slant": "the digit {digit} {slant}",
    "comma-thickness-slant": "{digit}, {thickness} and {slant}",
    "size-thickness": "a {size} {thickness} {digit}",
    "number-size-thickness": "the number {digit}, {size} and {thickness}",
    "thickness-slant": "a {thickness} {digit} {slant}",
    "written-slant": "{digit}, written {slant}",
    "all": "a {size} {thickness} {digit} {slant}",
    "stroke": "a {digit} with a {thickness} stroke",
    "that-is-slant": "a {digit} that is {slant}",
    # held out of training
    "attributes-first": "{thickness} and {slant}, a {digit}",
    "number-size": "the {size} number {digit}",
    "list": "{digit}, {size}, {thickness}, {slant}",
    "that-is": "a {digit} that is {size} and {thickness}",
    "digit-stroke-slant": "the digit {digit} with a {thickness} stroke, {slant}",
}
HELD_OUT = ("attributes-first", "number-size", "list", "that-is", "digit-stroke-slant")
HELD_IN = tuple(name for name in TEMPLATES if name not in HELD_OUT)
SPLIT_IDS = {"train": 0, "test": 1}


def _fill(template: str, digit: str, classes) -> str:
    words = {a: ATTRIBUTE_WORDS[a][int(c)] for a, c in zip(ATTRIBUTES, classes)}
    text = template.format(digit=digit, **words)
    # "a eight", "a 8" -> "an eight", "an 8" (no template puts "a" before another vowel sound)
    return re.sub(r"\ba (eight|8)\b", r"an \1", text)


def caption(label: int, classes, template: str, numeral: bool = False) -> str:
    """The caption of one digit ``label`` with attribute classes (thickness, slant, size) in ``template``
    (a name of ``TEMPLATES``), the digit as a numeral or a word."""
    return _fill(TEMPLATES[template], NUMERALS[label] if numeral else DIGIT_WORDS[label], classes)


def build_captions(labels: np.ndarray, classes: np.ndarray, seed: int = 0, split: str = "train",
                   held_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One caption per tuple: (captions str [N], template index int16 [N] into ``TEMPLATES``' order).

    The wording (template and word-or-numeral) is drawn from a generator seeded by (``seed``, ``split``, and
    whether held-out templates are asked for): the same inputs give the same captions. ``held_out`` draws from
    the held-out templates instead of the held-in ones.
    """
    if split not in SPLIT_IDS:
        raise ValueError("split must be 'train' or 'test'")
    names = HELD_OUT if held_out else HELD_IN
    order = list(TEMPLATES)
    rng = np.random.default_rng([seed, SPLIT_IDS[split], int(held_out), 7])
    pick = rng.integers(len(names), size=len(labels))
    numeral = rng.random(len(labels)) < 0.5
    text = [caption(int(y), c, names[p], bool(n)) for y, c, p, n in zip(labels, classes, pick, numeral)]
    width = max((len(t) for t in text), default=1)
    return np.array(text, dtype=f"<U{width}"), np.array([order.index(names[p]) for p in pick], np.int16)


@dataclass
class Captions:
    """The captions of a split, aligned with its tuples: ``text`` str [N] (held-in wordings), ``template``
    int16 [N] (index into ``TEMPLATES``), ``classes`` int8 [N, 3] (thickness, slant, size word classes),
    ``measures`` float32 [N, 3] (``measure`` of the digit of modality 0), ``ids`` int16 [N, MAX_LEN] (the text
    by ``Tokenizer()``)."""

    text: np.ndarray
    template: np.ndarray
    classes: np.ndarray
    measures: np.ndarray
    ids: np.ndarray

    FIELDS = ("text", "template", "classes", "measures", "ids")

    def __len__(self):
        return len(self.text)

    def arrays(self) -> dict:
        return {f"caption_{k}": getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays) -> "Captions":
        return cls(*(np.asarray(arrays[f"caption_{k}"]) for k in cls.FIELDS))


def describe(images: np.ndarray, labels: np.ndarray, seed: int = 0, split: str = "train") -> Captions:
    """Captions of tuples whose modality-0 images are ``images`` [N, 3, 28, 28] (uint8) with ``labels`` [N]:
    the ink mask, its measurements, their word classes and a held-in caption each."""
    labels = np.asarray(labels, np.int64)
    measures = np.concatenate([measure(ink_mask(images[s:s + 4096])) for s in range(0, len(images), 4096)]
                              or [np.zeros((0, 3), np.float32)])
    classes = attribute_classes(measures, labels)
    text, template = build_captions(labels, classes, seed, split)
    return Captions(text, template, classes, measures, Tokenizer().encode_batch(text).astype(np.int16))


def caption_key(seed: int = 0) -> str:
    """What identifies the captions' recipe (vocabulary, templates, thresholds, seed): part of the cache key,
    so that a changed recipe is built anew."""
    recipe = repr((VOCABULARY, MAX_LEN, TEMPLATES, HELD_OUT, ATTRIBUTE_WORDS, THICKNESS_THRESHOLDS,
                   SLANT_THRESHOLDS, SIZE_THRESHOLDS, seed))
    return hashlib.sha1(recipe.encode()).hexdigest()[:10]


def caption_language(held_out: bool = False) -> list[str]:
    """Every caption the builder can write with the held-in templates (``held_out``: the held-out ones), each
    once: every digit as word and numeral, every attribute word its template names."""
    import itertools

    out = {}
    for name in (HELD_OUT if held_out else HELD_IN):
        for label, numeral, classes in itertools.product(range(10), (False, True), itertools.product(range(3),
                                                                                                      repeat=3)):
            out[caption(label, classes, name, numeral)] = None
    return list(out)


class CaptionReader:
    """Reads a caption off soft one-hot vectors [B, L, V] (a chain's state or a decoder's softmax): the most probable
    caption of the training captions' language (``caption_language``) under independent positions,
    sum_l log p_l(word_l). A position-wise arg-max would rarely name the digit: the wordings put it at different
    positions, so at every position some filler or attribute word is likelier than any one digit's word. Rows
    that are exactly one-hot (an observed caption) are read word by word, as typed."""

    def __init__(self, tokenizer: "Tokenizer | None" = None):
        self.tokenizer = tokenizer or Tokenizer()
        self.texts = caption_language()
        self.ids = self.tokenizer.encode_batch(self.texts)                       # [C, L]

    def read(self, probs) -> list[str]:
        probs = np.asarray(probs, np.float32)
        out = []
        positions = np.arange(self.ids.shape[1])[None, :]
        for s in range(0, len(probs), 32):
            p = probs[s:s + 32]
            logp = np.log(np.maximum(p, 1e-12))
            best = logp[:, positions, self.ids].sum(-1).argmax(1)               # [b, C, L] -> [b]
            exact = (p.max(-1) == 1).all(-1)
            out += [self.tokenizer.decode(row.argmax(-1)) if one else self.texts[k]
                    for row, one, k in zip(p, exact, best)]
        return out


# ---------------------------------------------------------------- the tokenizer

PAD = "<pad>"
ATTRIBUTE_VOCABULARY = tuple(dict.fromkeys(w for words in ATTRIBUTE_WORDS.values() for p in words
                                           for w in p.split()))
VOCABULARY = (PAD,) + DIGIT_WORDS + NUMERALS + ATTRIBUTE_VOCABULARY + FILLER_WORDS
MAX_LEN = 16
MAX_CHARS = 200      # longer texts are refused before they are split (hostile input stays bounded)
_TOKEN = re.compile(r"[^\s,]+|,")


class CaptionError(ValueError):
    """A caption the tokenizer cannot encode; ``unknown`` lists the words outside the vocabulary."""

    def __init__(self, message: str, unknown: tuple[str, ...] = ()):
        super().__init__(message)
        self.unknown = unknown


class Tokenizer:
    """Word-level tokenizer over a fixed vocabulary: lower case, words split at spaces, commas their own
    token, a final full stop dropped. ``encode`` gives ``max_len`` ids padded with ``pad_id`` (0)."""

    def __init__(self, words=VOCABULARY, max_len: int = MAX_LEN, max_chars: int = MAX_CHARS):
        if len(set(words)) != len(words) or words[0] != PAD:
            raise ValueError("the vocabulary must start with the pad word and hold no word twice")
        self.words = tuple(words)
        self.max_len, self.max_chars = max_len, max_chars
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad_id = 0

    def __len__(self):
        return len(self.words)

    def split(self, text: str) -> list[str]:
        """The words of ``text``: lower case, split at white space, commas apart, trailing full stops dropped."""
        return _TOKEN.findall(text.lower().strip().rstrip("."))

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` (its first ``max_chars`` characters) outside the vocabulary, each once, in order
        of appearance."""
        return list(dict.fromkeys(w for w in self.split(text[:self.max_chars]) if w not in self.index or w == PAD))

    def encode(self, text: str) -> list[int]:
        """``max_len`` token ids. CaptionError (one line) for a text over ``max_chars`` characters, an empty text,
        unknown words (named, in ``.unknown``) or more than ``max_len`` words."""
        if len(text) > self.max_chars:
            raise CaptionError(f"the caption has {len(text)} characters; at most {self.max_chars}")
        words = self.split(text)
        if not words:
            raise CaptionError("the caption is empty: type a few words, e.g. 'a bold 3'")
        unknown = self.unknown_words(text)
        if unknown:
            shown = ", ".join(repr(w[:20]) for w in unknown[:5]) + (f" and {len(unknown) - 5} more"
                                                                    if len(unknown) > 5 else "")
            raise CaptionError(f"unknown word{'s' if len(unknown) > 1 else ''}: {shown}", tuple(unknown))
        if len(words) > self.max_len:
            raise CaptionError(f"the caption has {len(words)} words; at most {self.max_len}")
        return [self.index[w] for w in words] + [self.pad_id] * (self.max_len - len(words))

    def encode_batch(self, texts) -> np.ndarray:
        """int64 [N, max_len] ids of many captions."""
        return np.array([self.encode(str(t)) for t in texts], np.int64).reshape(-1, self.max_len)

    def decode(self, ids) -> str:
        """The caption of ids (pads skipped; ids outside the vocabulary are an error): words joined by spaces,
        commas attached to the word before them."""
        words = [self.words[int(i)] for i in ids if int(i) != self.pad_id]
        return " ".join(words).replace(" ,", ",")
