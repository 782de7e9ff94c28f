"""`lumigrad nerf train|render`: NeRF (hash-grid field, occupancy-grid sampling) on NeRF-synthetic-style data."""
from __future__ import annotations

import argparse
import json

from lumigrad.cli.common import positive_float, positive_int, progress_bar, run_training, set_torch_threads



def register(sub) -> None:
    p = sub.add_parser("nerf", help="train / render a NeRF on a transforms_*.json dataset")
    nsub = p.add_subparsers(dest="nerf_command", required=True)
    t = nsub.add_parser("train", help="train a NeRF; writes checkpoint.pt, metrics.json, psnr.png, eval_grid.png")
    t.add_argument("data", help="dataset folder with transforms_train.json (+ val/test) and images")
    t.add_argument("--out", default="out/nerf", help="output folder (default: out/nerf)")
    t.add_argument("--iterations", type=positive_int, default=4000, help="training steps (default: 4000)")
    t.add_argument("--minutes", type=positive_float, default=None, help="wall-clock budget; stop when reached")
    t.add_argument("--eval-every", type=positive_int, default=500, help="held-out PSNR every N steps (default: 500)")
    t.add_argument("--checkpoint-every", type=positive_int, default=200, help="checkpoint every N steps (default: 200)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--torch-threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: torch's); 1 is faster on a busy machine. Kernel threads "
                        "stay at LUMIGRAD_NUM_THREADS, else torch's default")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)
    r = nsub.add_parser("render", help="render held-out views, a turntable GIF and optionally a mesh from a checkpoint")
    r.add_argument("checkpoint", help="checkpoint.pt written by `lumigrad nerf train`")
    r.add_argument("--out", default="out/nerf_render", help="output folder (default: out/nerf_render)")
    r.add_argument("--frames", type=positive_int, default=24, help="turntable frames (default: 24)")
    r.add_argument("--mesh", action="store_true", help="also extract mesh.obj by marching cubes")
    r.add_argument("--mesh-resolution", type=positive_int, default=128, help="marching-cubes grid (default: 128)")
    r.add_argument("--level", type=positive_float, default=10.0, help="density iso-level (default: 10)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_render)



def _train(args: argparse.Namespace) -> int:
    set_torch_threads(args.torch_threads)
    from lumigrad.tasks.nerf import NerfConfig, train_nerf

    config = NerfConfig(iterations=args.iterations, minutes=args.minutes, eval_every=args.eval_every,
                        checkpoint_every=args.checkpoint_every, seed=args.seed)
    return run_training(
        args, "nerf", lambda progress: train_nerf(args.data, args.out, config, resume=args.resume, progress=progress),
        ("psnr", "ssim", "iterations", "train_seconds", "eval_split"), "checkpoint.pt, metrics.json, psnr.png, eval_grid.png",
    )


def _render(args: argparse.Namespace) -> int:
    from lumigrad.tasks.nerf import render_nerf_outputs

    bar = progress_bar(args, args.frames, "turntable")
    res = render_nerf_outputs(args.checkpoint, args.out, turntable_frames=args.frames, mesh=args.mesh,
                              mesh_resolution=args.mesh_resolution, mesh_level=args.level,
                              progress=(lambda i, n: bar.update(1)) if bar is not None else None)
    if bar is not None:
        bar.close()
    print(json.dumps(res, indent=2))
    print(f"wrote {args.out}/ (views.png, turntable.gif, render_metrics.json{', mesh.obj' if args.mesh else ''})")
    return 0
