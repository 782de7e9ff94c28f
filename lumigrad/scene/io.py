"""Reading and writing meshes and images (cameras: :mod:`lumigrad.scene.transforms_json`).

OBJ is parsed here (so vertex order, UV indices and normals are kept exactly as
in the file); PLY and GLB/GLTF go through trimesh with ``process=False``. Every
write is atomic. Errors name the file: missing files raise ``FileNotFoundError``,
unreadable or inconsistent ones ``ValueError``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lumigrad._runtime.files import atomic_path, existing_file as _existing, write_text_atomic
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.transforms_json import CameraSet, read_transforms_json

__all__ = ["read_mesh", "write_mesh", "read_image", "write_image", "write_exr", "read_transforms_json", "CameraSet"]

log = logging.getLogger(__name__)

_MESH_EXTS = (".obj", ".ply", ".glb", ".gltf")


# -- images ----------------------------------------------------------------------


def read_image(path, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Read an image as ``[H, W, C]`` floats in [0, 1] (uint8 / 255, uint16 / 65535).

    Row 0 is the top of the image. Grayscale gives ``C = 1``; alpha is kept
    (``C = 4``). Values are returned as stored (no sRGB decoding).
    """
    import imageio.v3 as iio

    p = _existing("read_image", path)
    if p.suffix.lower() == ".exr":
        arr = _read_exr(p)
    else:
        try:
            arr = np.asarray(iio.imread(p))
        except Exception as e:  # imageio raises many types for bad data
            raise ValueError(f"read_image(): cannot read {p} as an image: {e}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.size == 0:
        raise ValueError(f"read_image(): {p} is not a single 2D image (array shape {arr.shape})")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float64) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float64) / 65535.0
    elif arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float64)
    else:
        raise ValueError(f"read_image(): unsupported pixel type {arr.dtype} in {p}")
    return torch.from_numpy(out).to(dtype)


_EXR_LAYOUTS = {1: "Y", 3: "RGB", 4: "RGBA"}  # channel count -> OpenEXR's grouped channel name


def _read_exr(p: Path) -> np.ndarray:
    """``[H, W, C]`` float pixels of an OpenEXR file (Y, RGB or RGBA; half or float).

    OpenEXR's own bindings: imageio has no EXR reader without an extra plugin (it would
    fall back to a TIFF reader and fail).
    """
    import OpenEXR

    try:
        with OpenEXR.File(str(p)) as f:
            ch = {k: np.asarray(v.pixels) for k, v in f.channels().items()}
    except Exception as e:  # OpenEXR raises RuntimeError / ValueError for bad files
        raise ValueError(f"read_image(): cannot read {p} as an OpenEXR image: {e}") from None
    for key in ("RGBA", "RGB", "Y"):
        if key in ch:
            return ch[key]
    if len(ch) == 1:
        return next(iter(ch.values()))
    raise ValueError(f"read_image(): {p} has OpenEXR channels {sorted(ch)}; expected Y, RGB or RGBA")


def write_exr(path, img: Tensor) -> None:
    """Write ``[H, W, C]`` floats (C = 1, 3 or 4: Y, RGB, RGBA) as a float32 OpenEXR file, atomically.

    Values are stored as they are (linear, unclamped), so :func:`read_image` returns them
    rounded to float32.
    """
    import OpenEXR

    if not isinstance(img, Tensor):
        raise TypeError(f"write_exr(): img must be a torch.Tensor [H, W, C], got {type(img).__name__}")
    if img.ndim != 3 or img.shape[-1] not in _EXR_LAYOUTS or min(img.shape) == 0 or not img.is_floating_point():
        raise ValueError(f"write_exr(): img must be a float [H, W, C] tensor with C in (1, 3, 4), got "
                         f"{img.dtype} {list(img.shape)}")
    arr = np.ascontiguousarray(img.detach().cpu().to(torch.float32).numpy())
    c = arr.shape[-1]
    pixels = arr[..., 0] if c == 1 else arr
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path) as tmp:
        OpenEXR.File(header, {_EXR_LAYOUTS[c]: pixels}).write(str(tmp))


