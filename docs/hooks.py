"""MkDocs hook: the docstrings' Sphinx roles read as plain code on the API pages.

The docstrings cross-reference with Sphinx roles (:func:`load_run`,
:class:`~hpa_keras.inference.runs.Run`), which Markdown leaves as text before the
code: ":func:load_run". This drops the role, and a leading ``~`` keeps the last name
only, as Sphinx shows it; a paragraph ending in reST's "::" before a literal block
ends in ":". (Not a page: mkdocs.yml excludes this file from the site.)
"""

import re

ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj|const):(?=<code>)")
SHORT = re.compile(r"<code>~(?:[\w]+\.)*(\w+)</code>")


def on_page_content(html, **kwargs):
    html = SHORT.sub(r"<code>\1</code>", ROLE.sub("", html))
    return html.replace("::</p>", ":</p>")
