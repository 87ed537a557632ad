"""Markdown reference pages generated from the code: every config key and every CLI option.

The documentation site (``mkdocs.yml``) replaces a marker such as
``<!-- generated: config-reference -->`` in a page with the text made here, at build time, so
the reference cannot drift from ``config.py`` and the argument parser of the ``cli`` package.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vaekit.cli import build_parser
from vaekit.config import Config
from vaekit.config_ranges import NON_EMPTY, RANGES
from vaekit.data import DATASETS
from vaekit.distributions import LIKELIHOODS, PRIORS
from vaekit.models import CORRUPTIONS, MODELS
from vaekit.nn import ACTIVATIONS

MARKER = re.compile(r"<!--\s*generated:\s*([\w-]+)\s*-->")

# String settings whose valid values are the names of a registry (read by the build package).
REGISTRIES: dict[str, Mapping[str, Any]] = {
    "data.name": DATASETS,
    "model.kind": MODELS,
    "model.activation": ACTIVATIONS,
    "model.likelihood": LIKELIHOODS,
    "model.prior": PRIORS,
    "model.corruption": {"none": None, **CORRUPTIONS},
}
# String settings that take free text: paths, a column name, a device.
FREE_TEXT = ("name", "data.path", "data.root", "data.label_column", "train.device")


@dataclass(frozen=True)
class ConfigKey:
    """One setting of a recipe: its dotted key, TOML type, default, allowed values and meaning."""

    key: str
    type: str
    default: str
    allowed: str
    doc: str


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of the dataclass ``cls``, by field name."""
    (definition,) = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    assert isinstance(definition, ast.ClassDef)
    body = definition.body
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def config_keys() -> list[ConfigKey]:
    """Every key of ``Config``: the top-level ones first, then each section's, in source order."""
    keys: list[ConfigKey] = []
    sections: list[tuple[str, type]] = []
    docs = field_docs(Config)
    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(Config):
        if dataclasses.is_dataclass(hints[field.name]):
            sections.append((field.name, hints[field.name]))
        else:
            keys.append(_key(field.name, hints[field.name], field, docs.get(field.name, "")))
    for section, cls in sections:
        docs, hints = field_docs(cls), typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            key = f"{section}.{field.name}"
            keys.append(_key(key, hints[field.name], field, docs.get(field.name, "")))
    return keys


def _key(key: str, tp: Any, field: dataclasses.Field[Any], doc: str) -> ConfigKey:
    default = field.default
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    return ConfigKey(key, _toml_type(tp), _toml_value(default), _allowed(key, tp), doc)


