"""`lumigrad trace`: render a JSON scene with the ray tracer, or fit a light to a target shadow."""
from __future__ import annotations

import argparse
import json
import sys

from lumigrad.cli.common import positive_int


def register(sub) -> None:
    trace = sub.add_parser("trace", help="physically based ray tracing (render a scene file, shadow fit, GI material fit)")
    tsub = trace.add_subparsers(dest="trace_command", required=True)
    render = tsub.add_parser("render", help="render a JSON scene file (format: lumigrad.scene.scene_file) or a Mitsuba 3 XML scene")
    render.add_argument("scene", help="scene .json file, or a Mitsuba 3 .xml scene (supported subset: lumigrad.scene.mitsuba_xml)")
    render.add_argument("--out", default="out/trace", help="output folder (default: out/trace)")
    render.add_argument("--spp", type=positive_int, help="samples per pixel (default: the scene's integrator spp)")
    render.set_defaults(func=_render)
    shadow = tsub.add_parser("shadow", help="move a point light until its shadow matches a target image")
    shadow.add_argument("--out", default="out/shadow", help="output folder (default: out/shadow)")
    shadow.add_argument("--resolution", type=positive_int, default=48, help="image width and height (default: 48)")
    shadow.add_argument("--iterations", type=positive_int, default=60, help="optimisation steps (default: 60)")
    shadow.add_argument("--spp", type=positive_int, default=4, help="samples per pixel (default: 4)")
    shadow.add_argument("--quiet", action="store_true", help="no progress bar")
    shadow.set_defaults(func=_shadow)
    mat = tsub.add_parser("material", help="fit albedo and roughness under global illumination (Cornell box)")
    mat.add_argument("--out", default="out/trace_material", help="output folder (default: out/trace_material)")
    mat.add_argument("--resolution", type=positive_int, default=32, help="image width and height (default: 32)")
    mat.add_argument("--iterations", type=positive_int, default=40, help="optimisation steps (default: 40)")
    mat.add_argument("--spp", type=positive_int, default=4, help="samples per pixel while fitting (default: 4)")
    mat.add_argument("--target-spp", type=positive_int, default=64, help="samples per pixel of the target (default: 64)")
    mat.add_argument("--bounces", type=positive_int, default=3, help="path length, 1 = direct only (default: 3)")
    mat.add_argument("--texture-res", type=int, default=0, metavar="N",
                     help="fit the back wall's albedo as an N x N texture, N in [4, 256] (default: 0, one colour)")
    mat.add_argument("--quiet", action="store_true", help="no progress bar")
    mat.set_defaults(func=_material)


def _render(args: argparse.Namespace) -> int:
    from lumigrad.tasks.shadow import render_scene_file

    metrics = render_scene_file(args.scene, args.out, spp=args.spp)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {args.out}/ (image.png, metrics.json)")
    return 0


def _material(args: argparse.Namespace) -> int:
    from lumigrad.tasks.gi_material import GIMaterialConfig, run_gi_material

    config = GIMaterialConfig(resolution=args.resolution, iterations=args.iterations, spp=args.spp,
                              target_spp=args.target_spp, max_bounces=args.bounces, texture_res=args.texture_res)
    m = run_gi_material(args.out, config, progress=not args.quiet and sys.stderr.isatty())
    keys = ("fitted", "start_error_max", "final_error_max", "start_image_mse", "final_image_mse", "start_image_psnr_db",
            "final_image_psnr_db", "wall_texture", "seconds_total")
    print(json.dumps({k: m[k] for k in keys if k in m}, indent=2))
    tex = "texture_true.png, texture_fitted.png, texture_comparison.png, " if config.texture_res else ""
    print(f"wrote {args.out}/ (target_vs_result.png, loss.png, {tex}metrics.json, report.html)")
    return 0


def _shadow(args: argparse.Namespace) -> int:
    from lumigrad.tasks.shadow import ShadowConfig, run_shadow_demo

    config = ShadowConfig(resolution=args.resolution, iterations=args.iterations, spp=args.spp)
    metrics = run_shadow_demo(args.out, config, progress=not args.quiet and sys.stderr.isatty())
    print(json.dumps({k: metrics[k] for k in ("start_error", "final_error", "first_loss", "final_loss", "seconds")}, indent=2))
    print(f"wrote {args.out}/ (images.png, loss.png, metrics.json)")
    return 0
