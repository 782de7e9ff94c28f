"""Triangle rasterization with perspective-correct barycentrics (Warp kernels, CPU and CUDA).

The spec is :mod:`lumigrad.ops._rasterize_ref`; the design and the shared Warp
functions are in :mod:`lumigrad.ops._rasterize_funcs`, the forward kernels in
:mod:`lumigrad.ops._rasterize_kernels`, the backward in
:mod:`lumigrad.ops._rasterize_grad_kernels`. On CPU the image is split into bands
of rows that run in parallel on the thread pool with no atomics (``bands``); on
CUDA one thread per triangle uses atomics (``atomic``). Both give bitwise equal
results. :func:`_rasterize_ids` (private, for the tracer's camera samples) runs the
same CPU band pass but writes only the triangle ids. Memory: besides the outputs, a
``[B*F, 12]`` per-triangle record and, on CPU, per-vertex pixel bounds, band lists
(capacity rounded up to a power of two) and one band of depth / id scratch per
thread task; the backward needs one
``[B*V, 4]`` buffer per CPU task (CUDA: ``[3 * 2**20, 4]`` per-corner chunks).
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import torch
import warp as wp
from lumigrad._runtime.checks import (
    check_faces,
    check_finite,
    check_float_tensor,
    check_resolution,
    check_same_device,
)
from lumigrad._runtime.launch import empty
from lumigrad.ops._common import (
    first_order,
    launch,
    launch_chunks,
    num_threads,
    placeholder,
    reduce_rows,
    reduce_tasks,
    to_warp,
    warp_device,
    zeros_if_none,
)
from lumigrad.ops import _rasterize_grad_kernels as _kg
from lumigrad.ops import _rasterize_kernels as _k

__all__ = ["Rasterized", "RasterizeWorkspace", "rasterize"]

_log = logging.getLogger(__name__)

# Rows per band on CPU: small enough that a band's outputs stay in cache and the
# bands balance over threads, large enough that few triangles straddle two bands.
_BAND_SHIFT = 4
_BAND_ROWS = 1 << _BAND_SHIFT
# Band tasks per thread; interleaved so each task gets a spread of image rows.
_TASKS_PER_THREAD = 2
# Pixels per backward chunk: bounds the [3 * n, 4] per-corner gradient buffer.
_GRAD_CHUNK = 1 << 20
# Triangles per pixel from which the CPU setup drops the triangles whose one-pixel box misses its
# centre (setup_count_cull_kernel): 1.3M at 256^2 (20 a pixel) -11 %; at 1024^2 (1.25) it cost 2 %.
_CULL_DENSITY = 8
# Relative rounding bound of the edge-function test per dtype, for the row spans.
_SPAN_TOL = {torch.float32: 1e-6, torch.float64: 1e-14}


class Rasterized(NamedTuple):
    """Output of :func:`rasterize`."""

    rast: torch.Tensor  # [B, H, W, 4] (u, v, z_ndc, tri_id + 1); zeros where empty
    rast_db: torch.Tensor  # [B, H, W, 4] (du/dX, du/dY, dv/dX, dv/dY) in pixels, or [B, H, W, 0]


class RasterizeWorkspace:
    """Buffers and validation results that :func:`rasterize` reuses across calls.

    Hold one per render loop and pass it as ``workspace=``: outputs and scratch
    are allocated once and reused (a fresh multi-megabyte buffer costs page
    faults on every call), and ``tri`` is validated once while the same,
    unmodified tensor is passed again (no per-call scan of the faces).

    The returned ``rast`` and ``rast_db`` alias the workspace: the next call
    with it overwrites them. A backward through an overwritten output raises
    torch's "modified by an inplace operation" error; it never returns a wrong
    gradient. Use one workspace per thread. Memory: the outputs plus about
    ``B*F*90 + B*V*24`` bytes (float32, CPU) of per-triangle records, band
    lists (up to twice that for the lists, whose capacity is a power of two)
    and per-vertex bounds, kept until the workspace is dropped.

    Example:
        >>> ws = RasterizeWorkspace()
        >>> pos = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
        >>> tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
        >>> for _ in range(2):
        ...     rast, rast_db = rasterize(pos, tri, (8, 8), workspace=ws)
        >>> int(rast[0, 4, 4, 3])
        1
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self._tri: torch.Tensor | None = None  # the validated tensor itself, so its id stays unique
        self._tri_state: tuple | None = None
        self._tri32: torch.Tensor | None = None
        self._tri32_w = None  # to_warp(self._tri32)
        # name -> (key, base buffer, view, KernelArray): a call with the same shapes reuses the
        # views and Warp descriptors (each costs a few microseconds to build; a call needs ~20).
        self._views: dict[str, tuple] = {}
        self._centres: tuple | None = None  # ((H, W, dtype, device), xs, ys, xs_w, ys_w)

    def _faces(self, fn: str, tri: torch.Tensor, num_verts: int) -> torch.Tensor:
        state = (tri._version, tri.data_ptr(), tuple(tri.shape), tri.dtype, tri.device, num_verts)
        if tri is not self._tri or state != self._tri_state:
            self._tri32 = check_faces(fn, tri, num_verts)
            self._tri, self._tri_state = tri, state
            self._tri32_w = None
        return self._tri32

    def _faces_warp(self, tri32: torch.Tensor):
        if self._tri32_w is None or self._tri32_w.tensor is not tri32:
            self._tri32_w = to_warp(tri32)
        return self._tri32_w

    def _view(self, name: str, shape: tuple, dtype: torch.dtype, device, wdtype=None):
        """``(tensor, KernelArray)`` of buffer ``name`` (see :meth:`_buffer`), reused while the buffer and shape are."""
        key = (shape, dtype, device)
        hit = self._views.get((name, wdtype))
        if hit is not None and hit[0] == key and hit[1] is self._buffers.get(name):
            torch.autograd.graph.increment_version(hit[1])
            return hit[2], hit[3]
        t = self._buffer(name, shape, dtype, device)
        arr = to_warp(t, wdtype)
        self._views[(name, wdtype)] = (key, self._buffers[name], t, arr)
        return t, arr

    def _pixel_centres(self, height: int, width: int, dtype, device):
        key = (height, width, dtype, device)
        if self._centres is None or self._centres[0] != key:
            xs, ys = _pixel_centres(height, width, dtype, device)
            self._centres = (key, xs, ys, to_warp(xs), to_warp(ys))
        return self._centres[1:]

    def _buffer(self, name: str, shape: tuple, dtype: torch.dtype, device) -> torch.Tensor:
        numel = 1
        for n in shape:
            numel *= int(n)
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.device != torch.device(device) or buf.numel() < numel:
            buf = empty((max(numel, 1),), dtype, device)
            self._buffers[name] = buf
        else:
            # Outputs saved for a backward by an earlier call are overwritten now: make autograd notice.
            torch.autograd.graph.increment_version(buf)
        return buf[:numel].view(shape)


