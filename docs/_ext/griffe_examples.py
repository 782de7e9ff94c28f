"""Griffe extension for the docs build: read ``Example:`` docstring sections as examples.

Google style (and griffe) call the section ``Examples:``; lumigrad's docstrings
often say ``Example:``, which griffe would render as an admonition whose ``>>>``
lines become Markdown block quotes. Renaming the title before parsing makes
them code examples. Only the docs build uses this; the code is not changed.
"""
from __future__ import annotations

import re

import griffe

_TITLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = _TITLE.sub(r"\1Examples:", obj.docstring.value)
