"""Argument types shared by the command modules."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so ``--views 0`` is refused by the parser, with its usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def check_output_dir(flag: str, path: str) -> Path:
    """Refuse an output folder that cannot be created or written, before any work starts.

    Raises ValueError naming ``flag`` and the problem: the path is an existing
    file, lies under a file, or its nearest existing folder is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path}: exists and is not a folder (give a folder path)")
    anc = p if p.exists() else p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"{flag} {path}: {anc} is a file, so no folder can be made under it")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: folder {anc} is not writable")
    return p