def _to_uint8(fn: str, img, name: str = "img") -> np.ndarray:
    if not isinstance(img, Tensor):
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor [H, W, C], got {type(img).__name__}")
    t = img.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2:
        t = t[:, :, None]
    if t.ndim != 3 or t.shape[-1] not in (1, 2, 3, 4) or min(t.shape) == 0:
        raise ValueError(f"{fn}(): {name} must be [H, W, C] or [1, H, W, C] with C in 1..4, got {list(img.shape)}")
    if t.dtype == torch.uint8:
        return t.cpu().numpy()
    if not t.is_floating_point():
        raise ValueError(f"{fn}(): {name} must be float (in [0, 1]) or uint8, got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{fn}(): {name} contains NaN or inf values")
    return (t.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def write_image(path, img: Tensor) -> None:
    """Write ``[H, W, C]`` or ``[1, H, W, C]`` (C in 1..4) atomically; the format follows the suffix.

    Float values are clamped to [0, 1] and rounded to uint8; uint8 is written as is.
    """
    import imageio.v3 as iio

    arr = _to_uint8("write_image", img)
    if arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, arr)


# -- OBJ -------------------------------------------------------------------------


_MAX_INDEX = 2**31 - 1


def _obj_index(tok: str, n: int, what: str) -> int:
    """0-based index of one OBJ face index token; ``n`` = elements read so far (for negative ones)."""
    try:
        i = int(tok)
    except ValueError:
        raise ValueError(f"{what} index {tok!r} is not an integer") from None
    if i == 0:
        raise ValueError(f"{what} index 0 (OBJ indices start at 1)")
    if abs(i) > _MAX_INDEX:
        raise ValueError(f"{what} index {i} is out of range")
    j = i - 1 if i > 0 else n + i  # negative = relative to the end so far
    if j < 0:
        raise ValueError(f"relative {what} index {i} points before the first {what} ({n} read so far)")
    return j


def _obj_key(line: str) -> tuple[str, str]:
    """``(keyword, rest)`` of one OBJ line (``("", "")`` for blank and comment lines)."""
    s = line.strip().replace("\t", " ")
    if not s or s[0] == "#":
        return "", ""
    key, _, rest = s.partition(" ")
    return key, rest


def _line_number(text: str, key: str, index: int) -> int:
    """1-based line number of the ``index``-th ``key`` line (used only to report errors)."""
    count = -1
    for number, line in enumerate(text.splitlines(), 1):
        if _obj_key(line)[0] == key:
            count += 1
            if count == index:
                return number
    return 0


def _first_bad_row(bodies: list[str]) -> tuple[int, str]:
    """Index of the first row whose numbers do not parse, or whose count differs from row 0's, and why."""
    width = None
    for n, body in enumerate(bodies):
        toks = body.split("#")[0].split()
        try:
            [float(t) for t in toks]
        except ValueError as e:
            return n, str(e)
        if width is None:
            width = len(toks)
        elif len(toks) != width:
            return n, f"{len(toks)} numbers where the first line has {width}"
    return 0, "malformed"


def _floats(p: Path, text: str, key: str, bodies: list[str], need: int) -> np.ndarray:
    """Parse the numbers after ``key`` on each line into ``[N, ncols]`` (one column count for all)."""
    if not bodies:
        return np.zeros((0, need))
    try:
        arr = np.loadtxt(bodies, dtype=np.float64, ndmin=2, comments="#")
    except ValueError:
        row, why = _first_bad_row(bodies)
        line = _line_number(text, key, row)
        raise ValueError(
            f"read_mesh(): {p}:{line}: malformed '{key}' line '{key} {bodies[row].strip()[:60]}' ({why})"
        ) from None
    if arr.shape[1] < need:
        raise ValueError(f"read_mesh(): {p} has '{key}' lines with {arr.shape[1]} numbers, need {need}")
    return arr


