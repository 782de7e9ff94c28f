"""Griffe extension for the docs build: Markdown-friendly docstrings without editing the code.

* ``Example:`` sections are read as ``Examples:`` (griffe's Google parser only
  knows the plural; the singular would render ``>>>`` lines as block quotes).
* Sphinx roles (``:func:`x```, ``:class:`~a.b.C```) become inline code, which
  is how they read in a terminal too (``~`` keeps the last component).
Only the docs build uses this; the docstrings in the code are unchanged.
"""
from __future__ import annotations

import re

import griffe

_TITLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class MarkdownDocstrings(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        doc = obj.docstring
        if doc is None:
            return
        value = _TITLE.sub(r"\1Examples:", doc.value) if "Example:" in doc.value else doc.value
        doc.value = _ROLE.sub(_role, value)
