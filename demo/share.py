"""The share link: a run's input (its 28x28 digit, or its typed caption), the model, settings and seed as a query
string, and back."""
from __future__ import annotations

import html
import urllib.parse

from model.config import ModelConfig
from model.player import ChainSettings
from model.preprocess import decode_digit, encode_digit

from .captions import CAPTIONS, IMAGES, caption_ids, model_choice
from .inputs import shown, validate


def share_link(run) -> str:
    """The query string that restores ``run`` (a demo.view.PageRun)."""
    s = run.settings
    q = {"m": run.modality if run.modality is not None else 0, "n": s.n_samples, "ls": s.latent_steps,
         "lss": f"{s.latent_step_size:g}", "ds": s.data_steps, "dss": f"{s.data_step_size:g}", "noise": int(s.noise),
         "seed": s.seed, "cmp": int(s.compare), "pp": int(s.ex_post_prior)}
    source = {"src": "unconditional"} if run.digit is None else {"src": "link", "d": encode_digit(run.digit)}
    if getattr(run, "model", IMAGES) == CAPTIONS:   # the model with captions (and the typed caption, if any)
        source = {"mdl": CAPTIONS} | (source if run.text is None else {"src": "caption", "cap": run.caption})
    return "?" + urllib.parse.urlencode(source | q)


def share_html(run) -> str:
    link = share_link(run)
    return (f'<a id="share_link" href="{html.escape(link)}" target="_blank">Share this run</a> '
            f'<span class="hint">(a link with the input, the settings and the seed: same frames)</span>')


def is_share_link(params: dict) -> bool:
    return bool(params) and bool({"src", "seed"} & set(params))


def read_share_link(params: dict, cfg: ModelConfig, default_samples: int) -> tuple[str, int, ChainSettings, str]:
    """(source, modality, settings, digit code) from a share link's query parameters; gr.Error (from
    demo.inputs), InputError or ValueError say what is wrong with them."""
    src = params.get("src", "unconditional")
    if src not in ("link", "unconditional", "caption"):
        raise ValueError(f"unknown input {shown(src)}")
    digit = params.get("d", "")
    if src == "link":
        decode_digit(digit)
    chains = cfg.chains
    _, m, s = validate(src, params.get("m", 0), params.get("n", default_samples),
                       params.get("ls", chains.latent.steps), params.get("lss", chains.latent.step_size),
                       params.get("ds", chains.data.steps), params.get("dss", chains.data.step_size),
                       params.get("noise", "1"), params.get("seed", 0), params.get("cmp", "0"), cfg.n_modalities,
                       params.get("pp", "1"))
    return src, m, s, digit


def read_caption_link(params: dict, tokenizer) -> tuple[str, str]:
    """(model, caption) of a share link (demo.captions: IMAGES and "" for a five-image link); gr.Error says what
    is wrong: a link of the model with captions on a server without it (``tokenizer`` None), a bad caption."""
    model = model_choice(params.get("mdl") or IMAGES, tokenizer is not None)
    if params.get("src") != "caption":
        return model, ""
    if model != CAPTIONS:
        raise ValueError("a typed caption needs the model with captions (mdl=captions)")
    caption = params.get("cap", "")
    caption_ids(caption, tokenizer)
    return model, " ".join(caption.split())