def _alloc(ws: RasterizeWorkspace, name: str, shape: tuple, dtype: torch.dtype, device, wdtype=None):
    """An uninitialised buffer from the workspace and its Warp view: ``(tensor, KernelArray)``."""
    return ws._view(name, shape, dtype, device, wdtype)


def _capacity(n: int) -> int:
    """``n`` rounded up to a power of two (at least 1): lists sized by it keep their buffers and views
    while the count changes a little between calls (moving geometry)."""
    return 1 << max(0, int(n) - 1).bit_length()


def rasterize(
    pos: torch.Tensor,  # [B, V, 4] or [V, 4] clip space
    tri: torch.Tensor,  # [F, 3] int
    resolution,  # (H, W)
    *,
    grad_db: bool = True,
    workspace: RasterizeWorkspace | None = None,
) -> Rasterized:
    """Rasterize triangles into per-pixel barycentrics, depth and triangle ids.

    A pixel (row i, col j; row 0 at the top) is sampled at its centre
    ``x_ndc = 2 (j + 0.5) / W - 1``, ``y_ndc = 1 - 2 (i + 0.5) / H``. Coverage
    uses homogeneous edge functions with a top-left fill rule, so pixels on a
    shared edge belong to exactly one triangle and triangles crossing ``w = 0``
    need no clipping. Fragments with ``z_ndc`` outside ``[-1, 1]`` are dropped;
    the nearest ``z_ndc`` wins, ties go to the smaller triangle id. Back faces
    are not culled.

    Args:
        pos: ``[B, V, 4]`` or ``[V, 4]`` float32/float64 OpenGL clip-space
            positions (x, y, z, w), ``w > 0`` in front of the camera. Finite.
        tri: ``[F, 3]`` integer vertex indices (int32 preferred, other integer
            dtypes are converted), ``0 <= tri < V``.
        resolution: ``(H, W)`` positive ints.
        workspace: a :class:`RasterizeWorkspace` to reuse buffers and the
            validation of ``tri`` across calls (outputs then alias it).
        grad_db: compute ``rast_db`` and propagate its gradients to ``pos``, as
            nvdiffrast's ``grad_db``; when False ``rast_db`` is ``[B, H, W, 0]``
            (cheaper: use it when no mipmapped texture or ``out_da`` is needed).

    Returns:
        :class:`Rasterized` ``(rast, rast_db)``:
        ``rast [B, H, W, 4]`` = (u, v, z_ndc, tri_id + 1), perspective-correct
        barycentrics ``b0 = u, b1 = v, b2 = 1 - u - v`` of the triangle
        ``tri[tri_id]``; all zeros where no triangle covers the pixel.
        ``rast_db [B, H, W, 4]`` = (du/dX, du/dY, dv/dX, dv/dY) in pixel units
        (X right, Y down), zeros where empty. Same dtype and device as ``pos``.

    Gradients: u, v and z_ndc of ``rast`` and all of ``rast_db`` are
    differentiable w.r.t. ``pos`` (all four clip coordinates; no
    visibility/edge gradients here, use ``antialias`` for those). The
    ``rast_db`` term is what carries a mipmapped texture's level change to the
    positions. ``tri_id`` is not differentiable.

    Example:
        >>> pos = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
        >>> tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
        >>> rast, rast_db = rasterize(pos, tri, (8, 8))
        >>> rast.shape, int(rast[0, 4, 4, 3])
        (torch.Size([1, 8, 8, 4]), 1)
    """
    fn = "rasterize"
    pos3, tri32, height, width = _check_inputs(fn, pos, tri, resolution, workspace)
    if not isinstance(grad_db, bool):
        raise TypeError(f"{fn}(): grad_db must be a bool, got {type(grad_db).__name__}")
    batch = pos3.shape[0]
    rast, rast_db = _RasterizeFn.apply(pos3.contiguous(), tri32, height, width, grad_db, workspace)
    if not grad_db:
        rast_db = rast.new_zeros(batch, height, width, 0)
    return Rasterized(rast, rast_db)


