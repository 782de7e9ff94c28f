"""The screen-space shadow term picks caster edges by the on-screen length of their shadows
(lumigrad.render._trace_edges._shadow_lengths), not by their 3D length."""
import torch

from lumigrad.render._trace_edges import _project, _shadow_lengths, face_data
from lumigrad.render.path import _Scene, prepare_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.lights import PointLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings

DT = torch.float64
QUAD = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def test_edges_are_weighted_by_their_shadows_length_on_screen():
    floor = torch.tensor([[-3, 0, -3], [-3, 0, 3], [3, 0, 3], [3, 0, -3]], dtype=DT)  # normal +y
    # A card at height 0.5; a point light at height 1.0 stretches its shadow 2x on the floor.
    card = torch.tensor([[-0.2, 0.5, -0.1], [-0.2, 0.5, 0.1], [0.2, 0.5, 0.1], [0.2, 0.5, -0.1]], dtype=DT)
    shapes = [Shape(Mesh(floor, QUAD), LambertMaterial(0.8)), Shape(Mesh(card, QUAD), LambertMaterial(0.8))]
    light = PointLight(torch.tensor([0.0, 1.0, 0.0], dtype=DT), intensity=5.0)
    cam = Camera.look_at(torch.tensor([0.0, 3.0, 2.0], dtype=DT), torch.zeros(3, dtype=DT), width=64, height=48)
    sc = _Scene(shapes, cam, [light], TraceSettings(), prepare_trace(shapes))
    face_data(sc)
    w2c, k = cam.world_to_cam[0], cam.K[0]
    e = torch.tensor([[4, 5], [5, 6], [6, 7], [7, 4]])  # the card's outline (vertices 4.. after the floor's)

    def project(p):
        return _project(w2c, k, p, True)

    got = _shadow_lengths(sc, light, e, project)
    ends = card[e.reshape(-1) - 4]
    shadow = light.position + 2.0 * (ends - light.position)  # y = 0: twice as far from the light
    want = (project(shadow)[0].reshape(-1, 2, 2).diff(dim=1)[:, 0]).norm(dim=-1)
    length = (ends.reshape(-1, 2, 3)[:, 1] - ends.reshape(-1, 2, 3)[:, 0]).norm(dim=-1)
    floor = 1e-3 * float(want.sum()) / float(length.sum()) * length  # every edge's small share
    torch.testing.assert_close(got, want + floor, rtol=1e-9, atol=1e-9)
    # An edge whose shadow falls outside the image keeps only the small floor share.
    far = torch.tensor([[-1.0, 0.5, 2.9], [1.0, 0.5, 2.9]], dtype=DT)  # shadow beyond the image's lower border
    shapes.append(Shape(Mesh(torch.cat([far, far + torch.tensor([0.0, 0.0, 0.01], dtype=DT)]),
                             torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)), LambertMaterial(0.8)))
    sc = _Scene(shapes, cam, [light], TraceSettings(), prepare_trace(shapes))
    face_data(sc)
    x = project(light.position + 2.0 * (far - light.position))[0]
    assert float(x[:, 1].min()) > 48  # really off screen
    both = _shadow_lengths(sc, light, torch.tensor([[4, 5], [8, 9]]), project)
    assert float(both[1]) < 1e-2 * float(both[0])
