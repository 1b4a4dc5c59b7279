"""Settings dataclasses that describe themselves, so the command line is derived from them.

A settings class (``TrainingConfig``, ``ConversionSettings``,
``DemoDataSettings``) declares each field with :func:`setting`: its default,
one line of help and, where they are fixed, its choices. The CLI turns every
field into a flag with :func:`add_setting_arguments`, so a new setting is
reachable from the command line (with its default in ``--help``) the moment
it exists, and YAML files, Python and flags share one list of names.

YAML settings files are read by :func:`read_yaml` (one loader for every YAML file the
package reads: ``1e-3`` is a number, a key given twice is an error) and their values are
brought to each field's declared type by :func:`coerce_settings`, so a file, a dict from
Python and a flag reach the dataclass as the same types, or are refused naming the key,
the file and the expected type.
"""

import argparse
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path

import yaml

from hpa_keras.errors import InputError

_MISSING_HELP = "(no help)"


def setting(
    default=dataclasses.MISSING,
    help: str = _MISSING_HELP,
    *,
    choices=None,
    flag=None,
    default_text=None,
    metavar=None,
    default_factory=dataclasses.MISSING,
):
    """A dataclass field with what the command line needs to offer it.

    Args:
        default: the default value.
        help: one line saying what the setting does (the default is appended).
        choices: the allowed values, when there is a fixed list.
        flag: the flag's name when it is not ``--`` + the field name with dashes;
            ``False`` keeps the setting off the command line (it has a flag of
            its own, such as ``--model-option``).
        default_text: how to describe the default when its value says little
            (``None`` meaning "as stored", say).
        metavar: the placeholder shown in ``--help``.
    """
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices is not None else None,
        "flag": flag,
        "default_text": default_text,
        "metavar": metavar,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(annotation):
    """``int`` for ``int`` or ``int | None``; the annotation itself otherwise."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return members[0] if len(members) == 1 else str
    return annotation


def flag_of(field: dataclasses.Field) -> str | None:
    """The command-line flag of a settings field (``None`` when it has none)."""
    flag = field.metadata.get("flag")
    if flag is False:
        return None
    return flag or "--" + field.name.replace("_", "-")


def describe_default(field: dataclasses.Field) -> str:
    """The default as ``--help`` shows it."""
    if field.metadata.get("default_text"):
        return field.metadata["default_text"]
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def add_setting_arguments(parser, settings_class, skip=(), group_title=None, positive=()):
    """One flag per field of ``settings_class`` (but ``skip``), each defaulting to ``None``.

    ``None`` means "not given", so flags can override a YAML file and the
    dataclass's own defaults without hiding them. Booleans get ``--x`` and
    ``--no-x``. ``positive`` names integer settings whose flag refuses values
    below 1 at parse time.
    """
    for title, description, fields in setting_groups(settings_class):
        if title is not None:  # a grouped settings class: one --help section per group
            target = parser.add_argument_group(f"{title.lower()} settings", description)
        else:
            target = parser.add_argument_group(group_title) if group_title else parser
        _add_flags(target, fields, skip, positive)


def _add_flags(target, fields, skip, positive) -> None:
    for field in fields:
        flag = flag_of(field)
        if field.name in skip or flag is None:
            continue
        kind = _base_type(field.type)
        help_text = (
            f"{field.metadata.get('help', _MISSING_HELP)} (default: {describe_default(field)})"
        )
        options = {"dest": field.name, "default": None, "help": help_text}
        if field.metadata.get("metavar"):
            options["metavar"] = field.metadata["metavar"]
        if kind is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
            continue
        if field.metadata.get("choices"):
            options["choices"] = field.metadata["choices"]
        if kind in (int, float, str):
            options["type"] = positive_int if field.name in positive else kind
        target.add_argument(flag, **options)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def given_settings(arguments, settings_class) -> dict:
    """The settings of ``settings_class`` that were given on the command line."""
    names = {field.name for field in dataclasses.fields(settings_class)}
    return {
        name: value
        for name, value in vars(arguments).items()
        if name in names and value is not None
    }


def setting_groups(settings_class) -> list:
    """``(title, description, fields)`` for each group of ``settings_class``, in order.

    A class made of groups names them in a ``GROUPS`` class attribute (a tuple of
    dataclasses, as :class:`~hpa_keras.training.config.TrainingConfig` does): the title is
    the group's ``TITLE`` (else its class name without ``Settings``), the description the
    first paragraph of its docstring. Any other class is one group, ``(None, "", its fields)``.
    """
    groups = getattr(settings_class, "GROUPS", None)
    if not groups:
        return [(None, "", dataclasses.fields(settings_class))]
    return [
        (
            getattr(group, "TITLE", group.__name__.removesuffix("Settings")),
            " ".join((group.__doc__ or "").strip().split("\n\n")[0].split()),
            dataclasses.fields(group),
        )
        for group in groups
    ]


def markdown_table(settings_class, heading: str = "###") -> str:
    """A Markdown table of the flags of ``settings_class``: flag, default, what it does.

    A class made of groups (:func:`setting_groups`) gets one table per group, each under a
    ``heading`` with the group's title and its description. The manual's settings tables
    are this function's output between ``<!-- settings:NAME -->`` markers, and a test
    keeps them equal.
    """
    parts = []
    for title, description, fields in setting_groups(settings_class):
        if title is not None:
            parts.append(f"{heading} {title}\n\n{description}")
        parts.append(_flag_table(fields))
    return "\n\n".join(parts)


def _flag_table(fields) -> str:
    lines = ["| flag | default | what it does |", "|---|---|---|"]
    for field in fields:
        flag = flag_of(field)
        if flag is None:
            continue
        if _base_type(field.type) is bool:
            flag = f"{flag}, --no-{flag[2:]}"
        text = field.metadata.get("help", _MISSING_HELP)
        if field.metadata.get("choices"):
            text += "; one of " + ", ".join(f"`{choice}`" for choice in field.metadata["choices"])
        lines.append(f"| `{flag}` | {describe_default(field)} | {text.replace('|', '/')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ YAML settings files


class _SettingsLoader(yaml.SafeLoader):
    """PyYAML's safe loader with two YAML 1.2 habits: ``1e-3`` is a float (YAML 1.1, which
    PyYAML follows, wants ``1.0e-3`` and reads ``1e-3`` as a string), and a key given twice
    in one mapping is an error (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in lines:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (lines {lines[key]} and "
                    f"{key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            if isinstance(key, typing.Hashable):
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_SettingsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(text: str, source: str):
    """The YAML document in ``text``; InputError naming ``source``, the line and the problem
    (a tab in the indentation says so) when it is not valid YAML."""
    try:
        return yaml.load(text, Loader=_SettingsLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        hint = "; indent with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
        raise InputError(f"{source}: not valid YAML{where}: {problem}{hint}") from None


def read_settings_file(path, source: str | None = None) -> dict:
    """A YAML file of settings as a dict (an empty file: ``{}``); InputError naming the file
    when it is not valid YAML or not a mapping."""
    source = source or str(path)
    return settings_mapping(read_yaml(Path(path).read_text(), source), source)


def settings_mapping(document, source) -> dict:
    """``document`` (a parsed YAML file) as a mapping of settings; ``None`` (an empty file) is
    ``{}``; anything else is an InputError naming ``source``."""
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise InputError(
            f"{source}: expected a mapping of settings (KEY: VALUE lines), got "
            f"{_describe_value(document)}"
        )
    return document


_BOOLEAN_WORDS = {
    "true": True, "yes": True, "on": True, "1": True,
    "false": False, "no": False, "off": False, "0": False,
}  # fmt: skip
_EXPECTED = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    dict: "a mapping (KEY: VALUE lines)",
    list: "a list",
}


def _describe_value(value) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return f"a list ({value!r})" if len(repr(value)) <= 40 else "a list"
    return repr(value)


def _convert(kind, value):
    """``value`` as ``kind`` (int, float, bool, str, dict, list), or ValueError."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[value.strip().lower()]
        raise ValueError
    if isinstance(value, bool):  # True is an int to Python, not a number to a user
        raise ValueError
    if kind is int:
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, float) and number.is_integer():
            return int(number)
        if isinstance(number, int):
            return number
        raise ValueError
    if kind is float:
        if isinstance(value, (int, float, str)):
            number = float(value.strip() if isinstance(value, str) else value)
            if math.isfinite(number):
                return number
        raise ValueError
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        raise ValueError
    if kind in (dict, list):
        if isinstance(value, kind) or (kind is list and isinstance(value, tuple)):
            return kind(value)
        raise ValueError
    return value  # a type this function does not know: left to the class's own checks


def coerce_value(name: str, kind, value, source: str, choices=None, default="its default"):
    """``value`` as the type ``kind`` declared for setting ``name`` (``int | None`` takes
    ``None``), checked against ``choices``; InputError naming ``source``, the key and the
    expected type. Numbers written as text (``"0.001"``, ``1e-3``) become numbers; booleans
    accept true/false, yes/no, on/off and 1/0."""
    optional = isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union
    base = _base_type(kind)
    base = typing.get_origin(base) or base  # dict[str, int] -> dict
    if value is None and optional:
        return None
    expected = _EXPECTED.get(base, getattr(base, "__name__", str(base)))
    if value is None:
        raise InputError(
            f"{source}: {name}: expected {expected}, got an empty value (leave the key "
            f"out for the default, {default})"
        )
    try:
        converted = _convert(base, value)
    except (TypeError, ValueError):
        hint = ""
        if base is str and isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off as true/false: quote the word)"
        raise InputError(
            f"{source}: {name}: expected {expected}"
            f"{' or nothing' if optional else ''}, got {_describe_value(value)}{hint}"
        ) from None
    if choices and converted not in choices:
        raise InputError(
            f"{source}: {name}: {converted!r} is not one of {', '.join(map(str, choices))}"
        )
    return converted


def coerce_settings(settings_class, values: dict, source: str) -> dict:
    """``values`` (a YAML file's mapping, a dict from Python) with each value brought to its
    field's declared type by :func:`coerce_value`; a key that is not a setting of
    ``settings_class`` is an InputError naming ``source``, the key and the closest name."""
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    hints = typing.get_type_hints(settings_class)
    coerced = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            suggestion = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(
                f"{source}: unknown setting {key!r}{suggestion}; settings: "
                f"{', '.join(sorted(fields))}"
            )
        field = fields[key]
        coerced[key] = coerce_value(
            key, hints.get(key, field.type), value, source,
            choices=field.metadata.get("choices"), default=describe_default(field),
        )  # fmt: skip
    return coerced
