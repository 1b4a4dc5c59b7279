"""The README (a landing page) and the manual under docs/ stay true to the code and to CI."""

import re
import unicodedata
from pathlib import Path

import pytest

from hpa_keras.settings import markdown_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
CI_MARKER = "<!-- ci:test-command -->"


def ci_test_command(text):
    """The line after the ```bash fence that follows the CI marker (as .ci/run reads it)."""
    found = re.search(re.escape(CI_MARKER) + r"\n```bash\n(.+)\n```", text)
    return found and found.group(1)


def slug(heading):
    """The anchor Python-Markdown's toc (MkDocs) gives a heading."""
    text = unicodedata.normalize("NFKD", heading.replace("`", ""))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)  # no code
    return {slug(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)}


@pytest.mark.parametrize(
    ("name", "module", "settings_class", "page"),
    [("fit", "hpa_keras.training.config", "TrainingConfig", "training.md")],
)
def test_settings_tables_equal_the_settings(name, module, settings_class, page):
    import importlib

    text = (DOCS / page).read_text()
    found = re.search(rf"<!-- settings:{name} -->\n(.*?)\n<!-- /settings:{name} -->", text, re.S)
    assert found, f"no settings:{name} block in docs/{page}"
    expected = markdown_table(getattr(importlib.import_module(module), settings_class))
    assert found.group(1) == expected, "run hpa_keras.settings.markdown_table and paste it"


def test_every_hpa_keras_command_in_the_readme_and_the_manual_exists():
    from hpa_keras.cli import COMMANDS, build_parser

    parser = build_parser()
    names = {
        name for action in parser._actions if action.dest == "command" for name in action.choices
    }
    assert len(names) == len(COMMANDS)
    used = {}
    for path in [README, *PAGES]:
        text = path.read_text()
        inline = re.findall(r"`hpa-keras ([a-z][a-z-]*)", text)  # `hpa-keras fit ...` in prose
        blocks = re.findall(r"^(?:\$ )?hpa-keras ([a-z][a-z-]*)", text, re.M)  # command lines
        for name in set(inline) | set(blocks):
            used.setdefault(name, path.name)
    unknown = {name: page for name, page in used.items() if name not in names | {"COMMAND"}}
    assert used and not unknown, unknown


def test_the_readme_is_a_landing_page_that_keeps_the_ci_test_line():
    text = README.read_text()
    assert len(text.splitlines()) <= 200, "the README is a landing page: move the rest to docs/"
    command = ci_test_command(text)
    assert command, f"{CI_MARKER} followed by a ```bash fence and the test line, for .ci/run"
    assert "python -m pytest" in command and "ruff check ." in command
    # the docs build in CI needs mkdocs from the install in that line
    assert '".[test]"' in command or "docs]" in command
    # Development shows the same line, without the marker (.ci/run reads README.md)
    development = (DOCS / "development.md").read_text()
    assert CI_MARKER not in development
    assert f"```bash\n{command}\n```" in development


def test_the_readmes_links_into_the_manual_lead_somewhere():
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in local)
    own = anchors(README)
    for link in local:
        target, _, anchor = link.partition("#")
        if not target:
            assert anchor in own, f"README.md links to #{anchor}, which it has no heading for"
            continue
        path = ROOT / target
        assert path.is_file(), f"README.md links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(path), f"README.md links to {link}: no such heading"


def test_every_picture_in_docs_is_shown_and_every_picture_shown_exists():
    pictures = {p.name for p in DOCS.iterdir() if p.suffix in {".png", ".jpg"}}
    shown = set()
    for path in PAGES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", path.read_text()):
            assert (path.parent / target).is_file(), f"{path.name} shows {target}: missing"
            shown.add(Path(target).name)
    assert pictures <= shown, f"pictures no page shows: {sorted(pictures - shown)}"


def test_no_user_facing_page_sends_the_reader_outside_the_clone():
    # the maintainers' folder of real samples beside the clone is named in Development only
    for path in [README, *PAGES]:
        if path == DOCS / "development.md":
            continue
        assert "../shared" not in path.read_text(), f"{path.name} names a path outside the clone"
