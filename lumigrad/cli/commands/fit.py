"""`lumigrad fit TASK DATA ...`: inverse-rendering tasks (shape, pose, texture, material, lighting, garment, inverse).

Every task takes its settings as flags or from a TOML file (``--config``; flags
win), shows a progress bar on a terminal, and writes one output folder with
result files, pictures, ``metrics.json`` and a self-contained ``report.html``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import typing


# task name -> (module, config class, run function, help, needs a --mesh)
TASKS = {
    "shape": ("lumigrad.tasks.shape", "ShapeConfig", "run_shape", "multi-view mesh reconstruction from images and/or masks", False),
    "pose": ("lumigrad.tasks.pose", "PoseConfig", "run_pose", "6-DoF pose of a known mesh from one or more images", True),
    "texture": ("lumigrad.tasks.texture", "TextureConfig", "run_texture", "albedo texture (UV) of a known mesh under known lights", True),
    "material": ("lumigrad.tasks.material", "MaterialConfig", "run_material", "constant GGX base colour, roughness, metallic under known lights", True),
    "lighting": ("lumigrad.tasks.lighting", "LightingConfig", "run_lighting", "directional + ambient lights or SH environment from images", True),
    "garment": ("lumigrad.tasks.garment", "GarmentConfig", "run_garment", "fit a template garment to target silhouettes of a body", False),
    "inverse": ("lumigrad.tasks.inverse", "InverseConfig", "run_inverse", "joint shape + per-vertex albedo + lighting, staged", False),
}


def _flag_type(typ):
    origin = typing.get_origin(typ)
    if typ is int:
        return int
    if typ is float:
        return float
    if typ is str:
        return str
    if origin is tuple:
        inner = typing.get_args(typ)[0]
        return lambda s: tuple(inner(x) for x in s.split(",") if x.strip())
    return None


def _add_config_flags(p: argparse.ArgumentParser, cls) -> list[str]:
    from lumigrad.tasks._runner import config_fields

    names = []
    for name, typ, default, help_ in config_fields(cls):
        flag = "--" + name.rstrip("_").replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        h = f"{help_} (default: {shown})"
        if typ is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=h)
        else:
            conv = _flag_type(typ)
            if conv is None:
                continue
            p.add_argument(flag, dest=name, type=conv, default=None, metavar=typ.__name__.upper() if hasattr(typ, "__name__") else "LIST", help=h)
        names.append(name)
    return names


def register(sub) -> None:
    fit = sub.add_parser("fit", help="inverse-rendering tasks: shape, pose, texture, material, lighting, garment, inverse",
                         description=__doc__.split("\n\n")[1] if __doc__ else None)
    tasks = fit.add_subparsers(dest="task", required=True, metavar="TASK")
    for task, (mod, cfg_name, run_name, help_, needs_mesh) in TASKS.items():
        cls = getattr(importlib.import_module(mod), cfg_name)
        p = tasks.add_parser(task, help=help_, description=f"lumigrad fit {task}: {help_}.")
        if task == "garment":
            p.add_argument("data", nargs="?", default=None,
                           help="optional dataset folder with target masks; default: the built-in procedural body and garment")
        else:
            p.add_argument("data", help="dataset folder (transforms.json or NeuS cameras_sphere.npz) or transforms.json")
        if needs_mesh:
            p.add_argument("--mesh", default=None, help="mesh file (OBJ/PLY/GLB); default: the dataset's ground_truth mesh")
        p.add_argument("--out", default=f"out/fit_{task}", help=f"output folder (default: out/fit_{task})")
        p.add_argument("--config", default=None, metavar="TOML", help="TOML file with settings (flags override it)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        names = _add_config_flags(p, cls)
        p.set_defaults(func=_run, _task=task, _names=names)


def _run(args: argparse.Namespace) -> int:
    from lumigrad.tasks._runner import load_config

    mod, cfg_name, run_name, _, needs_mesh = TASKS[args._task]
    m = importlib.import_module(mod)
    config = load_config(getattr(m, cfg_name), args.config, {n: getattr(args, n) for n in args._names})
    kwargs = {"mesh": args.mesh} if needs_mesh else {}
    progress = not args.quiet and sys.stderr.isatty()
    metrics = getattr(m, run_name)(args.data, args.out, config, progress=progress, **kwargs)
    summary = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/ (report.html, metrics.json, ...)")
    return 0
