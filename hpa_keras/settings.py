"""Settings dataclasses that describe themselves, so the command line is derived from them.

A settings class (``TrainingConfig``, ``ConversionSettings``,
``DemoDataSettings``) declares each field with :func:`setting`: its default,
one line of help and, where they are fixed, its choices. The CLI turns every
field into a flag with :func:`add_setting_arguments`, so a new setting is
reachable from the command line (with its default in ``--help``) the moment
it exists, and YAML files, Python and flags share one list of names.
"""

import argparse
import dataclasses
import types
import typing

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
    target = parser.add_argument_group(group_title) if group_title else parser
    for field in dataclasses.fields(settings_class):
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


def markdown_table(settings_class) -> str:
    """A Markdown table of the flags of ``settings_class``: flag, default, what it does.

    The README's settings tables are this function's output between
    ``<!-- settings:NAME -->`` markers, and a test keeps them equal.
    """
    lines = ["| flag | default | what it does |", "|---|---|---|"]
    for field in dataclasses.fields(settings_class):
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
