"""The one config parser: YAML mappings -> typed, nested dataclasses, and dataclass fields -> command-line flags.

Every InfiMed config (curation, CoT synthesis, evaluation, training recipes) is a dataclass whose fields carry their
help in ``metadata["help"]``. ``config_from_dict`` builds one from a mapping with the types checked on the way in,
so a YAML typo fails loudly and names the place:

    config = config_from_dict(CurationConfig, load_yaml("recipes/curation/demo.yaml"), where="demo.yaml")
    # ConfigError: demo.yaml.sources[0].limit: expected int | None, got '3' (str)

On the command line (the way TRL's ``TrlParser`` does it, on transformers' ``HfArgumentParser``), a subcommand gets
one flag per scalar field and, optionally, a positional YAML file whose values are the defaults; flags given win:

    def add_arguments(parser: ConfigParser) -> None:
        parser.add_config_arguments(EvalConfig, config_file=True, sections={"generation": ""})

    def main(args) -> int:
        config = config_from_args(EvalConfig, args, config_file=args.config)

    infimed eval eval.yaml --limit 5      # eval.yaml's values, `limit` replaced
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from transformers import HfArgumentParser

from .errors import InfiMedError

__all__ = ["ConfigError", "ConfigParser", "config_from_args", "config_from_dict", "load_yaml"]

_SCALARS = (str, int, float, bool, Path)


class ConfigError(InfiMedError, ValueError):
    """A config value of the wrong type, an unknown key or a value the config's own checks reject."""


def load_yaml(path: str | os.PathLike) -> dict:
    """The top-level mapping of the YAML file at ``path`` (an empty file is an empty mapping)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of config keys at the top level, got {_shown(data)}; write `key: value` lines."
        )
    return data


def config_from_dict(cls: type, data: Mapping, where: str):
    """Build dataclass ``cls`` from ``data``, checking every value against the field's type annotation.

    Nested dataclasses, ``list[...]``, ``dict[...]``, ``X | None``, unions and ``Literal[...]`` are followed
    recursively. Ints are accepted for floats; strings are never turned into numbers or bools. Errors are a
    ``ConfigError`` naming ``where.key``; ``ValueError``/``TypeError`` from ``cls.__post_init__`` are re-raised as one
    prefixed with ``where``.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping ({cls.__name__}), got {_shown(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}. Unknown keys are rejected so that a typo "
            "never silently falls back to a default."
        )
    missing = [
        name for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}.")
    hints = get_type_hints(cls)
    kwargs = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(hint))
    if hint is type(None):
        return "None"
    if dataclasses.is_dataclass(hint):
        return f"a mapping ({hint.__name__})"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(hint))}]"
    return getattr(hint, "__name__", str(hint))


