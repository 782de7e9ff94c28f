"""`lumigrad` command line: argument parsing, progress bars and exit codes only.

Each command lives in :mod:`lumigrad.cli.commands` and registers itself.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lumigrad.cli.commands import COMMANDS
from lumigrad.cli.common import check_output_dir

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumigrad", description="Differentiable rendering for PyTorch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lumigrad.cli.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "out", None) is not None:  # every command's output folder flag is --out
            check_output_dir("--out", args.out)
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as exc:
        # OSError covers FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError.
        print(f"lumigrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lumigrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
