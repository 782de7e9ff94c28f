"""Accuracy of visibility gradients on Spot, lumigrad vs DRTK, against supersampled finite differences.

For each case of :class:`lumigrad.testing.SpotPoseCase` (object or camera pose,
shaded or flat colour, 128² or 256²), the relative error ``|g - fd| / |fd|`` of
the six pose derivatives for lumigrad's ``edge`` (default) and ``antialias``
methods and for DRTK's ``edge_grad_estimator`` applied to the *same* image
(lumigrad's shading of DRTK's barycentrics; the script checks that the images
agree to 1e-9). The truth is central differences of 8x8-supersampled hard
renders. DRTK is used when ``import drtk`` works (see ``raster_w2.py``).

Usage: ``python bench/visibility_truth.py [--quick] [--out FILE.md]``.
"""
from __future__ import annotations

import argparse
import sys

import torch

from raster_w2 import _drtk

F64 = torch.float64
CASES = [(128, "object", True), (128, "camera", True), (256, "object", True), (256, "camera", True),
         (256, "object", False), (256, "camera", False)]


def drtk_gradient(drtk, case) -> tuple[torch.Tensor, float]:
    """DRTK's estimator on lumigrad's shading of DRTK's rasterization; (gradient, max image difference)."""
    from lumigrad.render._shading import shade_pixels

    def image(params):
        res = case.res
        verts, cam = case.verts(params), case.camera(res, params)
        pos = cam.project(verts)
        x, y, _, w = (pos[0] if pos.ndim == 3 else pos).unbind(-1)
        v_pix = torch.stack([(x / w + 1) * res / 2 - 0.5, (1 - y / w) * res / 2 - 0.5, w], -1)[None]
        vi = case.mesh.faces.int()
        index_img = drtk.rasterize(v_pix.detach(), vi, res, res)
        _, bary = drtk.render(v_pix, vi, index_img)
        ids = index_img[..., None].to(F64)
        rast = torch.cat([bary[:, 0:1].permute(0, 2, 3, 1), bary[:, 1:2].permute(0, 2, 3, 1), torch.zeros_like(ids), ids + 1], -1)
        parts = [(case.material, 0, case.mesh.num_faces)]
        rgb, _, mask = shade_pixels("bench", verts[None], case.mesh.faces, rast, torch.zeros_like(rast), cam, parts, case.lights)
        img = rgb + (1 - mask) * torch.tensor(case.background, dtype=F64)
        return drtk.edge_grad_estimator(v_pix, vi, bary, img.permute(0, 3, 1, 2), index_img).permute(0, 2, 3, 1)

    params = torch.zeros(6, dtype=F64, requires_grad=True)
    with torch.no_grad():
        diff = float((image(params) - case.image(params, case.res, "hard")).abs().max())
    return torch.autograd.grad(case.loss(image(params)), params)[0], diff


def run(quick: bool = False) -> list[dict]:
    from lumigrad.testing import SpotPoseCase

    drtk = _drtk()
    rows = []
    for res, move, shaded in CASES[:2] if quick else CASES:
        case = SpotPoseCase(res, move, shaded)
        fd = case.finite_differences()
        grads = {m: case.gradient(m) for m in ("edge", "antialias")}
        row = {"case": f"{move} {'shaded' if shaded else 'flat'}", "res": f"{res}^2"}
        if drtk is not None:
            grads["drtk"], diff = drtk_gradient(drtk, case)
            if diff > 1e-9:
                raise RuntimeError(f"DRTK's image differs from lumigrad's by {diff:.2e}: the comparison is not like for like")
        for name, g in grads.items():
            row[name] = float((g - fd).norm() / fd.norm())
        rows.append(row)
        print(row, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    cols = ["case", "res", "edge", "antialias", "drtk"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{100 * r[c]:.1f} %" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two 128² shaded cases")
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args(argv)
    text = "relative error of the pose gradient vs 8x8-supersampled finite differences\n\n" + table(run(args.quick))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
