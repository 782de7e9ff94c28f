"""Catalogue of bad inputs and what each gets: the single source of tests/robustness/test_bad_inputs.py
and of docs/robustness.md.

Each :class:`Case` is one bad input: ``run(tmp_path)`` feeds it to lumigrad and
must raise ``raises`` with a message matching ``match`` (CLI cases: ``run``
returns ``(exit_code, stderr)``, which must be 2 and ``lumigrad: error: <match>``
with no traceback). Regenerate the page after editing: ``python
tests/robustness/catalogue.py > docs/robustness.md`` (a test compares them).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[2]

V3 = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"
VT3 = "vt 0 0\nvt 1 0\nvt 0 1\n"


@dataclass(frozen=True)
class Case:
    area: str
    input: str  # the bad input, for people
    raises: type | str  # exception type, or "exit 2" for the CLI
    match: str  # regex the message must contain
    run: Callable[[Path], object]
    issue: bool = False  # listed in issue 13
    check: Callable[[object], None] | None = None  # for "parsed" cases: asserts on the result


def _assert(ok: bool) -> None:
    assert ok


# -- helpers -------------------------------------------------------------------------------------------


def _obj(text: str):
    def run(tmp: Path):
        from lumigrad.scene.io import read_mesh

        p = tmp / "bad.obj"
        p.write_text(text)
        return read_mesh(p)

    return run


def _file(name: str, data: bytes | str, reader: str = "read_mesh"):
    def run(tmp: Path):
        from lumigrad.scene import io

        p = tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return getattr(io, reader)(p)

    return run


_EYE = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]


def _tj(meta: dict | str):
    return _file("transforms.json", meta if isinstance(meta, str) else json.dumps(meta), "read_transforms_json")


def _frames(**extra) -> dict:
    return {"w": 8, "h": 8, "camera_angle_x": 0.8, "frames": [{"file_path": "r_0.png", "transform_matrix": _EYE}], **extra}


def _camera(w2c=None, width=8, height=8):
    def run(tmp: Path):
        from lumigrad.scene.camera import Camera

        k = torch.tensor([[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]])
        return Camera(torch.eye(4) if w2c is None else w2c, k, width, height)

    return run


def _rasterize_resolution(res):
    def run(tmp: Path):
        from lumigrad.ops import rasterize

        pos = torch.tensor([[-0.5, -0.5, 0, 1.0], [0.5, -0.5, 0, 1], [0, 0.5, 0, 1]])
        return rasterize(pos, torch.tensor([[0, 1, 2]], dtype=torch.int32), res)

    return run


def _resume(first: str, second: str, *, params_second=("x",), foreign_payload: bool = False):
    def run(tmp: Path):
        from lumigrad.optim import CheckpointConfig, Convergence, fit
        from lumigrad.optim.checkpoint import save_checkpoint

        cfg = CheckpointConfig(tmp / "fit.pt", every=2)
        if foreign_payload:
            save_checkpoint(cfg, {"iteration": 3, "weights": torch.zeros(2)})
        else:
            x = torch.zeros(3, requires_grad=True)
            fit({"x": x}, lambda it: (x - 1).pow(2).sum(), optimizer=first, lr=0.1, stop=Convergence(max_iters=4),
                checkpoint=cfg)
        ps = {n: torch.zeros(3, requires_grad=True) for n in params_second}
        return fit(ps, lambda it: sum((p - 1).pow(2).sum() for p in ps.values()), optimizer=second, lr=0.1,
                   stop=Convergence(max_iters=8), checkpoint=cfg, resume=True)

    return run


def _cli(*argv: str, setup: Callable[[Path], None] | None = None):
    def run(tmp: Path):
        if setup is not None:
            setup(tmp)
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.run([sys.executable, "-m", "lumigrad.cli.main", *argv], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stderr

    return run


def _touch(name: str):
    return lambda tmp: (tmp / name).write_text("x")


_PLY_HEAD = "ply\nformat {fmt} 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n" \
            "element face 1\nproperty list uchar int vertex_indices\nend_header\n"

# -- the catalogue -----------------------------------------------------------------------------------

CASES: list[Case] = [
    # OBJ
    Case("OBJ", "face mixing corner forms `f 1/1/1 2/2 3`", "parsed", r"faces \[\[0, 1, 2\]\], UVs dropped with a warning",
         _obj(V3 + VT3 + "vn 0 0 1\nf 1/1/1 2/2 3\n"), issue=True,
         check=lambda m: _assert(m.faces.tolist() == [[0, 1, 2]] and m.uvs is None)),
    Case("OBJ", "malformed integer `f 1 2 x`", ValueError, r"bad\.obj:4: face 'f 1 2 x': vertex index 'x' is not an integer",
         _obj(V3 + "f 1 2 x\n"), issue=True),
    Case("OBJ", "float where an index belongs `f 1 2 3.5`", ValueError, r"bad\.obj:5: .*vertex index '3.5' is not an integer",
         _obj(V3 + "f 1 2 3\nf 1 2 3.5\n")),
    Case("OBJ", "malformed number `v 1 x 0`", ValueError, r"bad\.obj:2: malformed 'v' line 'v 1 x 0'",
         _obj("v 0 0 0\nv 1 x 0\nv 0 1 0\nf 1 2 3\n")),
    Case("OBJ", "`vt` index 0 (`f 1/0 2/2 3/3`)", ValueError, r"bad\.obj:7: .*texture-coordinate index 0 \(OBJ indices start at 1\)",
         _obj(V3 + VT3 + "f 1/0 2/2 3/3\n"), issue=True),
    Case("OBJ", "`vn` index 0 (`f 1//0 2//1 3//1`)", ValueError, r"bad\.obj:5: .*normal index 0 \(OBJ indices start at 1\)",
         _obj(V3 + "vn 0 0 1\nf 1//0 2//1 3//1\n"), issue=True),
    Case("OBJ", "vertex index 0 (`f 1 2 0`)", ValueError, r"vertex index 0 \(OBJ indices start at 1\)", _obj(V3 + "f 1 2 0\n")),
    Case("OBJ", "relative `vt` index before the first (`f 1/-9 2/2 3/3`)", ValueError,
         r"relative texture-coordinate index -9 points before the first", _obj(V3 + VT3 + "f 1/-9 2/2 3/3\n")),
    Case("OBJ", "index beyond int64 (`f 1 2 99999999999999999999999`)", ValueError, r"vertex index 9+ is out of range",
         _obj(V3 + "f 1 2 99999999999999999999999\n")),
    Case("OBJ", "index past the last vertex (`f 1 2 4`)", ValueError, r"face vertex index out of range \(valid 1\.\.3\)",
         _obj(V3 + "f 1 2 4\n")),
    Case("OBJ", "corner with 3 slashes (`f 1/1/1/1 2 3`)", ValueError, r"a corner must be v, v/vt, v//vn or v/vt/vn",
         _obj(V3 + "f 1/1/1/1 2 3\n")),
    Case("OBJ", "NaN normal (`vn nan nan nan`)", ValueError, r"has 1 'vn' normals with NaN or inf components",
         _obj(V3 + "vn nan nan nan\nf 1//1 2//1 3//1\n"), issue=True),
    Case("OBJ", "zero-length normal (`vn 0 0 0`)", "parsed", r"normals replaced by face normals \(0, 0, 1\) with a warning",
         _obj(V3 + "vn 0 0 0\nf 1//1 2//1 3//1\n"), check=lambda m: _assert(m.vert_normals.tolist() == [[0.0, 0.0, 1.0]] * 3)),
    Case("OBJ", "NaN position", ValueError, r"verts contains 1 NaN or inf values", _obj("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")),
    Case("OBJ", "binary garbage", ValueError, r"not a text OBJ file", _file("bad.obj", bytes(range(256)) * 4)),
    # MTL
    Case("MTL", "`mtllib` naming a missing file", "parsed", r"mesh without texture, warning names the missing file",
         _obj("mtllib nothere.mtl\nusemtl m\n" + V3 + VT3 + "f 1/1 2/2 3/3\n"),
         check=lambda m: _assert(m.texture is None and m.uvs is not None)),
    # PLY
    Case("PLY", "ASCII header with a huge vertex count (10^20)", ValueError,
         r"bad\.ply: header declares 100000000000000000000 vertex elements",
         _file("bad.ply", _PLY_HEAD.format(fmt="ascii", n=10**20) + "0 0 0\n3 0 0 0\n"), issue=True),
    Case("PLY", "binary header with 4e9 vertices and no data", ValueError, r"bad\.ply: header declares 4000000000 vertex elements",
         _file("bad.ply", _PLY_HEAD.format(fmt="binary_little_endian", n=4_000_000_000))),
    Case("PLY", "non-integer count (`element vertex 1e3`)", ValueError, r"bad\.ply: .*count '1e3' is not a non-negative integer",
         _file("bad.ply", _PLY_HEAD.format(fmt="ascii", n="1e3"))),
    Case("PLY", "header without `end_header`", ValueError, r"bad\.ply: .*end_header",
         _file("bad.ply", "ply\nformat ascii 1.0\nelement vertex 3\n")),
    # GLB
    Case("GLB", "truncated GLB (12 bytes of magic)", ValueError, r"cannot read .*bad\.glb",
         _file("bad.glb", b"glTF\x02\x00\x00\x00\x0c\x00\x00\x00")),
    # transforms.json
    Case("transforms.json", "deeply nested JSON (10^5 brackets)", ValueError, r"nested too deeply",
         _tj("[" * 100_000 + "]" * 100_000), issue=True),
    Case("transforms.json", "zero field of view (`camera_angle_x: 0`)", ValueError,
         r"'camera_angle_x' must be a field of view in \(0, pi\) radians, got 0", _tj(_frames(camera_angle_x=0)), issue=True),
    Case("transforms.json", "180 degree field of view (`camera_angle_x: pi`)", ValueError,
         r"'camera_angle_x' must be a field of view in \(0, pi\) radians, got 3.14159", _tj(_frames(camera_angle_x=math.pi)),
         issue=True),
    Case("transforms.json", "field of view in degrees (`camera_angle_x: 60`)", ValueError, r"it looks like degrees",
         _tj(_frames(camera_angle_x=60))),
    Case("transforms.json", "missing image path (`file_path: null`)", ValueError, r"frame 0 'file_path' must be a non-empty string, got None",
         _tj({"w": 8, "h": 8, "camera_angle_x": 0.8, "frames": [{"file_path": None, "transform_matrix": _EYE}]}), issue=True),
    Case("transforms.json", "singular `transform_matrix` (zero 3x3 part)", ValueError, r"frame 0 transform_matrix is singular",
         _tj({"w": 8, "h": 8, "camera_angle_x": 0.8, "frames": [{"file_path": "a.png", "transform_matrix":
              [[0.0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3], [0, 0, 0, 1]]}]}), issue=True),
    Case("transforms.json", "boolean image width (`w: true`)", ValueError, r"expected a number, got True", _tj(_frames(w=True))),
    Case("transforms.json", "infinite image width (`w: 1e400`)", ValueError, r"'w' must be a positive integer image size",
         _tj('{"w": 1e400, "h": 8, "camera_angle_x": 0.8, "frames": [{"file_path": "a", "transform_matrix": '
             + json.dumps(_EYE) + "}]}")),
    Case("transforms.json", "NaN field of view", ValueError, r"must be a field of view in \(0, pi\) radians, got nan",
         _tj('{"w": 8, "h": 8, "camera_angle_x": NaN, "frames": [{"file_path": "a", "transform_matrix": '
             + json.dumps(_EYE) + "}]}")),
    # Camera / ops
    Case("Camera", "singular `world_to_cam` (zero rotation part)", ValueError, r"world_to_cam\[0\] is singular",
         _camera(torch.diag(torch.tensor([0.0, 0.0, 0.0, 1.0]))), issue=True),
    Case("Camera", "`width=True`", ValueError, r"width must be a positive int, got True", _camera(width=True)),
    Case("ops", "`rasterize(..., resolution=(True, True))`", ValueError,
         r"rasterize\(\): resolution must be \(height, width\) positive ints, got \(True, True\)", _rasterize_resolution((True, True)),
         issue=True),
    Case("ops", "`rasterize(..., resolution=\"64\")`", ValueError, r"resolution must be \(height, width\) positive ints",
         _rasterize_resolution("64")),
    # checkpoints
    Case("checkpoint", "resume an Adam checkpoint with `optimizer=\"sgd\"`", ValueError,
         r"holds the state of Adam .* but this fit uses SGD", _resume("adam", "sgd"), issue=True),
    Case("checkpoint", "resume with a different parameter set", ValueError, r"checkpoint has parameters \['x'\], params has \['y'\]",
         _resume("adam", "adam", params_second=("y",)), issue=True),
    Case("checkpoint", "resume from a checkpoint not written by `fit()`", ValueError,
         r"lacks \['param_names', .*expected a checkpoint written by fit\(\)", _resume("adam", "adam", foreign_payload=True),
         issue=True),
    # CLI
    Case("CLI", "`lumigrad demo --out FILE` (an existing file)", "exit 2", r"--out afile: exists and is not a folder",
         _cli("demo", "--out", "afile", "--quiet", setup=_touch("afile")), issue=True),
    Case("CLI", "`lumigrad demo --out FILE/sub` (a path under a file)", "exit 2",
         r"--out afile/sub: afile is a file, so no folder can be made under it",
         _cli("demo", "--out", "afile/sub", "--quiet", setup=_touch("afile")), issue=True),
]


def _outcome(c: Case) -> str:
    if c.raises == "exit 2":
        return "exit code 2, `lumigrad: error: ...` (no traceback)"
    if c.raises == "parsed":
        return "parsed correctly"
    return f"`{c.raises.__name__}`"


def markdown() -> str:
    """docs/robustness.md, generated from :data:`CASES`."""
    out = [
        "# Robustness: bad inputs and what they get",
        "",
        "<!-- Generated by `python tests/robustness/catalogue.py > docs/robustness.md`; "
        "tests/robustness/test_bad_inputs.py runs every row and checks this page is current. -->",
        "",
        "Each row is a test (tests/robustness/test_bad_inputs.py): the input is fed to lumigrad and the error type",
        "and message are checked. Messages name the function, the file (and line, for OBJ) or argument, and the",
        "problem. Rows marked * were reported in issue 13. Besides these rows:",
        "",
        "- Property-based tests (tests/robustness/test_fuzz.py, `hypothesis`) feed random and mutated OBJ, MTL, PLY,",
        "  GLB and transforms.json files and random op arguments: every input must either load / return finite",
        "  values or raise `ValueError`, `TypeError` or `FileNotFoundError`; never crash, hang or return NaN.",
        "  A short run is in the default tests; `make fuzz` runs a few minutes.",
        "- Every public op runs from 8 Python threads at once, first call included, with a warm and an empty",
        "  Warp kernel cache (tests/robustness/test_threads.py); see docs/threads.md.",
        "- Files are written atomically with the permissions `open()` would give (umask); temporaries of",
        "  interrupted writes (`.NAME.tmp-PID-XXXX.ext`) are removed by the next write to the same file",
        "  once their process is gone or they are an hour old (tests/robustness/test_files.py).",
        "",
        "| area | bad input | gets | message contains (regex) |",
        "|---|---|---|---|",
    ]
    for c in CASES:
        star = " *" if c.issue else ""
        pattern = c.match.replace("|", "\\|")
        out.append(f"| {c.area} | {c.input}{star} | {_outcome(c)} | `{pattern}` |")
    out += ["", f"{len(CASES)} cases, {sum(c.issue for c in CASES)} of them from issue 13.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