def _check_inputs(fn: str, pos, tri, resolution, workspace) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Validate :func:`rasterize`'s inputs; returns ``(pos [B, V, 4], tri int32, H, W)``."""
    check_float_tensor(fn, "pos", pos, (2, 3), last=4, expected="float32/float64 [B, V, 4] or [V, 4] clip positions")
    if not isinstance(tri, torch.Tensor):
        raise TypeError(f"{fn}(): tri must be an int32 torch.Tensor [F, 3], got {type(tri).__name__}")
    check_same_device(fn, pos=pos, tri=tri)
    if pos.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{fn}(): pos must be on a cpu or cuda device, got {pos.device}")
    pos3 = pos[None] if pos.ndim == 2 else pos
    if pos3.shape[0] == 0:
        raise ValueError(f"{fn}(): pos has batch size 0, got {list(pos.shape)}")
    if workspace is not None and not isinstance(workspace, RasterizeWorkspace):
        raise TypeError(f"{fn}(): workspace must be a RasterizeWorkspace or None, got {type(workspace).__name__}")
    tri32 = check_faces(fn, tri, pos3.shape[1]) if workspace is None else workspace._faces(fn, tri, pos3.shape[1])
    height, width = check_resolution(fn, resolution)
    check_finite(fn, "pos", pos)
    batch = pos3.shape[0]
    if batch * height * width >= 2**31 or batch * tri32.shape[0] >= 2**31:
        raise ValueError(f"{fn}(): B*H*W and B*F must be < 2**31, got B={batch}, H={height}, W={width}, F={tri32.shape[0]}")
    if pos.dtype == torch.float32 and tri32.shape[0] >= 2**24:
        raise ValueError(
            f"{fn}(): tri has {tri32.shape[0]} faces, more than float32 rast can index exactly (2**24); use float64 pos"
        )
    return pos3, tri32, height, width