def _convert(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against ``hint`` (nested dataclasses built); a ``ConfigError`` naming ``where`` otherwise."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # `X | None`: X's own, more precise message
            return _convert(options[0], value, where)
        for option in options:
            try:
                return _convert(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got {_shown(value)}")
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got {_shown(value)}")
    if origin in (list, Sequence, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(hint)} (a YAML list), got {_shown(value)}")
        item = args[0] if args else Any
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected {_type_name(hint)} (a YAML mapping), got {_shown(value)}")
        item = args[1] if len(args) == 2 else Any
        return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
    elif hint is type(None):
        if value is None:
            return None
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{where}: expected {_type_name(hint)}, got {_shown(value)}")


def _is_scalar(hint: Any) -> bool:
    """Whether a field of type ``hint`` gets a flag: scalars, ``Literal``, ``X | None`` of those and lists of them.
    Nested dataclasses, dicts and lists of dataclasses (sections such as `sources`) are YAML-only."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return len(options) == 1 and _is_scalar(options[0])
    if origin is Literal:
        return True
    if origin is list:
        return len(args) == 1 and args[0] in _SCALARS and args[0] is not bool
    return hint in _SCALARS


class ConfigParser(HfArgumentParser):
    """``HfArgumentParser`` whose flags come from the scalar fields of config dataclasses, help from their
    ``metadata["help"]``, with an optional positional YAML config file (see ``config_from_args``).

    Flags that are not given stay out of the parsed namespace, so a YAML value is replaced only by a flag the user
    actually typed. List fields take several values and may be repeated (``--image a.png --image b.png``).
    """

    def add_config_arguments(
        self,
        cls: type,
        *,
        config_file: bool = False,
        sections: Mapping[str, str] | None = None,
        aliases: Mapping[str, str | Iterable[str]] | None = None,
    ) -> None:
        """Flags for the scalar fields of ``cls``.

        Args:
            config_file: add a positional ``config`` (a YAML file of ``cls`` fields); flags become optional then.
            sections: nested dataclass fields whose scalar fields also get flags, mapped to a flag prefix, e.g.
                ``{"generation": ""}`` makes ``--batch-size`` set ``generation.batch_size``.
            aliases: extra flag names by field (``"section.field"`` inside a section), e.g.
                ``{"output_dir": "--output"}``.
        """
        if config_file:
            self.add_argument(
                "config", nargs="?", default=None,
                help=f"YAML file of {cls.__name__} fields; flags given on the command line override its values.",
            )
        aliases = dict(aliases or {})
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in (sections or {}):
                sub = _without_none(hints[f.name])  # an optional section is built when one of its flags is given
                sub_hints = get_type_hints(sub)
                for g in dataclasses.fields(sub):
                    if g.init and _is_scalar(sub_hints[g.name]):
                        dest = f"{f.name}.{g.name}"
                        self._add_field(g, sub_hints[g.name], sections[f.name] + g.name, dest, aliases.get(dest),
                                        required=False)
            elif _is_scalar(hints[f.name]):
                self._add_field(f, hints[f.name], f.name, f.name, aliases.get(f.name), required=not config_file)

    def _add_field(self, f: dataclasses.Field, hint: Any, flag: str, dest: str, aliases, required: bool) -> None:
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        help_text = f.metadata.get("help", "").replace("%", "%%")
        if has_default and default not in (None, [], ""):
            help_text += f" (default: {default})"
        if f.metadata.get("positional"):
            self.add_argument(dest, nargs="?" if has_default else None, default=default, help=help_text)
            return
        field_for_hf = copy.copy(f)  # HfArgumentParser rewrites `type` and reads `name`; the class keeps its field
        field_for_hf.name, field_for_hf.type = flag, hint
        metadata = {"help": help_text}
        if aliases:
            metadata["aliases"] = [aliases] if isinstance(aliases, str) else list(aliases)
        if get_origin(hint) is list or get_origin(_without_none(hint)) is list:
            metadata["action"] = "extend"  # `--image a --image b` and `--image a b` both give [a, b]
        field_for_hf.metadata = types.MappingProxyType(metadata)
        before = len(self._actions)
        self._parse_dataclass_field(self, field_for_hf)
        for action in self._actions[before:]:
            if action.dest != dest and action.nargs != 0 and action.choices is None:
                action.metavar = flag.upper()  # `BATCH_SIZE`, not the nested dest `GENERATION.BATCH_SIZE`
            action.dest = dest
            action.default = argparse.SUPPRESS
            action.required = required and not has_default


def _without_none(hint: Any) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return options[0] if len(options) == 1 else hint
    return hint


def config_from_args(cls: type, args: argparse.Namespace, config_file: str | os.PathLike | None = None):
    """``cls`` from the YAML ``config_file`` (its values are the defaults) with the flags given in ``args`` on top.

    Only the flags ``ConfigParser.add_config_arguments`` made for ``cls`` are read: ``field`` and
    ``section.field`` entries of the namespace.
    """
    data: dict = load_yaml(config_file) if config_file else {}
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for dest, value in vars(args).items():
        section, _, name = dest.rpartition(".")
        if not section and name in names:
            data[name] = value
        elif section in names:
            nested = data.get(section) or {}
            if isinstance(nested, Mapping):  # a wrong YAML shape is left for config_from_dict to report
                data[section] = {**nested, name: value}
    return config_from_dict(cls, data, str(config_file) if config_file else "arguments")
