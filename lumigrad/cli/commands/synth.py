"""`lumigrad synth SCENE`: render a synthetic dataset with known ground truth."""
from __future__ import annotations

import argparse
import json

from lumigrad.cli.common import positive_int


def register(sub) -> None:
    from lumigrad.tasks.synth import SCENES

    p = sub.add_parser("synth", help="render a synthetic dataset with known ground truth (for the fit tasks)",
                       description="Render SCENE from orbit cameras; write images/, masks/, transforms.json, "
                                   "ground_truth.json and ground_truth/mesh.obj.")
    p.add_argument("scene", choices=sorted(SCENES), help="scene to render")
    p.add_argument("--out", default=None, help="output folder (default: out/synth_SCENE)")
    p.add_argument("--views", type=positive_int, default=24, help="number of views (default: 24)")
    p.add_argument("--resolution", type=positive_int, default=128, help="image width and height (default: 128)")
    p.add_argument("--random-pose", action="store_true", help="rotate and shift the object randomly (seeded)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lumigrad.tasks.synth import synthesize

    out = args.out or f"out/synth_{args.scene}"
    gt = synthesize(args.scene, out, views=args.views, resolution=args.resolution, random_pose=args.random_pose, seed=args.seed)
    print(json.dumps({"scene": gt["scene"], "views": args.views, "resolution": args.resolution}, indent=2))
    print(f"wrote {out}/ (images/, masks/, transforms.json, ground_truth.json, ground_truth/mesh.obj)")
    return 0
