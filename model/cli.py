"""Command-line helpers shared by the commands: flags built from the config dataclasses (their trailing
``# comments`` become the help text, their section comments the help's groups), one-line errors.

    p = ConfigParser(prog="python -m model.train", description=...)
    add_dataclass_args(p, TrainConfig, nested={"model": "model."})
    values = vars(p.parse_args())          # only the flags given (defaults come from the dataclass)
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import typing

from .config import Chain, Chains


class ConfigParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the full usage of ~70 flags is what --help is for)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every flag's default after its help."""


def field_docs(cls) -> dict[str, dict]:
    """{field name: {"help": trailing comment (+ indented continuation comment lines), "section": the
    block comment above it}} read from the class source, e.g.

        # training-time chains
        data_steps: int = 30          # Langevin steps on the EBM per iteration
    """
    src = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, tuple[int, str]] = {}   # line -> (column, text)
    code_lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    body = ast.parse(src).body[0].body
    out, section, prev_end = {}, "", 0
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            prev_end = node.end_lineno
            continue
        # a block of comment-only lines right above the field (after the previous statement) starts a section
        block = [comments[i][1] for i in range(prev_end + 1, node.lineno)
                 if i in comments and i not in code_lines and comments[i][0] == node.col_offset]
        if block:
            section = " ".join(block)
        help_parts = []
        if node.end_lineno in comments and node.end_lineno in code_lines:
            col = comments[node.end_lineno][0]
            help_parts.append(comments[node.end_lineno][1])
            i = node.end_lineno + 1     # continuation: comment-only lines aligned with the trailing comment
            while i in comments and i not in code_lines and comments[i][0] == col:
                help_parts.append(comments[i][1])
                i += 1
        out[node.target.id] = {"help": " ".join(help_parts), "section": section}
        prev_end = node.end_lineno
    return out


def _base_type(tp):
    """(python type, optional) of a field annotation: 'int | None' -> (int, True)."""
    if isinstance(tp, str):
        parts = [p.strip() for p in tp.split("|")]
        names = {"int": int, "float": float, "str": str, "bool": bool}
        base = next((names[p] for p in parts if p in names), str)
        return base, "None" in parts
    args = typing.get_args(tp)
    if args:
        base = next((a for a in args if a is not type(None)), str)
        return base, type(None) in args
    return tp, False


def _converter(base, optional):
    def conv(s: str):
        if optional and s.lower() == "none":
            return None
        if base is bool:
            if s.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
            return s.lower() in ("true", "1", "yes")
        try:
            return base(s)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {base.__name__}{' or none' if optional else ''}, got {s!r}") from None
    conv.__name__ = base.__name__
    return conv


def _default(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_dataclass_args(parser: argparse.ArgumentParser, cls, prefix: str = "", nested: dict | None = None,
                       choices: dict | None = None, titles: dict | None = None, skip=()) -> None:
    """Add one flag per field of the dataclass ``cls`` (``--<prefix><field-name>``, dest
    ``<prefix><field_name>``), default argparse.SUPPRESS (only given flags appear in the result), help =
    the field's comment + its default. Fields that are dataclasses themselves get ``--<name>.<field>``
    flags (``nested`` maps the field name to its prefix). Section comments become argument groups
    (``titles`` may rename them); ``choices`` restricts a field's values."""
    docs, choices, titles = field_docs(cls), choices or {}, titles or {}
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = _default(f)
        if isinstance(default, Chains):
            add_chain_args(parser, default, prefix, title=titles.get(docs.get(f.name, {}).get("section", ""), None))
            continue
        if dataclasses.is_dataclass(default):
            sub = (nested or {}).get(f.name, f.name + ".")
            add_dataclass_args(parser, type(default), prefix + sub, choices=choices.get(f.name),
                               titles=titles.get(f.name))
            continue
        base, optional = _base_type(hints.get(f.name, f.type))
        if dataclasses.is_dataclass(base):   # an optional part off by default (ModelConfig.text): config.json only
            continue
        doc = docs.get(f.name, {"help": "", "section": ""})
        section = doc["section"]
        # a section's title is its comment up to the first ':' (the rest, if any, describes the group)
        head, _, rest = section.partition(":") if section else ("", "", "")
        title = titles.get(head.strip(), head.strip()) or None
        if title:
            if title not in groups:
                groups[title] = parser.add_argument_group(title, rest.strip() or None)
            group = groups[title]
        else:
            group = parser
        shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else default
        help_text = (doc["help"] or "").replace("%", "%%")
        opt = dict(dest=prefix + f.name, default=argparse.SUPPRESS, type=_converter(base, optional),
                   help=f"{help_text} (default: {shown})",
                   metavar=("{true,false}" if base is bool else base.__name__.upper()))
        if base is bool:   # --flag alone means true
            opt["nargs"], opt["const"] = "?", True
        if f.name in choices:
            opt["choices"], opt["metavar"] = list(choices[f.name]), "{" + ",".join(map(str, choices[f.name])) + "}"
            opt["type"] = str
        group.add_argument("--" + prefix + f.name.replace("_", "-"), **opt)


def add_chain_args(parser: argparse.ArgumentParser, chains: Chains | None = None, prefix: str = "",
                   title: str | None = None) -> None:
    """One flag per chain knob, ``--<prefix><chain>-<knob>`` (dest ``<prefix><chain>_<knob>``, the flat name that
    ``Chains.replace`` and config.json take), default argparse.SUPPRESS. With ``chains`` the help shows its values
    as defaults; without, the flags override a checkpoint's own settings (the default)."""
    docs, knob_docs = field_docs(Chains), field_docs(Chain)
    group = parser.add_argument_group(title or "chains", "the Langevin chains, in the order they run")
    for c in dataclasses.fields(Chains):
        for k in dataclasses.fields(Chain):
            name = f"{c.name}_{k.name}"
            shown = getattr(getattr(chains, c.name), k.name) if chains is not None else "the checkpoint's"
            what = f"{docs[c.name]['help']}: " if k.name == "steps" else f"'{c.name}' chain: "
            group.add_argument("--" + prefix + name.replace("_", "-"), dest=prefix + name, default=argparse.SUPPRESS,
                               type=_converter(k.type if isinstance(k.type, type) else _base_type(k.type)[0], False),
                               metavar=_base_type(k.type)[0].__name__.upper(),
                               help=f"{what}{knob_docs[k.name]['help']} (default: {shown})".replace("%", "%%"))


def chain_overrides(values: dict, prefix: str = "") -> dict:
    """The chain flags given (by ``add_chain_args``), popped from ``values``, by flat name."""
    names = [prefix + name for name in Chains().flat()]
    return {name[len(prefix):]: values.pop(name) for name in names if name in values}


def fail(message: str, code: int = 1) -> typing.NoReturn:
    """One line on stderr, non-zero exit: how every command reports bad input."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """The flags that say where the data come from (every command that reads the data set)."""
    parser.add_argument("--mnist", default=None, help="local MNIST .npz (e.g. ../shared/data/mnist.npz) or a "
                        "torchvision root; default: download")
    parser.add_argument("--cache-dir", default="data_cache", help="where the built data set is cached")
    parser.add_argument("--dataset", choices=("builtin", "polymnist"), default="builtin",
                        help="builtin: the PolyMNIST-style set built from MNIST; polymnist: the released files in "
                             "--data-dir")
    parser.add_argument("--data-dir", default=None, help="the PolyMNIST release (train/ and test/ with m0..m4)")
