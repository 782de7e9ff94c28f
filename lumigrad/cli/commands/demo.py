"""`lumigrad demo`: reconstruct Spot from synthetic views."""
from __future__ import annotations

import argparse
import json
import sys

from lumigrad.cli.common import positive_int


def register(sub) -> None:
    demo = sub.add_parser("demo", help="reconstruct Spot from 16 synthetic views, starting from a sphere")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--views", type=positive_int, default=16, help="number of target views (default: 16)")
    demo.add_argument("--resolution", type=positive_int, default=128, help="image width and height in pixels (default: 128)")
    demo.add_argument("--iterations", type=positive_int, default=400, help="optimisation steps (default: 400)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lumigrad.tasks.reconstruct import ReconstructConfig, run_demo

    config = ReconstructConfig(iterations=args.iterations, seed=args.seed)
    metrics = run_demo(args.out, views=args.views, resolution=args.resolution, config=config, progress=not args.quiet and sys.stderr.isatty())
    summary = {k: metrics[k] for k in ("final_loss", "chamfer_over_diagonal", "iterations", "seconds")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/ (fitted.obj, target_vs_fitted.png, loss.png, turntable.gif, metrics.json)")
    return 0
