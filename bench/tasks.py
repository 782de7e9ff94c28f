"""Full-quality runs of the inverse-rendering tasks on synthetic data with known ground truth; prints a table.

    PYTHONPATH=. python bench/tasks.py                 # full quality (slow on a CPU)
    PYTHONPATH=. python bench/tasks.py --quick         # smaller images / fewer trials
    PYTHONPATH=. python bench/tasks.py --only pose,lighting

Targets (issue 10): shape Chamfer <= 1 % of the diagonal and normal consistency >= 0.95 (Spot, 24 views,
256^2); DTU held-out silhouette IoU >= 0.95; pose >= 90 % of trials below 2 degrees from within 90 degrees;
texture >= 30 dB on visible texels, >= 32 dB held out; lighting direction error < 1 degree, SH within 5 %;
material within 0.05; garment IoU >= 0.95 with no vertex inside the body.
Results are also written to out/bench_tasks/results.json (and each task's output folder).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from lumigrad.geometry.rotations import random_rotation_near
from lumigrad.tasks._common import as_dataset, gt_pose
from lumigrad.tasks.synth import synthesize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def bench_shape(out: Path, q: bool) -> list[tuple]:
    from lumigrad.tasks.shape import ShapeConfig, run_shape

    res = 96 if q else 256
    data = out / "data_spot_grey"
    synthesize("spot_grey", data, views=24, resolution=res)
    m = run_shape(data, out / "shape_spot", ShapeConfig(iterations=200))  # visual-hull start (masks present)
    rows = [("shape Spot 24 views %d^2, hull start, 200 its" % res, "Chamfer/diag", m["chamfer_over_diagonal"], "<= 0.01", m["seconds_total"]),
            ("", "normal consistency", m["normal_consistency"], ">= 0.95", None)]
    dtu = SHARED / "dtu_scan65_neus_400x300"
    if dtu.is_dir():
        m = run_shape(dtu, out / "shape_dtu", ShapeConfig(iterations=300, downscale=4 if q else 2, holdout_every=7,
                                                          init_radius=0.5))
        rows.append(("shape DTU65 held-out (every 7th)", "silhouette IoU", m["heldout_silhouette_iou"], ">= 0.95", m["seconds_total"]))
    return rows


def bench_pose(out: Path, q: bool, trials: int | None = None, first: int = 0) -> list[tuple]:
    """Trials: initial rotation uniform within 90 degrees of the truth; each trial is appended to pose_trials.jsonl."""
    from lumigrad.tasks.pose import PoseConfig, fit_pose

    rows = []
    n_trials = trials or (6 if q else 50)
    log_path = out / "pose_trials.jsonl"
    scenes = ("spot", "torus_knot")
    setups = {}
    for scene in scenes:
        data = out / f"data_pose_{scene}"
        synthesize(scene, data, views=2, resolution=64, random_pose=True, seed=5)
        ds = as_dataset(data)
        setups[scene] = (ds, gt_pose(ds).matrix()[:3, :3])
    errs = {s: [] for s in scenes}
    secs = {s: [] for s in scenes}
    for k in range(first, first + n_trials):  # scenes interleaved, so a run cut short has trials of both
        for scene in scenes:
            ds, Rg = setups[scene]
            R0 = Rg @ random_rotation_near(1, 90.0, generator=torch.Generator().manual_seed(100 + k))[0]
            t0 = time.perf_counter()
            r = fit_pose(ds, None, PoseConfig(seed=k), init=(R0, torch.zeros(3)))
            secs[scene].append(time.perf_counter() - t0)
            errs[scene].append(r.metrics["rotation_error_deg"])
            rec = {"scene": scene, "trial": k, "init_deg": r.metrics["initial_rotation_error_deg"],
                   "error_deg": errs[scene][-1], "translation_error": r.metrics["translation_error"], "seconds": secs[scene][-1]}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"  pose {scene} trial {k}: init {rec['init_deg']:.1f} deg -> {rec['error_deg']:.3f} deg "
                  f"({rec['seconds']:.0f} s)", flush=True)
    for scene in scenes:
        e, t = errs[scene], secs[scene]
        rows.append((f"pose {scene} ({n_trials} trials, 2 views 64^2)", "fraction < 2 deg", sum(x < 2.0 for x in e) / len(e),
                     ">= 0.90", statistics.median(t)))
        rows.append(("", "median rotation error (deg)", statistics.median(e), "", None))
    return rows


def bench_texture(out: Path, q: bool) -> list[tuple]:
    from lumigrad.tasks.texture import TextureConfig, run_texture

    data = out / "data_spot"
    synthesize("spot", data, views=24, resolution=96 if q else 128)
    m = run_texture(data, out / "texture", TextureConfig(iterations=200 if q else 400))
    return [("texture Spot 128^2 texels", "PSNR visible texels (dB)", m["texture_psnr_visible_db"], ">= 30", m["seconds_total"]),
            ("", "PSNR held-out views (dB)", m["heldout_psnr_db"], ">= 32", None)]


def _random_lights(kind: str, g: torch.Generator) -> list:
    """Ambient + a key and a fill light from uniformly random directions (point lights 1.8-2.5 units out)."""
    from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight

    d1, d2 = torch.nn.functional.normalize(torch.randn(2, 3, generator=g), dim=-1)
    key, fill = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.3, 0.35, 0.45])
    if kind == "directional":
        return [AmbientLight(torch.full((3,), 0.2)), DirectionalLight(d1, color=key), DirectionalLight(d2, color=fill)]
    return [AmbientLight(torch.full((3,), 0.2)), PointLight(d1 * 2.5, color=key, intensity=6.0),
            PointLight(d2 * 1.8, color=fill, intensity=4.0)]


def bench_lighting(out: Path, q: bool) -> list[tuple]:
    from lumigrad.tasks.lighting import LightingConfig, run_lighting

    res = 48 if q else 128
    its, vps = (200, 4) if q else (300, 6)
    data = out / "data_spot_grey_light"
    synthesize("spot_grey", data, views=12, resolution=res)
    m = run_lighting(data, out / "lighting_dir", LightingConfig(iterations=its, views_per_step=vps))
    rows = [("lighting Spot 2 directional + ambient", "max direction error (deg)", m["direction_error_deg_max"], "< 1", m["seconds_total"])]
    # Truth directions drawn uniformly on the sphere (lights from below / behind included).
    g = torch.Generator().manual_seed(7)
    trials = 4 if q else 10
    for kind, metric in (("directional", "direction_error_deg_max"), ("point", "position_error_over_radius_max")):
        errs, t0 = [], time.perf_counter()
        for k in range(trials if kind == "directional" else max(2, trials // 2)):
            d = out / f"data_light_{kind}_{k}"
            synthesize("spot_grey", d, views=8, resolution=32 if q else 64, lights=_random_lights(kind, g))
            mk = run_lighting(d, out / f"lighting_{kind}_{k}", LightingConfig(model=kind, iterations=60 if q else 150, views_per_step=4))
            errs.append(mk[metric])
            print(f"  lighting {kind} trial {k}: {metric} {errs[-1]:.3f}", flush=True)
        unit = "deg" if kind == "directional" else "x object radius"
        rows.append((f"lighting {kind}, {len(errs)} random truths", f"worst error ({unit})", max(errs),
                     "< 1" if kind == "directional" else "", (time.perf_counter() - t0) / len(errs)))
    data = out / "data_spot_sh"
    synthesize("spot_sh", data, views=12, resolution=res)
    m = run_lighting(data, out / "lighting_sh", LightingConfig(model="sh", iterations=its, views_per_step=vps))
    rows.append(("lighting Spot SH order 2", "relative coefficient error", m["sh_relative_error"], "<= 0.05", m["seconds_total"]))
    m = run_lighting(data, out / "lighting_envmap", LightingConfig(model="envmap", iterations=its // 2, views_per_step=vps, lr=0.05))
    rows.append(("lighting Spot envmap 8x16 (truth: SH)", "SH-2 projection relative error", m["envmap_sh2_relative_error"], "",
                 m["seconds_total"]))
    return rows


def bench_material(out: Path, q: bool) -> list[tuple]:
    from lumigrad.tasks.material import MaterialConfig, run_material

    data = out / "data_sphere"
    synthesize("sphere", data, views=12, resolution=48 if q else 128)
    m = run_material(data, out / "material", MaterialConfig(iterations=200 if q else 300, views_per_step=3 if q else 4))
    return [("material GGX sphere", "roughness error", m["roughness_error"], "<= 0.05", m["seconds_total"]),
            ("", "metallic error", m["metallic_error"], "<= 0.05", None),
            ("", "base colour max error", m["base_color_error_max"], "", None)]


def bench_garment(out: Path, q: bool) -> list[tuple]:
    from lumigrad.tasks.garment import GarmentConfig, run_garment

    m = run_garment(None, out / "garment", GarmentConfig(iterations=300, resolution=64 if q else 96))
    return [("garment (procedural body)", "silhouette IoU", m["silhouette_iou"], ">= 0.95", m["seconds_total"]),
            ("", "vertices inside the body", m["verts_inside_body"], "0", None)]


BENCHES = {"shape": bench_shape, "pose": bench_pose, "texture": bench_texture, "lighting": bench_lighting,
           "material": bench_material, "garment": bench_garment}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller images and fewer pose trials")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES))
    ap.add_argument("--out", default="out/bench_tasks", help="output folder")
    ap.add_argument("--pose-trials", type=int, default=None, help="pose trials per mesh (default 50, 6 with --quick)")
    ap.add_argument("--pose-first", type=int, default=0, help="index of the first pose trial (to continue a run)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    results_path = out / "results.json"
    for name in args.only.split(","):
        if name not in BENCHES:
            print(f"bench/tasks.py: unknown task {name!r}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        new = BENCHES[name](out, args.quick, args.pose_trials, args.pose_first) if name == "pose" else BENCHES[name](out, args.quick)
        rows += new
        prev = json.loads(results_path.read_text()) if results_path.exists() else {}
        prev[name] = {"rows": [list(r) for r in new], "seconds": time.perf_counter() - t0, "quick": args.quick}
        results_path.write_text(json.dumps(prev, indent=2))
    print(f"\n{'case':44s} {'metric':30s} {'value':>10s} {'target':>9s} {'seconds':>8s}")
    for case, metric, value, target, secs in rows:
        v = f"{value:.4g}" if isinstance(value, float) else str(value)
        s = f"{secs:.0f}" if secs is not None else ""
        print(f"{case:44s} {metric:30s} {v:>10s} {target:>9s} {s:>8s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