def _rasterize_ids(
    pos: torch.Tensor,  # [B, V, 4] or [V, 4] clip space
    tri: torch.Tensor,  # [F, 3] int
    resolution,  # (H, W)
    *,
    workspace: RasterizeWorkspace | None = None,
    out: torch.Tensor | None = None,  # [B, H*W] int32
) -> torch.Tensor:
    """The triangle id of every pixel, ``rast[..., 3] - 1`` of :func:`rasterize` (-1: empty), as int32 ``[B, H*W]``.

    For callers that need only visibility (the tracer's camera samples): on CPU the band pass writes
    the ids and skips the barycentrics, so there is no ``rast`` to resolve, convert and copy.
    Bitwise equal to ``rasterize(pos, tri, resolution).rast[..., 3].int() - 1``; not differentiable.
    Written into ``out`` when given (an int32 ``[B, H*W]`` tensor on ``pos``'s device), which is returned.
    """
    fn = "rasterize_ids"
    pos3, tri32, height, width = _check_inputs(fn, pos, tri, resolution, workspace)
    batch = pos3.shape[0]
    if out is not None and (
        not isinstance(out, torch.Tensor) or out.dtype != torch.int32 or tuple(out.shape) != (batch, height * width)
        or out.device != pos.device
    ):
        got = f"{out.dtype} {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{fn}(): out must be an int32 [{batch}, {height * width}] tensor on {pos.device}, got {got}")
    with torch.no_grad():
        pos3 = pos3.detach().contiguous()
        if warp_device(pos3) != "cpu":
            rast, _ = _forward(pos3, tri32, height, width, False, ws=workspace)
            ids = rast[..., 3].to(torch.int32).view(batch, height * width) - 1
        else:
            ws = RasterizeWorkspace() if workspace is None else workspace
            direct = out is not None and out.is_contiguous()
            ids = out if direct else ws._view("ids", (batch, height * width), torch.int32, "cpu")[0]
            _forward(pos3, tri32, height, width, False, ws=ws, ids=ids)
        if out is None:
            return ids
        if ids is not out:
            out.copy_(ids)
        return out


def _pixel_centres(height: int, width: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    # Same arithmetic as _rasterize_ref.pixel_centers_ndc, so the samples are bitwise equal.
    xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) * (2.0 / width) - 1.0
    ys = 1.0 - (torch.arange(height, dtype=dtype, device=device) + 0.5) * (2.0 / height)
    return xs, ys


