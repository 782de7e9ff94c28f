"""PerceptualLoss with random weights (no torchvision), file loading, and the no-download error path."""
import pytest
import torch

from lumigrad.losses.perceptual import PerceptualLoss, vgg16_cache_path

D64 = torch.float64


@pytest.fixture(scope="module")
def loss_fn():
    return PerceptualLoss(weights=None, seed=0).to(D64)


def _img(seed, shape=(2, 16, 20, 3)):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def test_vgg16_layout_matches_torchvision_indices(loss_fn):
    convs = {i: m.out_channels for i, m in enumerate(loss_fn.features) if isinstance(m, torch.nn.Conv2d)}
    assert convs == {0: 64, 2: 64, 5: 128, 7: 128, 10: 256, 12: 256, 14: 256, 17: 512, 19: 512, 21: 512,
                     24: 512, 26: 512, 28: 512}
    assert not any(p.requires_grad for p in loss_fn.parameters())


def test_zero_for_identical_positive_otherwise(loss_fn):
    x, y = _img(0), _img(1)
    assert float(loss_fn(x, x)) == 0.0
    d = float(loss_fn(x, y))
    assert d > 0.0
    assert float(loss_fn(x, (x + 0.01).clamp(0, 1))) < d  # a small change is closer than a new image


def test_gradient_finite(loss_fn):
    x = _img(2).requires_grad_(True)
    y = _img(3)
    x.data[0, :4] = 0.0  # black region: dead ReLUs and the sRGB knee
    loss_fn(x, y).backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


def test_seeded_init_is_deterministic_and_loads_from_file(tmp_path):
    a, b = PerceptualLoss(weights=None, seed=3), PerceptualLoss(weights=None, seed=3)
    x, y = _img(4).float(), _img(5).float()
    assert float(a(x, y)) == float(b(x, y))
    # A full-model state dict with torchvision key names ("features.N.*", classifier ignored).
    state = {f"features.{k}": v for k, v in a.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    c = PerceptualLoss(weights=path)
    assert float(c(x, y)) == float(a(x, y))
    lin = {f"lin{k}.model.1.weight": torch.full((1, ch, 1, 1), 2.0) for k, ch in enumerate((64, 128, 256, 512, 512))}
    torch.save(lin, tmp_path / "lin.pth")
    weighted = PerceptualLoss(weights=path, linear_weights=tmp_path / "lin.pth")
    assert abs(float(weighted(x, y)) - 2.0 * float(a(x, y))) < 1e-5


def test_torchvision_weights_absent_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert vgg16_cache_path() == expected
    with pytest.raises(RuntimeError, match="never downloads") as info:
        PerceptualLoss()
    assert str(expected) in str(info.value)


def test_bad_inputs(loss_fn):
    x = _img(0)
    with pytest.raises(ValueError, match=r"PerceptualLoss\(\): pred must be \[B, H, W, 3\] with H, W >= 16"):
        loss_fn(x[:, :8], x[:, :8])
    with pytest.raises(ValueError, match=r"PerceptualLoss\(\): target must be \[B, H, W, 3\]"):
        loss_fn(x, x[..., :1])
    with pytest.raises(ValueError, match="like the network"):
        loss_fn(x.float(), x.float())
    with pytest.raises(TypeError, match="weights"):
        PerceptualLoss(weights=3)
    with pytest.raises(RuntimeError, match="does not exist"):
        PerceptualLoss(weights="/nonexistent/vgg.pth")
