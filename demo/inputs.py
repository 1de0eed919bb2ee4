"""What a visitor sends, checked: the chain's controls as one ``ChainInputs``, their limits, and the one-line
messages that quote a visitor's value as plain text (never Markdown or HTML)."""
from __future__ import annotations

import functools
import html
import inspect
import logging
import math
import numbers
import os
import re
import reprlib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np
import torch

import gradio as gr
from model.config import ModelConfig
from model.data import to_modality
from model.networks import observed_mask
from model.player import ChainSettings
from model.preprocess import decode_digit, digit_from_sketch, digit_from_upload

log = logging.getLogger("mebm.app")
ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("draw", "upload", "unconditional", "link", "caption")
LIMITS = {  # name: (min, max) accepted from the controls and from API callers
    "n_samples": (1, 16), "latent_steps": (0, 100), "latent_step_size": (0.0, 10.0),
    "data_steps": (0, 100), "data_step_size": (0.0, 100.0), "seed": (0, 2 ** 31 - 1)}

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4
_MARKDOWN_ACTIVE = re.compile(r"([!-%'-/:<-@\[-`{-~])")   # ASCII punctuation but & and ; (HTML entities)


def shown(value) -> str:
    """A visitor's value quoted in a message: a short repr, HTML-escaped (Gradio shows error messages as
    HTML), whatever its size."""
    return html.escape(_REPR.repr(value), quote=False)


def as_text(message: str) -> str:
    """``message`` shown as plain text inside Markdown: no link, image, emphasis or HTML can come of it."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", message)


def one_line(message: str, limit: int = 240) -> str:
    """A message for the page: its first line, no absolute server path, at most ``limit`` characters."""
    line = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    line = line.replace(str(ROOT) + os.sep, "")
    line = re.sub(r"(?<![\w.])/(?:[\w.@+-]+/)+([\w.@+-]+)", r"\1", line)  # /abs/path/to/x -> x
    return line if len(line) <= limit else line[:limit - 1] + "…"


def rejected(message: str) -> gr.Error:
    """The error for a value the app refuses: one line in the server log, no traceback there."""
    log.info("rejected: %s", one_line(message))
    return gr.Error(message, print_exception=False)


def number_text(v: float) -> str:
    """A number as a person writes it: whole numbers in full (2147483648, not 2.14748e+09)."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e18 else f"{v:g}"


def _float(value) -> float | None:
    """A number from the page or an API caller (number or numeric string), None if it is none."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def number(name, value, integer, limits=None):
    """``value`` as a number within ``limits`` (default LIMITS[name]); the app's one-line message if it is not."""
    label = name.replace("_", " ")
    v = _float(value)
    if v is None:
        raise rejected(f"'{label}' must be a number (got {shown(value)}).")
    if not math.isfinite(v):
        raise rejected(f"'{label}' must be a finite number (got {shown(value)}).")
    lo, hi = limits or LIMITS[name]
    if not lo <= v <= hi:
        raise rejected(f"'{label}' must be between {number_text(lo)} and {number_text(hi)} (got {number_text(v)}).")
    if integer:
        if not v.is_integer():
            raise rejected(f"'{label}' must be a whole number (got {number_text(v)}).")
        return int(v)
    return v


def flag(name, value) -> bool:
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise rejected(f"'{name}' must be true or false (got {shown(value)}).")


@dataclass(frozen=True)
class ChainInputs:
    """The page's controls a chain is made from, as sent (unchecked), in the order of the page's inputs and of
    the HTTP API's parameters of /run, /step and /reset."""
    source: object
    sketch: object
    upload: object
    modality: object
    n_samples: object
    latent_steps: object
    latent_step_size: object
    data_steps: object
    data_step_size: object
    noise: object
    seed: object
    compare: object
    link_digit: object = ""
    ex_post_prior: object = True
    model: object = "images"      # demo.captions: "images", or "captions" (the model with the caption modality)
    caption: object = ""          # the typed caption (source "caption")

    def checked(self, n_modalities: int) -> tuple[str, int, ChainSettings]:
        """(source, modality, settings), every control checked (API callers can send anything)."""
        return validate(self.source, self.modality, self.n_samples, self.latent_steps, self.latent_step_size,
                        self.data_steps, self.data_step_size, self.noise, self.seed, self.compare, n_modalities,
                        self.ex_post_prior)


