"""Property-based tests (hypothesis) of the loaders and the ops' input validation.

Property: no input crashes the process, hangs, or returns NaN / wrong data
silently. Every generated input either loads (and then the result is checked:
finite, indices in range, OBJ faces equal an independent reference parse) or
raises one of the documented errors (``ValueError``, ``TypeError``,
``FileNotFoundError``). Each property runs twice: a short version in the default
test run (a few examples) and a long one marked ``fuzz`` (``make fuzz``).
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumigrad.geometry.primitives import icosphere
from lumigrad.scene.io import read_mesh, read_transforms_json, write_mesh
from lumigrad.scene.mesh import Mesh

ALLOWED = (ValueError, TypeError, FileNotFoundError)
SHORT = settings(max_examples=int(os.environ.get("LUMIGRAD_FUZZ_SHORT", "10")), deadline=None, derandomize=True,
                 suppress_health_check=list(HealthCheck), database=None)
LONG = settings(max_examples=int(os.environ.get("LUMIGRAD_FUZZ_EXAMPLES", "600")), deadline=20_000,
                suppress_health_check=list(HealthCheck), database=None)


def _both(prop, strategy):
    """A short default test and a long ``fuzz`` test of ``prop`` over ``strategy``."""
    short = SHORT(given(strategy)(prop))
    long = pytest.mark.fuzz(LONG(given(strategy)(prop)))
    return short, long


def _tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lumigrad-fuzz-"))


# -- OBJ ---------------------------------------------------------------------------------------------

_num = st.one_of(
    st.integers(-3, 3).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.sampled_from(["1e400", "-0", "x", "", "0x1", "1,5", "nan"]),
)
_idx = st.one_of(st.integers(-6, 8).map(str), st.sampled_from(["", "x", "99999999999999999999", "1.5", "+2"]))
_corner = st.one_of(
    _idx,
    st.tuples(_idx, _idx).map("/".join),
    st.tuples(_idx, _idx, _idx).map("/".join),
    st.tuples(_idx, _idx).map(lambda t: f"{t[0]}//{t[1]}"),
)
_obj_line = st.one_of(
    st.lists(_num, min_size=2, max_size=7).map(lambda xs: "v " + " ".join(xs)),
    st.lists(_num, min_size=3, max_size=3).map(lambda xs: "v " + " ".join(xs)),
    st.lists(_num, min_size=1, max_size=3).map(lambda xs: "vt " + " ".join(xs)),
    st.lists(_num, min_size=3, max_size=3).map(lambda xs: "vn " + " ".join(xs)),
    st.lists(_corner, min_size=1, max_size=5).map(lambda cs: "f " + " ".join(cs)),
    st.sampled_from(["# comment", "", "o thing", "g group", "s 1", "usemtl m", "mtllib m.mtl", "l 1 2", "\tv 0 0 0"]),
)
_valid_v = st.lists(st.tuples(*[st.integers(-9, 9)] * 3).map(lambda t: "v %d %d %d" % t), min_size=3, max_size=6)


def _reference_faces(text: str) -> list[list[int]]:
    """Fan-triangulated 0-based vertex indices of every f line (positive and negative indices)."""
    nv, out = 0, []
    for line in text.splitlines():
        tok = line.split("#")[0].split()
        if tok[:1] == ["v"]:
            nv += 1
        elif tok[:1] == ["f"]:
            idx = [int(c.split("/")[0]) for c in tok[1:]]
            idx = [i - 1 if i > 0 else nv + i for i in idx]
            out += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    return out


def _check_mesh(m: Mesh) -> None:
    assert torch.isfinite(m.verts).all()
    assert m.faces.dtype == torch.int32 and int(m.faces.min()) >= 0 and int(m.faces.max()) < m.verts.shape[0]
    for t in (m.uvs, m.vert_normals, m.vert_colors, m.texture):
        assert t is None or bool(torch.isfinite(t).all())
    if m.uvs is not None:
        assert int(m.faces_uvs.min()) >= 0 and int(m.faces_uvs.max()) < m.uvs.shape[0]
    if m.vert_normals is not None:
        used = torch.unique(m.faces.long())
        torch.testing.assert_close(m.vert_normals[used].norm(dim=1), torch.ones(len(used)), atol=1e-4, rtol=0)


def _obj_property(lines: tuple[list[str], list[str]]) -> None:
    head, body = lines
    text = "\n".join(head + body) + "\n"
    p = _tmpdir() / "fuzz.obj"
    p.write_text(text)
    try:
        m = read_mesh(p)
    except ALLOWED:
        return
    _check_mesh(m)
    assert m.faces.tolist() == _reference_faces(text), text  # never wrong faces


test_obj_short, test_obj_long = _both(_obj_property, st.tuples(_valid_v, st.lists(_obj_line, max_size=12)))


# -- MTL ---------------------------------------------------------------------------------------------

_mtl_line = st.one_of(
    st.sampled_from(["newmtl m", "newmtl", "map_Kd tex.png", "map_Kd -s 1 1 1 tex.png", "map_Kd", "map_Kd ../../etc/x.png",
                     "Kd 1 1 1", "Kd x", "", "# c", "newmtl other", "map_Kd missing.png"]),
    st.text(max_size=20),
)


def _mtl_property(args) -> None:
    mtl_lines, write_png = args
    d = _tmpdir()
    (d / "m.mtl").write_text("\n".join(mtl_lines) + "\n", encoding="utf-8", errors="surrogatepass") if all(
        "\ud800" > c or c > "\udfff" for c in "".join(mtl_lines)) else (d / "m.mtl").write_text("newmtl m\n")
    if write_png == 1:
        import imageio.v3 as iio

        iio.imwrite(d / "tex.png", np.full((4, 4, 3), 200, np.uint8))
    elif write_png == 2:
        (d / "tex.png").write_bytes(b"\x89PNG garbage")
    (d / "a.obj").write_text("mtllib m.mtl\nusemtl m\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n")
    try:
        m = read_mesh(d / "a.obj")
    except ALLOWED:
        return
    _check_mesh(m)
    assert m.faces.tolist() == [[0, 1, 2]]


test_mtl_short, test_mtl_long = _both(_mtl_property, st.tuples(st.lists(_mtl_line, max_size=8), st.integers(0, 2)))


# -- PLY / GLB (mutations of valid files) ------------------------------------------------------------

def _valid_bytes(ext: str) -> bytes:
    v, f = icosphere(0)
    d = _tmpdir()
    colors = torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(0))
    write_mesh(d / f"m{ext}", Mesh(v, f, vert_colors=colors))
    return (d / f"m{ext}").read_bytes()


_SEEDS = {}


def _seed_file(ext: str) -> bytes:
    if ext not in _SEEDS:
        _SEEDS[ext] = _valid_bytes(ext)
    return _SEEDS[ext]


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("count"), st.integers(0, 10**6), st.sampled_from([0, 1, 7, 2**31, 2**32 + 5, 10**20])),
)


def _mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, pos, val in muts:
        if kind == "count":  # rewrite the first number after "element vertex"/"count" in a header
            s = bytes(b)
            for key in (b"element vertex ", b"element face ", b'"count":'):
                i = s.find(key)
                if i >= 0 and pos % 2 == 0:
                    j = i + len(key)
                    k = j
                    while k < len(s) and chr(s[k]).isdigit():
                        k += 1
                    b = bytearray(s[:j] + str(val).encode() + s[k:])
                    break
            continue
        if not b:
            break
        pos %= len(b)
        if kind == "flip":
            b[pos] = val
        elif kind == "truncate":
            del b[pos:]
        else:
            b.insert(pos, val)
    return bytes(b)


def _binary_property(ext: str):
    def prop(muts) -> None:
        p = _tmpdir() / f"fuzz{ext}"
        p.write_bytes(_mutate(_seed_file(ext), muts))
        try:
            m = read_mesh(p)
        except ALLOWED:
            return
        _check_mesh(m)

    return prop


test_ply_short, test_ply_long = _both(_binary_property(".ply"), st.lists(_mutation, min_size=1, max_size=4))
test_glb_short, test_glb_long = _both(_binary_property(".glb"), st.lists(_mutation, min_size=1, max_size=4))


# -- transforms.json ---------------------------------------------------------------------------------

_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from([0, 1, 8, 0.5, 3.2, 180, "r_0", "./r_0.png"]),
)
_KEYS = ["w", "h", "fl_x", "fl_y", "cx", "cy", "camera_angle_x", "camera_angle_y", "camera_model", "k1", "p2",
         "file_path", "transform_matrix", "frames"]
_json = st.recursive(
    _scalar,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), children, max_size=6)),
    max_leaves=25,
)
_matrix = st.one_of(
    st.lists(st.lists(st.floats(-10, 10) | st.sampled_from([math.nan, math.inf, 0.0]), min_size=4, max_size=4),
             min_size=3, max_size=5),
    st.just([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]]),
    _json,
)
_frame = st.fixed_dictionaries({"file_path": _scalar, "transform_matrix": _matrix}, optional={k: _scalar for k in _KEYS[:11]})
_meta = st.one_of(
    st.fixed_dictionaries({"frames": st.lists(_frame, max_size=3)}, optional={k: _scalar for k in _KEYS[:11]}),
    _json,
)


def _transforms_property(meta) -> None:
    p = _tmpdir() / "transforms.json"
    p.write_text(json.dumps(meta, allow_nan=True))
    try:
        cs = read_transforms_json(p)
    except ALLOWED:
        return
    cam = cs.camera
    assert torch.isfinite(cam.world_to_cam).all() and torch.isfinite(cam.K).all()
    assert bool((cam.K[:, 0, 0] > 0).all()) and cam.width > 0 and cam.height > 0
    assert torch.isfinite(torch.linalg.inv(cam.world_to_cam.double())).all()
    assert len(cs.image_paths) == cam.batch_size


test_transforms_short, test_transforms_long = _both(_transforms_property, _meta)


# -- ops' input validation ---------------------------------------------------------------------------
# Values stay within |x| <= 1e6: float32 overflow of huge clip coordinates and huge uv_da are the ops'
# own tests (issue 13, handled in lumigrad/ops).

_DTYPES = [torch.float32, torch.float64, torch.int32, torch.int64, torch.bool]
_vals = st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e-7, 1e6, -1e6, math.nan, math.inf, 2.0])


@st.composite
def _tensor(draw, ndim_max=4, dim_max=5, prefer=None):
    ndim = draw(st.integers(0, ndim_max))
    shape = [draw(st.integers(0, dim_max)) for _ in range(ndim)]
    if prefer is not None and draw(st.booleans()):
        shape = list(prefer)
    dtype = draw(st.sampled_from(_DTYPES))
    n = int(np.prod(shape)) if shape else 1
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1
    special = draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), _vals), max_size=3))
    for i, v in special:
        if n:
            base[i] = v
    if dtype in (torch.int32, torch.int64):
        t = (base * 4).nan_to_num(0, 5, -5).round().to(dtype)
    elif dtype == torch.bool:
        t = base > 0
    else:
        t = base.to(dtype)
    return t.reshape(shape)


_res = st.one_of(
    st.tuples(st.integers(-2, 12), st.integers(-2, 12)),
    st.sampled_from([(True, True), (4.0, 4.0), (4.5, 4), "44", None, (4,), (4, 4, 4), (np.int64(4), 3)]),
)


def _finite(out) -> None:
    ts = [out] if isinstance(out, torch.Tensor) else [t for t in out if isinstance(t, torch.Tensor)]
    for t in ts:
        if t.is_floating_point():
            assert bool(torch.isfinite(t).all()), "an op returned NaN/inf without raising"


def _ops_property(args) -> None:
    from lumigrad.ops import antialias, interpolate, rasterize, soft_rasterize, texture

    op, pos, tri, res, attr, tex, uv = args
    try:
        if op == "rasterize":
            out = rasterize(pos, tri, res)
        elif op == "soft_rasterize":
            out = soft_rasterize(pos, tri, res, attr)
        else:
            rast = rasterize(pos, tri, res).rast if op != "texture" else None
            if op == "interpolate":
                out = interpolate(attr, rast, tri)
            elif op == "antialias":
                out = antialias(attr, rast, pos, tri)
            else:
                out = texture(tex, uv, filter_mode="linear")
    except ALLOWED:
        return
    _finite(out)


_ops_args = st.tuples(
    st.sampled_from(["rasterize", "soft_rasterize", "interpolate", "antialias", "texture"]),
    _tensor(prefer=(4, 4)),
    _tensor(prefer=(2, 3)),
    _res,
    _tensor(prefer=(4, 3)),
    _tensor(prefer=(4, 4, 3)),
    _tensor(prefer=(1, 3, 3, 2)),
)
test_ops_short, test_ops_long = _both(_ops_property, _ops_args)
