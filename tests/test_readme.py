"""The README's generated parts and its commands stay true to the code."""

import re
from pathlib import Path

import pytest

from hpa_keras.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    ("name", "module", "settings_class"),
    [("fit", "hpa_keras.training.config", "TrainingConfig")],
)
def test_settings_tables_equal_the_settings(name, module, settings_class):
    import importlib

    text = README.read_text()
    found = re.search(rf"<!-- settings:{name} -->\n(.*?)\n<!-- /settings:{name} -->", text, re.S)
    assert found, f"no settings:{name} block in README.md"
    expected = markdown_table(getattr(importlib.import_module(module), settings_class))
    assert found.group(1) == expected, "run hpa_keras.settings.markdown_table and paste it"


def test_every_hpa_keras_command_in_the_readme_exists():
    from hpa_keras.cli import COMMANDS, build_parser

    parser = build_parser()
    names = {
        name for action in parser._actions if action.dest == "command" for name in action.choices
    }
    assert len(names) == len(COMMANDS)
    text = README.read_text()
    inline = re.findall(r"`hpa-keras ([a-z][a-z-]*)", text)  # `hpa-keras fit ...` in prose
    blocks = re.findall(r"^(?:\$ )?hpa-keras ([a-z][a-z-]*)", text, re.M)  # command lines
    used = set(inline) | set(blocks)
    assert used and used <= names | {"COMMAND"}, used - names