def _alternatives(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [alt for arg in typing.get_args(tp) for alt in _alternatives(arg)]
    return [tp]


def _toml_type(tp: Any) -> str:
    names: list[str] = []
    for alt in _alternatives(tp):
        origin, args = typing.get_origin(alt), typing.get_args(alt)
        if alt is type(None):
            name = "none"
        elif origin is Literal:
            name = "string"
        elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            name = f"list of {_toml_type(args[0])}s"
        elif origin is tuple:
            name = f"list of {len(args)} {_toml_type(args[0])}s"
        else:
            name = {int: "integer", float: "number", bool: "boolean", str: "string"}[alt]
        if name not in names:
            names.append(name)
    return " or ".join(names)


def _toml_value(value: Any) -> str:
    """``value`` as written in a recipe (``none`` for None, which ``--set`` also accepts)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(value))
    return str(value)


def _allowed(key: str, tp: Any) -> str:
    parts: list[str] = []
    alternatives = _alternatives(tp)
    choices: list[Any] = [
        arg for alt in alternatives if typing.get_origin(alt) is Literal for arg in alt.__args__
    ]
    if choices and bool in alternatives:
        choices = [True, False, *choices]
    if key in REGISTRIES:
        choices += list(REGISTRIES[key])
    if choices:
        parts.append(", ".join(f"`{_toml_value(choice)}`" for choice in choices))
    if key in NON_EMPTY:
        parts.append("not empty")
    if key in RANGES:
        parts.append(RANGES[key][1])
    return "; ".join(parts)


def config_reference() -> str:
    """Markdown tables of every config key: type, default, allowed values and meaning."""
    keys = config_keys()
    hints = typing.get_type_hints(Config)
    sections = [("", "Top level", None)] + [
        (name, f"[{name}]", inspect.getdoc(tp))
        for name, tp in hints.items()
        if dataclasses.is_dataclass(tp)
    ]
    out: list[str] = []
    for section, title, docstring in sections:
        rows = [k for k in keys if k.key.rpartition(".")[0] == section]
        out += [f"## {title}", ""]
        if docstring:
            out += [_markdown(" ".join(docstring.split())), ""]
        out += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for k in rows:
            cells = [
                f'<a id="{k.key}"></a>`{k.key}`',
                _markdown(k.type),
                f"`{k.default}`",
                _markdown(k.allowed) if k.allowed else "any",
                _markdown(k.doc),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


@dataclass(frozen=True)
class Command:
    """One runnable command: its full name (``vaekit train``), parser and one-line help."""

    name: str
    parser: argparse.ArgumentParser
    help: str


def cli_commands(parser: argparse.ArgumentParser | None = None) -> list[Command]:
    """Every runnable command of ``parser`` (by default the ``vaekit`` CLI's), in the order of
    ``--help``; a command with subcommands (``vaekit data``) is listed through them."""
    parser = build_parser() if parser is None else parser
    return list(_commands(parser, parser.prog, parser.description or ""))


def _commands(parser: argparse.ArgumentParser, name: str, help: str) -> Iterator[Command]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield Command(name, parser, parser.description or help)
    for group in groups:
        helps = {a.dest: a.help or "" for a in group._choices_actions}
        for sub_name, sub in group.choices.items():
            yield from _commands(sub, f"{name} {sub_name}", helps.get(sub_name, ""))


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(prog=parser.prog, width=88)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _values(action: argparse.Action) -> str:
    if action.choices is not None:
        return ", ".join(f"`{choice}`" for choice in action.choices)
    if action.nargs == 0:
        return "flag"
    # a positional's metavar is its name, already in the first column
    metavar = action.metavar if action.option_strings and isinstance(action.metavar, str) else None
    kind = "integer" if action.type is int else "number" if action.type is float else "text"
    text = f"`{metavar}`" if metavar else kind
    if isinstance(action, argparse._AppendAction):
        text += ", repeatable"
    if action.nargs == "+":
        text += ", one or more"
    return text


def _default(action: argparse.Action) -> str:
    unset = action.default is None or action.default is argparse.SUPPRESS
    if unset or action.nargs == 0 or action.default == []:
        return ""
    return f"`{action.default}`"


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        text = text % {**vars(action), "prog": prog}
    return _markdown(text)


def cli_reference() -> str:
    """Markdown for every command of ``vaekit``: its usage and a table of its arguments."""
    parser = build_parser()
    commands = cli_commands(parser)
    out = ["| command | what it does |", "|---|---|"]
    for command in commands:
        out.append(f"| [`{command.name}`](#{_slug(command.name)}) | {_markdown(command.help)} |")
    out.append("")
    for command in commands:
        sub = command.parser
        out += [f"## {command.name}", ""]
        if command.help:
            out += [_markdown(command.help), ""]
        out += ["```text", _usage(sub), "```", ""]
        actions = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        out += ["| argument | values | default | meaning |", "|---|---|---|---|"]
        for action in actions:
            names = action.option_strings or [str(action.metavar or action.dest.upper())]
            cells = [
                ", ".join(f"`{n}`" for n in names),
                _values(action),
                _default(action),
                _help(action, sub.prog),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's table of contents gives a plain-text heading."""
    text = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _markdown(text: str) -> str:
    """``text`` safe inside a Markdown table cell: code spans kept (RST's double backticks
    become Markdown's single ones), other markup characters escaped."""
    pieces = re.split(r"(``.+?``|`[^`]+`)", text)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append("`" + piece.strip("`") + "`")
        else:
            piece = piece.replace("\\", "\\\\").replace("<", "&lt;").replace(">", "&gt;")
            out.append(re.sub(r"([|*_\[\]])", r"\\\1", piece))
    return "".join(out)


GENERATED: dict[str, Callable[[], str]] = {
    "config-reference": config_reference,
    "cli-reference": cli_reference,
}


def expand(markdown: str) -> str:
    """``markdown`` with every ``<!-- generated: NAME -->`` marker replaced by its text; an
    unknown NAME is a ValueError that lists the known ones."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATED:
            known = ", ".join(sorted(GENERATED))
            raise ValueError(f"unknown generated section {name!r}; choose one of: {known}")
        return GENERATED[name]()

    return MARKER.sub(replace, markdown)
