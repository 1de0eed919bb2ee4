"""Gradio components the page needs beyond the stock ones: controls that leave checking to the app (so an API
caller's "nan", "abc" or null gets the app's own message), a sketchpad that checks a drawing's size before it is
decoded, an image streamed inside the message, and the page's Blocks, for which a skipped output costs
nothing and whose streamed values reach the page whole."""
from __future__ import annotations

import base64
import copy

import numpy as np

import gradio as gr
from gradio.blocks import postprocess_update_dict
from gradio.data_classes import ImageData
from model import render
from model.preprocess import InputError, check_drawing

from .inputs import rejected


class _Checked:
    """The handlers check these values themselves (demo.inputs.validate)."""

    def preprocess(self, payload):
        return payload

    def get_block_name(self):
        """The Gradio component's own name (number, slider, ...), so the page draws it as that component."""
        return next(c for c in type(self).__mro__ if c.__module__.startswith("gradio.")).__name__.lower()


class NumberBox(_Checked, gr.Number):
    pass


class Slider(_Checked, gr.Slider):
    pass


class Dropdown(_Checked, gr.Dropdown):
    pass


class Textbox(_Checked, gr.Textbox):
    pass


class Radio(_Checked, gr.Radio):
    pass


class Sketchpad(gr.Sketchpad):
    """gr.Sketchpad that checks a drawing's image count and size from the files' headers before Gradio
    decodes them (model.preprocess.check_drawing): a tiny request cannot make the server decode gigapixels."""

    def get_block_name(self):
        return "imageeditor"

    def preprocess(self, payload):
        data = payload
        if payload is not None and payload.id is not None:
            data = self.blob_storage.get(payload.id)
        if data is not None:
            try:
                check_drawing([getattr(f, "path", f) for f in (data.background, *(data.layers or []), data.composite)])
            except InputError as e:
                if payload.id is not None:
                    self.blob_storage.pop(payload.id, None)
                raise rejected(str(e)) from None
        return super().preprocess(payload)


class LiveImage(gr.Image):
    """An output image sent inside the message as a PNG data URL: streamed frames never touch the disk
    (nothing for Gradio's cache to keep), and the PNG is written fast (zlib level 1)."""

    def get_block_name(self):
        return "image"

    def postprocess(self, value):
        if isinstance(value, np.ndarray):
            return ImageData(url=data_url(render.png_bytes(value)), orig_name="frame.png")
        return super().postprocess(value)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


class Page(gr.Blocks):
    """gr.Blocks whose events' skipped outputs (gr.skip()) cost nothing. Gradio 6.31 builds, for every output an
    event's answer skips, a new component from the old one's arguments and its page config (about 2 ms each,
    on the server's one event loop): a streamed frame skips most of its 18 outputs, so this cost 35-40 ms a frame,
    which thirty pages at once queued behind. Here the skipped outputs are answered as Gradio answers them (its
    postprocess_update_dict of the skip, from the page's component: an update without value) and only the others
    go through Gradio's own postprocessing."""

    async def postprocess_data(self, block_fn, predictions, state):
        outputs = block_fn.outputs
        if block_fn.batch or not isinstance(predictions, (list, tuple)) or len(predictions) != len(outputs) \
                or len(outputs) < 2:
            return await super().postprocess_data(block_fn, predictions, state)
        keep = [i for i, (p, block) in enumerate(zip(predictions, outputs)) if not skipped(p) or block.stateful]
        if len(keep) == len(outputs):
            return await super().postprocess_data(block_fn, predictions, state)
        out = [postprocess_update_dict(block, {"__type__": "update"}, block_fn.postprocess) for block in outputs]
        if keep:
            part = copy.copy(block_fn)   # the event with the outputs that change (one: Gradio wants it unlisted)
            part.outputs = [outputs[i] for i in keep]
            sent = [predictions[i] for i in keep]
            done = await super().postprocess_data(part, sent if len(keep) > 1 else sent[0], state)
            for i, value in zip(keep, done):
                out[i] = value
        return out

    def handle_streaming_diffs(self, block_fn, data, session_hash, run, final, simple_format=False):
        """Gradio's edits of a streamed event's outputs, each changed value sent whole (a text may still grow by
        what it gains). The page applies an edit inside a value in place, to the very object an earlier message
        handed a component: a plot sent as a value, then skipped, became the skip under the plot that showed it;
        Chromium's page threw (a plot without its columns) and drew nothing more of the run."""
        whole = (final or simple_format or session_hash is None or run is None
                 or run not in self.pending_diff_streams.get(session_hash, {}))   # values, not edits
        full = list(data)
        edits = super().handle_streaming_diffs(block_fn, data, session_hash, run, final, simple_format)
        if whole:
            return edits
        return [[["replace", [], new]] if any(path for _, path, _ in e) else e for e, new in zip(edits, full)]


def skipped(value) -> bool:
    """gr.skip(): the output stays as it is."""
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1
