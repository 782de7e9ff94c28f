"""A/B of the untextured path kernels in one process: this tree's vs an older checkout's ``_path_kernels.py``.

Both kernels run the same arguments (this tree's arguments the old kernel lacks, e.g. textures or sky, dropped)
on the Cornell box of ``bench/trace_gi.py`` (64^2, 16 spp, 3 bounces, float32; ``--full``: a GGX floor, the full
variant), forward and replay (albedo gradients, radiance recomputed), single thread, ``time.thread_time``,
``--rounds`` alternating launches; prints medians, minima and the median of the paired ratios. Loading both in one
process takes the machine's load out of the comparison far better than alternating processes.

Usage: ``PYTHONPATH=. python bench/path_kernel_ab.py --base /path/to/old/checkout [--full] [--rounds 30]``
(e.g. ``git archive <commit> | tar -x -C /tmp/base``).
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--base", required=True)
ap.add_argument("--full", action="store_true")
ap.add_argument("--rounds", type=int, default=30)
ARGS = ap.parse_args()
os.environ["LUMIGRAD_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "validation"))
import torch  # noqa: E402

torch.set_num_threads(1)
import lumigrad.ops.path_trace as pt  # noqa: E402
spec = importlib.util.spec_from_file_location("base_path_kernels", os.path.join(ARGS.base, "lumigrad/ops/_path_kernels.py"))
bk = importlib.util.module_from_spec(spec); spec.loader.exec_module(bk)
from mitsuba_scenes import cornell_box  # noqa: E402

import lumigrad.render._path_fused as pf  # noqa: E402
from lumigrad.render.path import TraceSettings, _Scene, prepare_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.materials import GGXMaterial, LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import Shape  # noqa: E402

FULL = ARGS.full
shapes64, cam64, _ = cornell_box(64)
cam = cam64.to(dtype=torch.float32)
shapes = []
for i, s in enumerate(shapes64):
    a = s.material.albedo
    a = a.float() if isinstance(a, torch.Tensor) else a
    mat = GGXMaterial(a, 0.4, 0.2) if FULL and i == 0 else LambertMaterial(a)
    shapes.append(Shape(Mesh(s.mesh.verts.float(), s.mesh.faces), mat, None if s.emission is None else s.emission.float()))
sc = _Scene(shapes, cam, [], TraceSettings(spp=16, max_bounces=3), prepare_trace(shapes))
ps = pf._path_scene(sc)
rows = [x.detach() for x in pf._rows(sc)]
refl, emis, ls, rough, metal = rows[:5]
st, camera = pf._settings(sc, 0), pf._camera(sc, 0)
R = 64 * 64 * 16
captured = []
real_launch, real_chunks = pt.launch, pt.launch_chunks
pt.launch = lambda k, dim, args, dev: captured.append(("fwd", k, dim, list(args)))
pt.launch_chunks = lambda chunks, dev: captured.append(("rep", chunks))
L, _ = pt.trace_paths(sc.accel.bvh, ps, refl, emis, ls, None, None, None, st, camera, R, rough, metal)
g = torch.ones(64 * 64, 3)
pt.replay_paths(sc.accel.bvh, ps, refl, emis, ls, None, None, None, st, g, (True, False, False), camera, R, 0, None, rough, metal)
pt.launch, pt.launch_chunks = real_launch, real_chunks

def trim0(kernel, args):  # args without the leading offset
    return trim(kernel, [0] + args)[1:]


def trim(kernel, args):
    """This tree's arguments the base kernel has too (by name: e.g. no texture or sky arguments in older bases)."""
    keep = {a.label for a in bk.path_kernel(False, False).adj.args}
    return [a for a, x in zip(args, kernel.adj.args) if x.label in keep]

_, kf, dim, fargs = captured[0]
_, chunks = captured[1]
full = bool(FULL)
kfb = bk.path_kernel(False, full)
krb = bk.path_kernel(True, full)
kr = chunks[0][0]
fwd_m = lambda: real_launch(kf, dim, fargs, "cpu")
fargs_b = trim0(kf, fargs)
fwd_b = lambda: real_launch(kfb, dim, fargs_b, "cpu")
rch_b = [(krb, d, trim(kr, a)) for (_, d, a) in chunks]
rep_m = lambda: real_chunks(chunks, "cpu")
rep_b = lambda: real_chunks(rch_b, "cpu")
for f in (fwd_m, fwd_b, rep_m, rep_b): f()
t = {k: [] for k in ("fwd branch", "fwd base", "replay branch", "replay base")}
for _ in range(ARGS.rounds):
    for k, f in (("fwd branch", fwd_m), ("fwd base", fwd_b), ("replay branch", rep_m), ("replay base", rep_b)):
        c = time.thread_time(); f(); t[k].append(time.thread_time() - c)
for k, v in t.items(): print(k, "median %.4f min %.4f" % (statistics.median(v), min(v)))
for a in ("fwd", "replay"):
    r = [x / y for x, y in zip(t[a + " branch"], t[a + " base"])]
    print(a, "paired ratio branch/base median %.3f" % statistics.median(r))
