"""Visual hull carving shared by fit shape, NeRF and 3DGS: a sphere's hull from its silhouettes."""
import pytest
import torch

from lumigrad.geometry import icosphere
from lumigrad.geometry.visual_hull import carve, hull_mesh, hull_shell
from lumigrad.render.raster import RasterSettings, render_silhouette
from lumigrad.scene.rigs import orbit_cameras

R = 0.6


def _sphere_masks(n=12, res=48):
    v, f = icosphere(4)
    cams = orbit_cameras(n, res, distance=3.0)
    with torch.no_grad():
        masks = render_silhouette(v * R, f, cams, RasterSettings(visibility="hard"))[..., 0]
    return cams, masks


def test_hull_of_a_sphere_is_close_to_it_and_wound_outwards():
    cams, masks = _sphere_masks()
    lo, hi = torch.full((3,), -1.0), torch.full((3,), 1.0)
    occ = carve(cams, masks, lo, hi, 40)
    verts, faces = hull_mesh(occ, lo, hi)
    r = verts.double().norm(dim=-1)
    cell = 2.0 / 40
    # A hull contains the object and, from 12 views, stays within a few cells of it.
    assert float(r.min()) > R - 1.5 * cell and float(r.max()) < R + 4 * cell
    f = faces.long()
    a, b, c = (verts[f[:, k]].double() for k in range(3))
    assert float((a * torch.linalg.cross(b, c)).sum()) > 0  # outward winding: positive volume
    shell, size = hull_shell(occ, lo, hi)
    assert torch.allclose(size, torch.full((3,), cell, dtype=torch.float64))
    assert 0 < shell.shape[0] < int(occ.sum())


def test_unseen_cells_are_carved_or_kept():
    cams, masks = _sphere_masks()
    # Box larger than what the cameras see: cells outside every view.
    lo, hi = torch.full((3,), -4.0), torch.full((3,), 4.0)
    strict = carve(cams, masks, lo, hi, 24, unseen="carve")
    lenient = carve(cams, masks, lo, hi, 24, unseen="keep")
    assert bool((strict <= lenient).all()) and int(lenient.sum()) > int(strict.sum()) > 0


def test_bad_inputs():
    cams, masks = _sphere_masks(n=2, res=16)
    lo, hi = torch.full((3,), -1.0), torch.full((3,), 1.0)
    with pytest.raises(ValueError, match="masks must be"):
        carve(cams, masks[:1], lo, hi, 8)
    with pytest.raises(ValueError, match="unseen"):
        carve(cams, masks, lo, hi, 8, unseen="maybe")
    with pytest.raises(ValueError, match="no occupied cell"):
        hull_mesh(torch.zeros(4, 4, 4, dtype=torch.bool), lo, hi)


def test_hull_mesh_keeps_the_largest_piece():
    occ = torch.zeros(12, 12, 12, dtype=torch.bool)
    occ[2:8, 2:8, 2:8] = True  # a big block
    occ[10, 10, 10] = True  # an island
    lo, hi = torch.zeros(3), torch.ones(3)
    verts, faces = hull_mesh(occ, lo, hi)
    assert int(faces.max()) == verts.shape[0] - 1
    assert float(verts.max()) < 9 / 12  # nothing of the island at cell 10
