"""Prototype (session 10, not kept): 2x2 ray packets over the binary BVH, one thread per packet (4 rays, one
shared stack, SIMD across the rays' slab and triangle tests); closest hits of coherent camera rays (pixel centres,
2x2 quads) against the scalar query on the same rays, single thread. Figures: ``bench/results_bvh.md``, session 10.

Usage: ``PYTHONPATH=. python bench/packet_proto.py 4 6 8`` (icosphere levels of ``bench/raytrace.py``'s scene).
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
LEVELS = [int(a) for a in sys.argv[1:]] or [4, 6]
sys.argv = sys.argv[:1]  # raytrace.py parses the command line when imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import warp as wp  # noqa: E402

import raytrace as rt  # noqa: E402
from lumigrad._runtime.launch import _ensure_init  # noqa: E402
from lumigrad.ops import _bvh  # noqa: E402
from lumigrad.ops import _bvh_kernels as _bk  # noqa: E402
from lumigrad.ops._bvh_kernels import LEAF_BITS, _safe_rcp, _stack_f, _stack_i  # noqa: E402

torch.set_num_threads(2)
wp.set_module_options({"enable_backward": False, "optimization_level": 3})
_MISS = 3.0e38
_PAD = 1.000002
_TOL = 1.0e-6


@wp.func
def _mn(a: wp.vec4, b: wp.vec4):
    return wp.vec4(wp.where(a[0] < b[0], a[0], b[0]), wp.where(a[1] < b[1], a[1], b[1]),
                   wp.where(a[2] < b[2], a[2], b[2]), wp.where(a[3] < b[3], a[3], b[3]))


@wp.func
def _mx(a: wp.vec4, b: wp.vec4):
    return wp.vec4(wp.where(a[0] > b[0], a[0], b[0]), wp.where(a[1] > b[1], a[1], b[1]),
                   wp.where(a[2] > b[2], a[2], b[2]), wp.where(a[3] > b[3], a[3], b[3]))


@wp.func
def _keep_ge(r: wp.vec4, x: wp.vec4, lim: wp.vec4):
    return wp.vec4(wp.where(x[0] >= lim[0], r[0], _MISS), wp.where(x[1] >= lim[1], r[1], _MISS),
                   wp.where(x[2] >= lim[2], r[2], _MISS), wp.where(x[3] >= lim[3], r[3], _MISS))


@wp.func
def _keep_lt(r: wp.vec4, x: wp.vec4, lim: wp.vec4):
    return wp.vec4(wp.where(x[0] < lim[0], r[0], _MISS), wp.where(x[1] < lim[1], r[1], _MISS),
                   wp.where(x[2] < lim[2], r[2], _MISS), wp.where(x[3] < lim[3], r[3], _MISS))


@wp.func
def _keys(lo: wp.vec3, hi: wp.vec3, ox: wp.vec4, oy: wp.vec4, oz: wp.vec4, rx: wp.vec4, ry: wp.vec4, rz: wp.vec4,
          best: wp.vec4):
    ax = wp.cw_mul(wp.vec4(lo[0]) - ox, rx)
    bx = wp.cw_mul(wp.vec4(hi[0]) - ox, rx)
    ay = wp.cw_mul(wp.vec4(lo[1]) - oy, ry)
    by = wp.cw_mul(wp.vec4(hi[1]) - oy, ry)
    az = wp.cw_mul(wp.vec4(lo[2]) - oz, rz)
    bz = wp.cw_mul(wp.vec4(hi[2]) - oz, rz)
    tn = _mx(_mx(_mn(ax, bx), _mn(ay, by)), _mx(_mn(az, bz), wp.vec4(0.0)))
    tf = _mn(_mn(_mx(ax, bx), _mx(ay, by)), _mx(az, bz)) * _PAD
    tf = _mn(tf, best * 0.99999994)
    return _keep_ge(tn, tf, tn)  # tn where tn <= tf


@wp.func
def _hmin(a: wp.vec4):
    return wp.min(wp.min(a[0], a[1]), wp.min(a[2], a[3]))


@wp.func
def _hmax(a: wp.vec4):
    return wp.max(wp.max(a[0], a[1]), wp.max(a[2], a[3]))


@wp.func
def _tri4(tris: wp.array(dtype=wp.vec3), k: int, ox: wp.vec4, oy: wp.vec4, oz: wp.vec4, dx: wp.vec4, dy: wp.vec4,
          dz: wp.vec4, best: wp.vec4):
    k4 = 4 * k
    p0 = tris[k4]
    e1 = tris[k4 + 1]
    e2 = tris[k4 + 2]
    n = tris[k4 + 3]
    sx = ox - wp.vec4(p0[0])
    sy = oy - wp.vec4(p0[1])
    sz = oz - wp.vec4(p0[2])
    inv = wp.cw_div(wp.vec4(-1.0), dx * n[0] + dy * n[1] + dz * n[2])
    t = wp.cw_mul(sx * n[0] + sy * n[1] + sz * n[2], inv)
    cx = wp.cw_mul(sy, dz) - wp.cw_mul(sz, dy)
    cy = wp.cw_mul(sz, dx) - wp.cw_mul(sx, dz)
    cz = wp.cw_mul(sx, dy) - wp.cw_mul(sy, dx)
    u = wp.cw_mul(cx * e2[0] + cy * e2[1] + cz * e2[2], inv)
    v = -wp.cw_mul(cx * e1[0] + cy * e1[1] + cz * e1[2], inv)
    r = _keep_ge(t, t, wp.vec4(0.0))
    r = _keep_lt(r, t, best)
    r = _keep_ge(r, u, wp.vec4(-_TOL))
    r = _keep_ge(r, v, wp.vec4(-_TOL))
    return _keep_lt(r, u + v, wp.vec4(1.0 + _TOL))


@wp.func
def packet_closest(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
                   ox: wp.vec4, oy: wp.vec4, oz: wp.vec4, dx: wp.vec4, dy: wp.vec4, dz: wp.vec4):
    """Slots (vec4i, -1: miss) and float32 t of the closest hits of 4 rays."""
    best = wp.vec4(_MISS)
    slot = wp.vec4i(-1)
    rx = wp.vec4(_safe_rcp(dx[0]), _safe_rcp(dx[1]), _safe_rcp(dx[2]), _safe_rcp(dx[3]))
    ry = wp.vec4(_safe_rcp(dy[0]), _safe_rcp(dy[1]), _safe_rcp(dy[2]), _safe_rcp(dy[3]))
    rz = wp.vec4(_safe_rcp(dz[0]), _safe_rcp(dz[1]), _safe_rcp(dz[2]), _safe_rcp(dz[3]))
    st = _stack_i()
    stt = _stack_f()
    sp = int(0)
    ref = int(0)
    while True:
        if ref >= 0:
            n4 = 4 * ref
            k0 = _keys(nodes[n4], nodes[n4 + 1], ox, oy, oz, rx, ry, rz, best)
            k1 = _keys(nodes[n4 + 2], nodes[n4 + 3], ox, oy, oz, rx, ry, rz, best)
            m0 = _hmin(k0)
            m1 = _hmin(k1)
            kk = kids[ref]
            if m0 < _MISS and m1 < _MISS:
                if m1 < m0:
                    st[sp] = kk[0]
                    stt[sp] = m0
                    ref = kk[1]
                else:
                    st[sp] = kk[1]
                    stt[sp] = m1
                    ref = kk[0]
                sp += 1
                continue
            if m0 < _MISS:
                ref = kk[0]
                continue
            if m1 < _MISS:
                ref = kk[1]
                continue
        else:
            code = -1 - ref
            s0 = code >> LEAF_BITS
            s1 = s0 + (code & 7) + 1
            for k in range(s0, s1):
                t = _tri4(tris, k, ox, oy, oz, dx, dy, dz, best)
                slot = wp.vec4i(wp.where(t[0] < best[0], k, slot[0]), wp.where(t[1] < best[1], k, slot[1]),
                                wp.where(t[2] < best[2], k, slot[2]), wp.where(t[3] < best[3], k, slot[3]))
                best = _mn(t, best)
        ref = int(-2147483647)
        bmax = _hmax(best)
        while sp > 0:
            sp -= 1
            if stt[sp] < bmax:
                ref = st[sp]
                break
        if ref == -2147483647:
            break
    return slot, best


@wp.kernel
def scalar(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
           tface: wp.array(dtype=wp.int32), o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
           face: wp.array(dtype=wp.int32), t: wp.array(dtype=float)):
    i = wp.tid()
    f, tt = _bk.bvh_closest(nodes, kids, tris, tface, o[i], d[i], 3.0e38)
    face[i] = f
    t[i] = tt


@wp.kernel
def packet(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
           tface: wp.array(dtype=wp.int32), o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
           face: wp.array(dtype=wp.int32), t: wp.array(dtype=float)):
    q = 4 * wp.tid()
    ox = wp.vec4(o[q][0], o[q + 1][0], o[q + 2][0], o[q + 3][0])
    oy = wp.vec4(o[q][1], o[q + 1][1], o[q + 2][1], o[q + 3][1])
    oz = wp.vec4(o[q][2], o[q + 1][2], o[q + 2][2], o[q + 3][2])
    dx = wp.vec4(d[q][0], d[q + 1][0], d[q + 2][0], d[q + 3][0])
    dy = wp.vec4(d[q][1], d[q + 1][1], d[q + 2][1], d[q + 3][1])
    dz = wp.vec4(d[q][2], d[q + 1][2], d[q + 2][2], d[q + 3][2])
    slot, best = packet_closest(nodes, kids, tris, ox, oy, oz, dx, dy, dz)
    for l in range(4):
        if slot[l] >= 0:
            face[q + l] = tface[slot[l]]
            t[q + l] = _bk._mt_t64(tris, slot[l], o[q + l], d[q + l])
        else:
            face[q + l] = -1
            t[q + l] = 3.0e38


def quad_rays(level, res):
    shapes, cam, _ = rt.scene(level, res)
    ys, xs = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
    # 2x2 pixel quads, row-major, 4 consecutive rays each
    pix = torch.stack([xs, ys], -1).reshape(res // 2, 2, res // 2, 2, 2).permute(0, 2, 1, 3, 4).reshape(-1, 2).float() + 0.5
    o, d = rt._camera_rays(cam, torch.zeros(pix.shape[0], dtype=torch.long), pix)
    v = torch.cat([s.mesh.verts for s in shapes]).float().contiguous()
    f = torch.cat([shapes[0].mesh.faces, shapes[1].mesh.faces + shapes[0].mesh.verts.shape[0]]).int().contiguous()
    return v, f, o.float().contiguous(), d.float().contiguous()


_ensure_init()
for level in LEVELS:
    v, f, o, d = quad_rays(level, 512)
    b = _bvh.BVHData(v, f.reshape(-1))
    a = [x.to_array() for x in b.args()]
    r = o.shape[0]
    ow, dw = wp.from_torch(o, dtype=wp.vec3), wp.from_torch(d, dtype=wp.vec3)
    out = {k: (torch.empty(r, dtype=torch.int32), torch.empty(r)) for k in "sp"}
    fs = {"s": lambda: wp.launch(scalar, r, [*a, ow, dw, wp.from_torch(out["s"][0]), wp.from_torch(out["s"][1])], device="cpu"),
          "p": lambda: wp.launch(packet, r // 4, [*a, ow, dw, wp.from_torch(out["p"][0]), wp.from_torch(out["p"][1])], device="cpu")}
    fs["s"](); fs["p"]()
    same = float((out["s"][0] == out["p"][0]).float().mean()) * 100
    tim = {k: [] for k in fs}
    for _ in range(7):
        for k, fn in fs.items():
            c = time.thread_time(); fn(); tim[k].append(1e9 * (time.thread_time() - c) / r)
    rat = statistics.median([y / x for x, y in zip(tim["s"], tim["p"])])
    print(f"icosphere-{level}: coherent camera rays (2x2 quads, pixel centres) scalar {statistics.median(tim['s']):.1f} "
          f"-> packets {statistics.median(tim['p']):.1f} ns/ray (x{rat:.3f}); same face {same:.3f} %", flush=True)