CONTROLS = tuple(f.name for f in fields(ChainInputs))


def validate(source, modality, n_samples, latent_steps, latent_step_size, data_steps, data_step_size,
             noise, seed, compare, n_modalities, ex_post_prior=True) -> tuple[str, int, ChainSettings]:
    """Check every control on the server; gr.Error says what is wrong."""
    if not isinstance(source, str) or source not in SOURCES:
        raise rejected(f"Input source must be one of {', '.join(SOURCES)} (got {shown(source)}).")
    m = _float(modality)
    if m is None or not m.is_integer() or not 0 <= m < n_modalities:
        raise rejected(f"Pick a modality between 0 and {n_modalities - 1} (got {shown(modality)}).")
    settings = ChainSettings(number("n_samples", n_samples, True), number("latent_steps", latent_steps, True),
                             number("latent_step_size", latent_step_size, False),
                             number("data_steps", data_steps, True), number("data_step_size", data_step_size, False),
                             flag("noise", noise), number("seed", seed, True), flag("compare", compare),
                             flag("ex_post_prior", ex_post_prior))
    return source, int(m), settings


def chain_event(*leading: str):
    """Decorator: ``fn(*leading, inputs: ChainInputs, request)`` becomes a Gradio event function whose positional
    parameters are ``leading`` and then the controls of ChainInputs (Gradio maps the page's inputs, and the HTTP
    API its parameters, by position, and hands the visitor's request to a parameter annotated gr.Request)."""
    n = len(leading) + len(CONTROLS)

    def wrap(fn):
        def split(values, request):
            if len(values) > n:   # Gradio passes the request positionally, after the inputs
                *values, request = values
            return (*values[:len(leading)], ChainInputs(*values[len(leading):])), request

        if inspect.isgeneratorfunction(fn):
            def event(*values, request=None):
                values, request = split(values, request)
                yield from fn(*values, request=request)
        else:
            def event(*values, request=None):
                values, request = split(values, request)
                return fn(*values, request=request)
        functools.update_wrapper(event, fn)
        del event.__wrapped__
        params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in (*leading, *CONTROLS)]
        defaults = [f.default for f in fields(ChainInputs) if f.default is not MISSING]
        params[-len(defaults):] = [p.replace(default=d) for p, d in zip(params[-len(defaults):], defaults)]
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.Request))
        event.__signature__ = inspect.Signature(params)
        event.__annotations__ = {"request": gr.Request}
        return event
    return wrap


def input_digit(inputs: ChainInputs, source: str) -> np.ndarray | None:
    """The 28x28 digit the model is given (None: unconditional, or a caption alone); InputError says what is
    wrong."""
    if source in ("unconditional", "caption"):
        return None
    if source == "draw":
        return digit_from_sketch(inputs.sketch)
    if source == "link":
        return decode_digit(inputs.link_digit)
    return digit_from_upload(inputs.upload)


def model_input(digit, modality: int, seed: int, cfg: ModelConfig):
    """-> (x_obs [1, M, 3, 28, 28] or None, observed bool [M] or None, preview picture or None)."""
    if digit is None:
        return None, None, None
    M = cfg.n_modalities
    img = to_modality(digit, modality, M, seed=cfg.data_seed, rng=np.random.default_rng(seed))
    x_obs = torch.zeros(1, M, 3, 28, 28)
    x_obs[0, modality] = torch.from_numpy(img)
    grey = np.repeat(digit[None], 3, 0)
    preview = np.concatenate([grey, np.full((3, 28, 2), 128, np.uint8), np.round(img * 255).astype(np.uint8)], 2)
    return x_obs, observed_mask([modality], M), preview.transpose(1, 2, 0)
