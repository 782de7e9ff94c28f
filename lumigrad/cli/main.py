"""`lumigrad` command line: argument parsing, progress bars and exit codes only."""
from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from lumigrad.tasks.reconstruct import ReconstructConfig, run_demo

    config = ReconstructConfig(iterations=args.iterations, seed=args.seed)
    metrics = run_demo(args.out, views=args.views, resolution=args.resolution, config=config, progress=not args.quiet and sys.stderr.isatty())
    summary = {k: metrics[k] for k in ("final_loss", "chamfer_over_diagonal", "iterations", "seconds")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/ (fitted.obj, target_vs_fitted.png, loss.png, turntable.gif, metrics.json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumigrad", description="Differentiable rendering for PyTorch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="reconstruct Spot from 16 synthetic views, starting from a sphere")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--views", type=int, default=16)
    demo.add_argument("--resolution", type=int, default=128)
    demo.add_argument("--iterations", type=int, default=400)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"lumigrad: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
