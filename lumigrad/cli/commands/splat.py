"""`lumigrad splat train|render`: 3D Gaussian splatting on NeRF-synthetic-style data."""
from __future__ import annotations

import argparse
import json

from lumigrad.cli.common import positive_float, positive_int, progress_bar, run_training, set_torch_threads


def register(sub) -> None:
    p = sub.add_parser("splat", help="train / render 3D Gaussian splatting on a transforms_*.json dataset")
    ssub = p.add_subparsers(dest="splat_command", required=True)
    t = ssub.add_parser("train", help="train Gaussians; writes checkpoint.pt, gaussians.ply, metrics.json, psnr.png")
    t.add_argument("data", help="dataset folder with transforms_train.json (+ val/test) and images")
    t.add_argument("--out", default="out/splat", help="output folder (default: out/splat)")
    t.add_argument("--iterations", type=positive_int, default=3000, help="training steps (default: 3000)")
    t.add_argument("--minutes", type=positive_float, default=None, help="wall-clock budget; stop when reached")
    t.add_argument("--init-points", type=positive_int, default=30000, help="initial Gaussians (default: 30000)")
    t.add_argument("--init", choices=["auto", "hull", "random"], default="auto",
                   help="initial Gaussians: on the visual hull of the alpha masks, random in a cube, or auto "
                        "(hull when the images have alpha; default)")
    t.add_argument("--sh-degree", type=int, choices=[0, 1, 2, 3], default=1, help="spherical-harmonic degree (default: 1)")
    t.add_argument("--batch-views", type=positive_int, default=1,
                   help="views per step, split across ranks under torchrun (default: 1)")
    t.add_argument("--eval-every", type=positive_int, default=500, help="held-out PSNR every N steps (default: 500)")
    t.add_argument("--checkpoint-every", type=positive_int, default=200, help="checkpoint every N steps (default: 200)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    t.add_argument("--torch-threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: torch's); 1 is faster on a busy machine. Kernel threads "
                        "stay at LUMIGRAD_NUM_THREADS, else torch's default")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)
    r = ssub.add_parser("render", help="render held-out views and a turntable GIF from a checkpoint or a 3DGS .ply")
    r.add_argument("source", help="checkpoint.pt from `lumigrad splat train`, or a 3DGS .ply (needs --data)")
    r.add_argument("--data", default=None, help="dataset folder for the cameras (default: the checkpoint's)")
    r.add_argument("--out", default="out/splat_render", help="output folder (default: out/splat_render)")
    r.add_argument("--frames", type=positive_int, default=24, help="turntable frames (default: 24)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_render)


def _train(args: argparse.Namespace) -> int:
    set_torch_threads(args.torch_threads)
    from lumigrad.tasks.splat import SplatConfig, train_splat

    config = SplatConfig(iterations=args.iterations, minutes=args.minutes, init_points=args.init_points,
                         init=args.init, sh_degree=args.sh_degree, batch_views=args.batch_views,
                         eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed)
    return run_training(
        args, "splat", lambda progress: train_splat(args.data, args.out, config, resume=args.resume, progress=progress),
        ("psnr", "ssim", "iterations", "train_seconds", "gaussians"),
        "checkpoint.pt, gaussians.ply, metrics.json, psnr.png, eval_grid.png",
    )


def _render(args: argparse.Namespace) -> int:
    from lumigrad.tasks.splat import render_splat_outputs

    bar = progress_bar(args, args.frames, "turntable")
    res = render_splat_outputs(args.source, args.out, data_dir=args.data, turntable_frames=args.frames,
                               progress=(lambda i, n: bar.update(1)) if bar is not None else None)
    if bar is not None:
        bar.close()
    print(json.dumps(res, indent=2))
    print(f"wrote {args.out}/ (views.png, turntable.gif, render_metrics.json)")
    return 0