def _uniform_corners(joined: str, slashes: int, double: bool) -> bool:
    """Every line of ``joined`` is exactly 3 tokens, each with ``slashes`` '/' (and one '//' iff ``double``).

    Vectorised over the bytes (a regex takes ~10x longer on big files). Equal slash
    totals alone would accept ``f 1/1/1 2/2 3`` as v/vt and read the wrong faces.
    """
    b = np.frombuffer(joined.encode("ascii", errors="replace"), dtype=np.uint8)
    nl = b == 10
    sep = (b == 32) | (b == 9) | (b == 13) | nl
    starts = np.flatnonzero(~sep & np.concatenate([[True], sep[:-1]]))  # first byte of each token
    n_tok = len(starts)
    nl_pos = np.flatnonzero(nl)
    if n_tok != 3 * (len(nl_pos) + 1):
        return False
    if not (np.bincount(np.searchsorted(nl_pos, starts), minlength=n_tok // 3) == 3).all():
        return False  # a line with other than 3 corners
    sl = b == 47
    sl_pos = np.flatnonzero(sl)
    if not (np.bincount(np.searchsorted(starts, sl_pos, side="right") - 1, minlength=n_tok) == slashes).all():
        return False
    dbl = np.flatnonzero(sl[:-1] & sl[1:])
    return bool((np.bincount(np.searchsorted(starts, dbl, side="right") - 1, minlength=n_tok) == int(double)).all())


def _faces_fast(bodies: list[str]) -> np.ndarray | None:
    """``[F, 3, k]`` 0-based corner indices when every face is a triangle with one
    ``v[/vt][/vn]`` pattern and positive indices (the common case); else None."""
    joined = "\n".join(bodies)
    slashes, doubles = bodies[0].count("/"), bodies[0].count("//")
    # Cheap totals first; _uniform_corners then checks every corner has the first face's form.
    if "-" in joined or joined.count("/") != slashes * len(bodies) or joined.count("//") != doubles * len(bodies):
        return None
    if slashes not in (0, 3, 6) or doubles not in (0, 3) or (doubles and slashes != 6):
        return None
    if "#" in joined or not _uniform_corners(joined, slashes // 3, doubles > 0):
        return None
    k = 1 + (slashes - doubles) // 3
    try:
        nums = np.loadtxt(joined.replace("/", " ").splitlines(), dtype=np.int64, ndmin=2, comments="#")
    except ValueError:
        return None
    if nums.shape[1] != 3 * k or nums.min() < 1 or nums.max() > _MAX_INDEX:
        return None  # index 0 (of v, vt or vn) and huge ones get their error from the slow path
    out = np.full((len(bodies), 3, 3), -1, dtype=np.int64)
    slots = [0] if k == 1 else ([0, 2] if doubles else [0, 1, 2][:k])
    out[:, :, slots] = nums.reshape(-1, 3, k) - 1
    return out


_WHAT = ("vertex", "texture-coordinate", "normal")


def _faces_slow(p: Path, text: str, bodies: list[str], rel_counts: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """Any polygon and index form; returns ``[F, 3, 3]`` with -1 for a missing vt/vn."""
    out = []
    for n, body in enumerate(bodies):
        try:
            cs = [a.split("/") for a in body.split("#")[0].split()]
            if len(cs) < 3:
                raise ValueError("a face needs at least 3 vertices")
            if any(len(c) > 3 or not c[0] for c in cs):
                raise ValueError("a corner must be v, v/vt, v//vn or v/vt/vn")
            counts = rel_counts.get(n, (0, 0, 0))
            idx = [[_obj_index(c[j], counts[j], _WHAT[j]) if len(c) > j and c[j] else -1 for j in range(3)] for c in cs]
        except ValueError as e:
            where = f"read_mesh(): {p}:{_line_number(text, 'f', n)}: face 'f {body.strip()[:60]}'"
            raise ValueError(f"{where}: {e}") from None
        out += [(idx[0], idx[i], idx[i + 1]) for i in range(1, len(idx) - 1)]  # fan triangulation
    return np.array(out, dtype=np.int64).reshape(-1, 3, 3)


def _parse_obj(p: Path) -> dict:
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"read_mesh(): {p} is not a text OBJ file (not UTF-8)") from None
    groups: dict[str, list[str]] = {"v": [], "vt": [], "vn": [], "f": []}
    mtllibs, used = [], []
    rel_counts: dict[int, tuple[int, int, int]] = {}
    for line in text.splitlines():
        c = line[:3]  # prefix tests are several times faster than split() on big files
        if c[1:2] == " " and c[0] in "vf":
            key, rest = c[0], line[2:]
        elif c in ("vt ", "vn "):
            key, rest = c[:2], line[3:]
        elif c[:1] == "#" or not line.strip():
            continue
        else:
            key, _, rest = line.strip().replace("\t", " ").partition(" ")
        if key in groups:
            groups[key].append(rest)
            if key == "f" and "-" in rest:  # relative indices count back from what was read so far
                rel_counts[len(groups["f"]) - 1] = (len(groups["v"]), len(groups["vt"]), len(groups["vn"]))
        elif key == "mtllib" and rest.strip():
            mtllibs.append(rest.strip())
        elif key == "usemtl" and rest.strip():
            used.append(rest.split()[0])
    if not groups["v"]:
        raise ValueError(f"read_mesh(): {p} has no vertices ('v' lines); is it an OBJ file?")
    if not groups["f"]:
        raise ValueError(f"read_mesh(): {p} has no faces ('f' lines); point clouds are not meshes")
    v = _floats(p, text, "v", groups["v"], 3)
    v = v[:, :6] if v.shape[1] == 6 else v[:, :3]  # "v x y z r g b" carries colours
    vt = _floats(p, text, "vt", groups["vt"], 1)
    vt = np.concatenate([vt, np.zeros_like(vt)], axis=1)[:, :2] if vt.shape[1] == 1 else vt[:, :2]
    vn = _floats(p, text, "vn", groups["vn"], 3)[:, :3]
    corners = _faces_fast(groups["f"])
    if corners is None:
        corners = _faces_slow(p, text, groups["f"], rel_counts)
    for j, (what, n) in enumerate((("vertex", len(v)), ("texture-coordinate", len(vt)), ("normal", len(vn)))):
        if corners[:, :, j].max() >= n or (j == 0 and corners[:, :, 0].min() < 0):
            raise ValueError(f"read_mesh(): {p} has a face {what} index out of range (valid 1..{n})")
    ft = corners[:, :, 1] if len(vt) and (corners[:, :, 1] >= 0).all() else None
    fn_ = corners[:, :, 2] if len(vn) and (corners[:, :, 2] >= 0).all() else None
    if len(vt) and ft is None:
        log.warning("read_mesh(): %s has faces without texture coordinates; UVs dropped", p)
    return dict(v=v, vt=vt, vn=vn, fv=corners[:, :, 0], ft=ft, fn=fn_, mtllibs=mtllibs, materials=used)


def _read_mtl_texture(obj_path: Path, mtllibs: list[str], used: list[str]) -> Path | None:
    """Path of the diffuse texture (``map_Kd``) of the first used material that has one."""
    maps: dict[str, str] = {}
    base: dict[str, Path] = {}
    for lib in mtllibs:
        mp = obj_path.parent / lib
        if not mp.is_file():
            log.warning("read_mesh(): %s references missing material file %s", obj_path, mp)
            continue
        current = None
        for line in mp.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "newmtl":
                current = parts[1]
            elif len(parts) >= 2 and parts[0] == "map_Kd" and current is not None:
                maps[current] = parts[-1]  # options (-s, -o, ...) come before the file name
                base[current] = mp.parent
    names = [m for m in used if m in maps] or list(maps)
    if not names:
        return None
    if len({maps[m] for m in names}) > 1:
        log.warning("read_mesh(): %s uses several textures; only %s is loaded", obj_path, maps[names[0]])
    tex = base[names[0]] / maps[names[0]]
    if not tex.is_file():
        log.warning("read_mesh(): texture %s of %s is missing; loading without it", tex, obj_path)
        return None
    return tex


def _normals_per_position(p: Path, v: np.ndarray, vn: np.ndarray, fv: np.ndarray, fn_: np.ndarray) -> np.ndarray:
    # OBJ normals have their own indices; average the ones used at each position
    # (exact when the file has one normal per position, as smooth meshes do).
    used = vn[fn_.reshape(-1)]
    if not np.isfinite(used).all():
        bad = int((~np.isfinite(vn[np.unique(fn_)])).any(axis=1).sum())
        raise ValueError(f"read_mesh(): {p} has {bad} 'vn' normals with NaN or inf components")
    acc = np.zeros((len(v), 3))
    np.add.at(acc, fv.reshape(-1), used)
    length = np.linalg.norm(acc, axis=1, keepdims=True)
    zero = (length[:, 0] <= 1e-12) & np.isin(np.arange(len(v)), fv)
    if zero.any():
        # Zero-length (or cancelling) normals: use the area-weighted face normals there instead.
        from lumigrad.geometry.normals import vertex_normals

        geo = vertex_normals(torch.from_numpy(v[:, :3].astype(np.float64)), torch.from_numpy(fv)).numpy()
        log.warning("read_mesh(): %s has %d zero-length vertex normals; replaced by face-averaged normals", p,
                    int(zero.sum()))
        acc[zero], length[zero] = geo[zero], 1.0
    return np.where(length > 0, acc / np.maximum(length, 1e-300), 0.0)


def _read_obj(p: Path, dtype, device) -> Mesh:
    d = _parse_obj(p)
    v, fv = d["v"], d["fv"]
    kw = {}
    if v.shape[1] == 6:
        kw["vert_colors"] = v[:, 3:]
    if d["ft"] is not None:
        kw["uvs"], kw["faces_uvs"] = d["vt"], d["ft"]
        tex = _read_mtl_texture(p, d["mtllibs"], d["materials"])
        if tex is not None:
            kw["texture"] = read_image(tex, dtype=torch.float64).numpy()
    if d["fn"] is not None:
        kw["vert_normals"] = _normals_per_position(p, v, d["vn"], fv, d["fn"])
    return _make_mesh(p, v[:, :3], fv, dtype, device, **kw)


def _make_mesh(p: Path, verts, faces, dtype, device, **extra) -> Mesh:
    def t(a, dt):
        return None if a is None else torch.as_tensor(np.ascontiguousarray(a), device=device).to(dt)

    try:
        return Mesh(
            t(verts, dtype), t(faces, torch.int32),
            **{k: t(a, torch.int32 if k == "faces_uvs" else dtype) for k, a in extra.items()},
        )
    except ValueError as e:
        raise ValueError(f"read_mesh(): {p} gives an invalid mesh: {e}") from None


def _obj_text(mesh: Mesh, mtl_name: str | None) -> str:
    fmt = "%.9g" if mesh.dtype == torch.float32 else "%.17g"
    out = ["# written by lumigrad"]
    if mtl_name:
        out += [f"mtllib {mtl_name}", "usemtl material_0"]
    v = mesh.verts.detach().cpu().double().numpy()
    if mesh.vert_colors is not None and mesh.vert_colors.shape[1] >= 3:
        v = np.concatenate([v, mesh.vert_colors.detach().cpu().double().numpy()[:, :3]], axis=1)
    elif mesh.vert_colors is not None:
        log.warning("write_mesh(): OBJ stores RGB vertex colours only; dropping %d-channel colours", mesh.vert_colors.shape[1])
    row = " ".join([fmt] * v.shape[1])
    out += [("v " + row) % tuple(r) for r in v]
    f = mesh.faces.cpu().numpy() + 1
    cols = [f]
    if mesh.uvs is not None:
        out += [("vt " + fmt + " " + fmt) % tuple(r) for r in mesh.uvs.detach().cpu().double().numpy()]
        cols.append(mesh.faces_uvs.cpu().numpy() + 1)
    if mesh.vert_normals is not None:
        out += [("vn " + " ".join([fmt] * 3)) % tuple(r) for r in mesh.vert_normals.detach().cpu().double().numpy()]
        if mesh.uvs is None:
            cols.append(np.full_like(f, -1))  # placeholder for the empty vt slot
        cols.append(f)
    if len(cols) == 1:
        out += ["f %d %d %d" % tuple(r) for r in f]
    else:
        corners = np.stack(cols, axis=-1)  # [F, 3, k]
        for tri in corners:
            out.append("f " + " ".join("/".join("" if i < 0 else str(i) for i in c) for c in tri))
    return "\n".join(out) + "\n"


def _write_obj(p: Path, mesh: Mesh) -> None:
    mtl_name = None
    if mesh.texture is not None:
        tex_name, mtl_name = f"{p.stem}_texture.png", f"{p.stem}.mtl"
        write_image(p.parent / tex_name, mesh.texture)
        write_text_atomic(p.parent / mtl_name, f"newmtl material_0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {tex_name}\n")
    write_text_atomic(p, _obj_text(mesh, mtl_name))


# -- PLY / GLB via trimesh -----------------------------------------------------------


def _weld(verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge identical positions, keeping first-occurrence order: (unique [U, 3], remap [V])."""
    _, first, inverse = np.unique(verts, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return verts[first[order]], rank[inverse.reshape(-1)]


_PLY_SIZES = {
    "char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
    "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}


def _check_ply_header(p: Path) -> None:
    """Reject a PLY whose header is malformed or declares more elements than the file can hold.

    Runs before trimesh, which would otherwise try to allocate whatever the
    header claims (``element vertex 4000000000``) or fail with an OverflowError.
    """
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise ValueError(f"read_mesh(): {p}: not a PLY file, or no 'end_header' in its first 64 KiB")
    nl = head.find(b"\n", end)
    body = p.stat().st_size - (nl + 1 if nl >= 0 else len(head))
    lines = head[:end].decode("ascii", errors="replace").splitlines()
    binary = any(ln.split()[:2] in (["format", "binary_little_endian"], ["format", "binary_big_endian"]) for ln in lines)
    elements: list[list] = []  # [name, count, min bytes per element]
    for ln in lines:
        tok = ln.split()
        if tok[:1] == ["element"]:
            if len(tok) != 3 or not tok[2].isdigit():
                raise ValueError(f"read_mesh(): {p}: header line {ln.strip()!r}: element count "
                                 f"{tok[2] if len(tok) > 2 else ''!r} is not a non-negative integer")
            elements.append([tok[1], int(tok[2]), 0])
        elif tok[:1] == ["property"] and elements:
            # A list costs at least its count field; a scalar its size (ASCII: a digit and a separator).
            size = _PLY_SIZES.get(tok[2] if tok[1:2] == ["list"] and len(tok) > 2 else tok[1] if len(tok) > 1 else "", 1)
            elements[-1][2] += size if binary else 2
    for name, count, per in elements:
        need = count * max(per, 1 if binary else 2)
        if need > max(body, 0) + 1:
            raise ValueError(f"read_mesh(): {p}: header declares {count} {name} elements (at least {need} bytes) "
                             f"but the file has {max(body, 0)} bytes of data")


def _read_trimesh(p: Path, dtype, device) -> Mesh:
    import trimesh

    if p.suffix.lower() == ".ply":
        _check_ply_header(p)

    try:
        tm = trimesh.load_mesh(p, process=False)
    except Exception as e:  # trimesh raises many types for bad data
        raise ValueError(f"read_mesh(): cannot read {p}: {type(e).__name__}: {e}") from None
    if not isinstance(tm, trimesh.Trimesh) or len(tm.vertices) == 0 or len(tm.faces) == 0:
        raise ValueError(f"read_mesh(): {p} contains no triangle mesh")
    verts = np.asarray(tm.vertices, dtype=np.float64)
    faces = np.asarray(tm.faces, dtype=np.int64)
    kw = {}
    visual = tm.visual
    if visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float64) / 255.0
        kw["vert_colors"] = colors[:, :3] if np.all(colors[:, 3] == 1.0) else colors
    uv = getattr(visual, "uv", None) if visual.kind == "texture" else None
    if uv is not None and len(uv) == len(verts):
        # glTF splits vertices at UV seams; weld positions back, UVs keep their own indices.
        kw["uvs"], kw["faces_uvs"] = np.asarray(uv, dtype=np.float64), faces
        verts, remap = _weld(verts)
        faces = remap[faces]
        image = _material_image(visual.material)
        if image is not None:
            kw["texture"] = image
    return _make_mesh(p, verts, faces, dtype, device, **kw)


def _material_image(material) -> np.ndarray | None:
    img = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if img is None:
        return None
    arr = np.asarray(img)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return arr.astype(np.float64) / (65535.0 if arr.dtype == np.uint16 else 255.0)


def _write_trimesh(p: Path, mesh: Mesh) -> None:
    import trimesh
    from PIL import Image

    verts = mesh.verts.detach().cpu().double().numpy()
    faces = mesh.faces.cpu().numpy().astype(np.int64)
    ext = p.suffix.lower()
    visual = None
    if ext == ".glb" and mesh.uvs is not None:
        # glTF has one index buffer: split vertices into unique (position, uv) corners.
        pairs = np.stack([faces.reshape(-1), mesh.faces_uvs.cpu().numpy().reshape(-1)], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        verts, faces = verts[uniq[:, 0]], inv.reshape(-1, 3)
        uv = mesh.uvs.detach().cpu().double().numpy()[uniq[:, 1]]
        image = None
        if mesh.texture is not None:
            arr = _to_uint8("write_mesh", mesh.texture, "mesh.texture")
            image = Image.fromarray(arr[:, :, 0] if arr.shape[-1] == 1 else arr)
        visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
        if mesh.vert_colors is not None:
            log.warning("write_mesh(): GLB with UVs keeps the texture; vertex colours are dropped")
    elif mesh.vert_colors is not None:
        c = mesh.vert_colors.detach().clamp(0, 1).cpu().double().numpy()
        if c.shape[1] not in (3, 4):
            log.warning("write_mesh(): only RGB/RGBA vertex colours are stored; dropping %d channels", c.shape[1])
        else:
            visual = trimesh.visual.ColorVisuals(vertex_colors=np.round(c * 255).astype(np.uint8))
    if ext == ".ply" and mesh.uvs is not None:
        log.warning("write_mesh(): PLY does not store per-corner UVs or textures; dropping them (use OBJ or GLB)")
    tm = trimesh.Trimesh(verts, faces, visual=visual, process=False)
    with atomic_path(p) as tmp:
        tm.export(tmp, file_type=ext[1:])


# -- public mesh IO --------------------------------------------------------------------


def read_mesh(path, *, dtype: torch.dtype = torch.float32, device=None) -> Mesh:
    """Read an OBJ, PLY, GLB or GLTF triangle mesh.

    OBJ: positions in file order, optional ``v x y z r g b`` colours, UVs with
    their own face indices (``faces_uvs``), normals (averaged per position when
    the file indexes them separately), and the ``map_Kd`` texture of the MTL.
    Polygons are fan-triangulated. PLY: positions, faces, vertex colours.
    GLB/GLTF: the scene flattened to one mesh; when it has UVs, positions split
    at seams are welded back (identical positions merged, first-occurrence
    order) and the base-colour texture is loaded. Colours and textures are
    returned in [0, 1] as stored (no sRGB decoding).

    Args:
        path: file path; the format follows the suffix.
        dtype: float dtype of all float fields.
        device: device of the returned mesh.

    Returns:
        :class:`Mesh`.
    """
    p = _existing("read_mesh", path)
    ext = p.suffix.lower()
    if ext not in _MESH_EXTS:
        raise ValueError(f"read_mesh(): unsupported format {ext!r} for {p}; expected one of {_MESH_EXTS}")
    return _read_obj(p, dtype, device) if ext == ".obj" else _read_trimesh(p, dtype, device)


def write_mesh(path, mesh: Mesh) -> None:
    """Write a mesh atomically as OBJ, PLY or GLB (chosen by the suffix).

    OBJ writes UVs with their own indices, normals, RGB vertex colours and, when
    the mesh has a texture, ``<stem>.mtl`` and ``<stem>_texture.png`` beside it.
    PLY writes positions, faces and RGB(A) vertex colours. GLB writes UVs (splitting
    vertices at seams) and the texture, or vertex colours. Textures and colours
    are quantised to 8 bits.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"write_mesh(): mesh must be a Mesh, got {type(mesh).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"write_mesh(): path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".obj", ".ply", ".glb"):
        raise ValueError(f"write_mesh(): unsupported format {ext!r} for {p}; expected .obj, .ply or .glb")
    _write_obj(p, mesh) if ext == ".obj" else _write_trimesh(p, mesh)


# -- transforms.json ---------------------------------------------------------------------