def _forward(
    pos: torch.Tensor, tri: torch.Tensor, height: int, width: int, grad_db: bool, mode: str | None = None,
    ws: RasterizeWorkspace | None = None, ids: torch.Tensor | None = None,
):
    """Kernel forward on detached ``pos [B, V, 4]``; ``mode`` is "bands" (CPU default) or "atomic".

    With ``ids`` (an int32 ``[B, H*W]`` CPU tensor, bands path only) the triangle ids are written
    there instead (see :func:`_rasterize_ids`) and ``rast`` is not."""
    batch, nv = pos.shape[0], pos.shape[1]
    nf = tri.shape[0]
    device = warp_device(pos)
    mode = mode or ("bands" if device == "cpu" else "atomic")
    if mode not in ("bands", "atomic"):
        raise ValueError(f"rasterize(): unknown mode {mode!r}")
    _log.debug("rasterize: %s path, B=%d V=%d F=%d, %dx%d", mode, batch, nv, nf, height, width)
    vec4 = wp.vec4d if pos.dtype == torch.float64 else wp.vec4f
    # Without a caller's workspace, a fresh one: fresh buffers, as the call's own.
    ws = RasterizeWorkspace() if ws is None else ws
    xs, ys, xs_w, ys_w = ws._pixel_centres(height, width, pos.dtype, pos.device)
    n_pix = batch * height * width
    rast, rast_w = _alloc(ws, "rast" if ids is None else "rast_unused", (n_pix if ids is None else 1, 4), pos.dtype,
                          pos.device, vec4)
    db, db_w = _alloc(ws, "db" if grad_db else "db_unused", (n_pix, 4) if grad_db else (1, 4), pos.dtype, pos.device, vec4)
    bbox, bbox_w = _alloc(ws, "bbox", (batch * nf, 4), torch.int32, pos.device)
    rec, rec_w = _alloc(ws, "rec", (batch * nf, _k.REC), pos.dtype, pos.device)
    setup_args = [to_warp(pos.view(batch * nv, 4)), ws._faces_warp(tri), nf, nv, height, width, bbox_w, rec_w]
    if mode == "bands":
        ids_w = to_warp(ids.view(-1)) if ids is not None else None
        _forward_bands(batch, height, width, nf, setup_args, xs_w, ys_w, rast_w, db_w, grad_db, pos.dtype, device, ws, ids_w)
        if ids is not None:
            return ids, None
    else:
        if ids is not None:
            raise ValueError("rasterize(): ids are written by the bands path only")
        launch(_k.setup_kernel, batch * nf, setup_args, device)
        rast[:, :2] = 0
        rast[:, 2] = _k._EMPTY_Z
        rast[:, 3] = float(nf + 1)
        common = [height, width, nf, xs_w, ys_w, rec_w, bbox_w, _alloc(ws, "rast", (n_pix, 4), pos.dtype, pos.device)[1]]
        # Each pass is one launch: on CPU it runs sequentially, so the atomics are exact there too.
        launch_chunks([(_k.depth_atomic_kernel, batch * nf, [0, *common, 0])], device)
        launch_chunks([(_k.depth_atomic_kernel, batch * nf, [0, *common, 1])], device)
        resolve_args = [height, width, nf, xs_w, ys_w, rec_w, rast_w, db_w, int(grad_db)]
        launch(_k.resolve_kernel, batch * height * width, resolve_args, device)
    rast = rast.view(batch, height, width, 4)
    db = db.view(batch, height, width, 4) if grad_db else db
    return rast, db


