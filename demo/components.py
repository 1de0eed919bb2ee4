"""Gradio components the page needs beyond the stock ones: controls that leave checking to the app (so an API
caller's "nan", "abc" or null gets the app's own message), a sketchpad that checks a drawing's size before it is
decoded, and an image streamed inside the message."""
from __future__ import annotations

import base64

import numpy as np

import gradio as gr
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