def _forward_bands(
    batch, height, width, nf, setup_args, xs_w, ys_w, rast_w, db_w, grad_db, dtype, device, ws, ids_w=None
):
    """CPU path: set up and bin triangles to row bands (CSR), then rasterize the bands in parallel.

    Three parallel phases (each a barrier, so few of them): setup + count per chunk
    of triangles, fill the per-band lists, rasterize the bands (writing ``rast`` / ``db``,
    or only the ids into ``ids_w`` when given). The buffers and their
    Warp views come from the workspace ``ws``, and the prefix sums run in numpy: at
    256^2 the per-call glue, not the kernels, was most of the time.
    """
    threads = num_threads()
    bands_per_img = (height + _BAND_ROWS - 1) // _BAND_ROWS
    n_bands = batch * bands_per_img
    n_tris = batch * nf
    n_chunks = max(1, min(threads, n_tris // 4096))
    bbox_w, rec_w = setup_args[-2], setup_args[-1]
    counts, counts_w = _alloc(ws, "counts", (n_bands, n_chunks), torch.int32, "cpu")
    counts_np = counts.numpy().reshape(-1)
    counts_np[:] = 0
    back_w = _alloc(ws, "back", (n_tris,), torch.int8, "cpu")[1]
    zlo_w = _alloc(ws, "zlo", (n_tris,), dtype, "cpu")[1]
    # Per-vertex pixel bounds first: each vertex is divided by its w once, not once per triangle.
    n_verts = setup_args[0].shape[0]
    vpx_w = _alloc(ws, "vpx", (n_verts, 4), torch.int32, "cpu")[1]
    vz_w = _alloc(ws, "vz", (n_verts,), torch.float64, "cpu")[1]
    v_chunks = max(1, min(threads, n_verts // 4096))
    launch_chunks(
        [(_k.vertex_px_kernel, 1, [c, v_chunks, setup_args[0], height, width, vpx_w, vz_w]) for c in range(v_chunks)],
        device,
    )
    head = [n_chunks, n_tris, _BAND_SHIFT, bands_per_img]
    setup = [_k.setup_count_kernel, *setup_args, vpx_w, vz_w, back_w, zlo_w, counts_w]
    if n_tris >= _CULL_DENSITY * batch * height * width:
        setup = [_k.setup_count_cull_kernel, *setup[1:], xs_w, ys_w]
    launch_chunks([(setup[0], 1, [c, *head, *setup[1:]]) for c in range(n_chunks)], device)
    # Band-major, chunk-minor prefix sum: each band's list is in ascending triangle order.
    csum = np.cumsum(counts_np, dtype=np.int64)
    total = int(csum[-1])
    cursor, cursor_w = _alloc(ws, "cursor", (n_bands, n_chunks), torch.int32, "cpu")
    cursor_np = cursor.numpy().reshape(-1)
    np.subtract(csum, counts_np, out=cursor_np, casting="unsafe")
    band_start, band_start_w = _alloc(ws, "band_start", (n_bands + 1,), torch.int32, "cpu")
    band_start_np = band_start.numpy()
    band_start_np[:-1] = cursor_np[::n_chunks]
    band_start_np[-1] = total
    cap = _capacity(total)  # the lists' kernels index only [0, total)
    tlist = _alloc(ws, "tlist", (cap,), torch.int32, "cpu")[1]
    tcull = _alloc(ws, "tcull", (cap, 2), torch.int32, "cpu")[1]
    tz = _alloc(ws, "tz", (cap,), dtype, "cpu")[1]
    fill_args = [n_chunks, n_tris, nf, _BAND_SHIFT, bands_per_img, bbox_w, back_w, zlo_w, cursor_w, tlist, tcull, tz]
    launch_chunks([(_k.bin_fill_kernel, 1, [c, *fill_args]) for c in range(n_chunks)], device)
    tasks = min(n_bands, threads * _TASKS_PER_THREAD)
    # Per-task depth / id scratch for one band: small enough to stay in cache.
    zbuf = _alloc(ws, "zbuf", (tasks, _BAND_ROWS * width), dtype, "cpu")[1]
    ibuf = _alloc(ws, "ibuf", (tasks, _BAND_ROWS * width), torch.int32, "cpu")[1]
    tmax = _alloc(ws, "tmax", (tasks, (width + _k._TILE - 1) // _k._TILE), dtype, "cpu")[1]
    args = [
        n_bands, _BAND_ROWS, bands_per_img, height, width, nf, xs_w, ys_w, rec_w, bbox_w,
        band_start_w, tlist, tcull, tz, zbuf, ibuf, tmax, rast_w, db_w, int(grad_db), _SPAN_TOL[dtype],
        ids_w if ids_w is not None else _alloc(ws, "ids_unused", (1,), torch.int32, "cpu")[1], int(ids_w is not None),
    ]  # fmt: skip
    launch_chunks(
        [(_k.raster_bands_kernel, (n_bands - w + tasks - 1) // tasks, [w, tasks, *args]) for w in range(tasks)], device
    )


def _backward(pos, tri, rast, grad_rast, grad_db=None, mode: str | None = None, ws=None) -> torch.Tensor:
    """d loss / d pos ``[B, V, 4]`` from d loss / d rast (channels u, v, z) and, when given,
    d loss / d rast_db ``[B, H, W, 4]``.

    ``mode`` "tasks" (CPU default): each thread task accumulates into its own
    ``[B*V, 4]`` buffer, summed in torch. "pixels" (CUDA default): per-pixel,
    per-corner gradients reduced with ``index_add_``, in chunks of pixels.
    """
    batch, nv = pos.shape[0], pos.shape[1]
    height, width = rast.shape[1], rast.shape[2]
    nf = tri.shape[0]
    device = warp_device(pos)
    mode = mode or ("tasks" if device == "cpu" else "pixels")
    vec4 = wp.vec4d if pos.dtype == torch.float64 else wp.vec4f
    n_pix = batch * height * width
    if ws is None:
        xs, ys = _pixel_centres(height, width, pos.dtype, pos.device)
        xs_w, ys_w = to_warp(xs), to_warp(ys)
    else:  # the forward's workspace keeps them (and their Warp views)
        _, _, xs_w, ys_w = ws._pixel_centres(height, width, pos.dtype, pos.device)
    common = [
        height, width, nf, nv, xs_w, ys_w, to_warp(pos.view(batch * nv, 4)), to_warp(tri),
        to_warp(rast.view(n_pix, 4), vec4), to_warp(grad_rast.contiguous().view(n_pix, 4), vec4),
        to_warp(grad_db.contiguous().view(n_pix, 4) if grad_db is not None else placeholder(rast, 1, 4), vec4),
        int(grad_db is not None),
    ]  # fmt: skip
    if mode == "tasks":
        rows = batch * height
        # One task per thread: rows interleave, so the tasks balance, and each task's
        # [B*V, 4] buffer (zeroed, then summed) costs the least.
        tasks = min(rows, num_threads())
        gbuf = torch.zeros(tasks, batch * nv, 4, dtype=pos.dtype, device=pos.device)
        gbuf_w = to_warp(gbuf.view(-1, 4), vec4)
        launch_chunks(
            [(_kg.grad_rows_kernel, (rows - w + tasks - 1) // tasks, [w, tasks, *common, gbuf_w])
             for w in range(tasks)],
            device,
        )  # fmt: skip
        return reduce_tasks(gbuf).view(batch, nv, 4)
    if mode != "pixels":
        raise ValueError(f"rasterize(): unknown backward mode {mode!r}")
    grad_pos = torch.zeros(batch * nv, 4, dtype=pos.dtype, device=pos.device)
    chunk = min(n_pix, _GRAD_CHUNK)
    gout = torch.empty(3 * chunk, 4, dtype=pos.dtype, device=pos.device)
    vidx = torch.empty(3 * chunk, dtype=torch.int64, device=pos.device)
    for start in range(0, n_pix, chunk):
        n = min(chunk, n_pix - start)
        launch(_kg.grad_pixels_kernel, n, [start, *common, to_warp(gout, vec4), to_warp(vidx)], device)
        reduce_rows(gout[: 3 * n], vidx[: 3 * n], batch * nv, out=grad_pos)
    return grad_pos.view(batch, nv, 4)


class _RasterizeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pos, tri, height, width, grad_db, ws):
        rast, db = _forward(pos.detach(), tri, height, width, grad_db, ws=ws)
        ctx.save_for_backward(pos, tri, rast)
        ctx.with_db = grad_db
        ctx.ws = ws
        # An unused rast_db then arrives as None, not zeros, and its backward terms are skipped.
        ctx.set_materialize_grads(False)
        if not grad_db:
            ctx.mark_non_differentiable(db)
        return rast, db

    @staticmethod
    @first_order
    def backward(ctx, grad_rast, grad_db):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        pos, tri, rast = ctx.saved_tensors
        grad_rast = zeros_if_none(grad_rast, rast)
        grad_db = grad_db if ctx.with_db else None
        return _backward(pos.detach(), tri, rast, grad_rast, grad_db, ws=ctx.ws), None, None, None, None, None
