"""Image losses: values, SSIM vs scikit-image, gradchecks, silhouette losses, bad inputs."""
import math

import pytest
import torch
from skimage.metrics import structural_similarity

from lumigrad.losses.image import l1, mask_iou_loss, mask_loss, mse, psnr, ssim, ssim_loss

D64 = torch.float64
gradcheck = torch.autograd.gradcheck


def _pair(shape, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*shape, generator=g, dtype=D64)
    b = (a + noise * torch.randn(*shape, generator=g, dtype=D64)).clamp(0, 1)
    return a, b


def test_mse_l1_psnr_values():
    a = torch.zeros(2, 3, 4, 3, dtype=D64)
    b = torch.full_like(a, 0.5)
    b[1] = 0.1
    assert abs(float(mse(a, b)) - (0.25 + 0.01) / 2) < 1e-12
    assert abs(float(l1(a, b)) - (0.5 + 0.1) / 2) < 1e-12
    torch.testing.assert_close(psnr(a, b), torch.tensor([10 * math.log10(4.0), 20.0], dtype=D64))
    mask = torch.zeros(2, 3, 4, 1, dtype=torch.bool)
    mask[1] = True
    assert abs(float(mse(a, b, mask)) - 0.01) < 1e-12
    assert abs(float(l1(a, b, mask)) - 0.1) < 1e-12


@pytest.mark.parametrize("shape", [(2, 16, 19, 3), (1, 11, 11, 1), (1, 24, 13, 2)])
def test_ssim_matches_skimage(shape):
    a, b = _pair(shape, seed=sum(shape))
    ours = ssim(a, b)
    for i in range(shape[0]):
        ref = structural_similarity(
            a[i].numpy(), b[i].numpy(), channel_axis=-1, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )
        assert abs(float(ours[i]) - ref) < 1e-4
    assert abs(float(ssim_loss(a, b)) - (1 - float(ours.mean()))) < 1e-12
    assert abs(float(ssim(a, a).min()) - 1.0) < 1e-12


def test_gradcheck_image_losses():
    a, b = _pair((1, 12, 13, 2), seed=1, noise=0.2)
    a.requires_grad_(True)
    # fast_mode compares J.u with a directional FD for random u: full Jacobians cost ~20 s here.
    assert gradcheck(lambda x: ssim(x, b), (a,), fast_mode=True)
    assert gradcheck(lambda x: ssim(b, x), (a,), fast_mode=True)
    assert gradcheck(lambda x: mse(x, b), (a,))
    away = b + 0.05 * torch.sign(a.detach() - b)  # keep |x - b| >= 0.05 so |.| is smooth under FD
    assert gradcheck(lambda x: l1(x, away), (a,))
    assert gradcheck(lambda x: psnr(x, b), (a,))


def test_mask_losses():
    target = torch.zeros(1, 4, 4, 1, dtype=D64)
    target[:, :2] = 1.0
    assert float(mask_iou_loss(target, target)) == 0.0
    assert abs(float(mask_iou_loss(1.0 - target, target)) - 1.0) < 1e-12
    half = torch.full_like(target, 0.5)  # inter 4, union 8 + 8 * 0.5 = 12 -> 1 - 1/3
    assert abs(float(mask_iou_loss(half, target)) - 2.0 / 3.0) < 1e-12
    assert abs(float(mask_loss(half, target)) - 0.25) < 1e-12
    assert abs(float(mask_loss(half, target, kind="bce")) - math.log(2.0)) < 1e-12
    assert float(mask_loss(target, target, kind="bce")) < 1e-5
    g = torch.Generator().manual_seed(2)
    p = (0.1 + 0.8 * torch.rand(1, 3, 4, 1, generator=g, dtype=D64)).requires_grad_(True)
    tgt = (torch.rand(1, 3, 4, 1, generator=g, dtype=D64) > 0.5).to(D64)
    assert gradcheck(lambda x: mask_iou_loss(x, tgt), (p,))
    assert gradcheck(lambda x: mask_loss(x, tgt, kind="bce"), (p,))
    assert gradcheck(lambda x: mask_loss(x, tgt, kind="l2"), (p,))


def test_bad_inputs():
    img = torch.zeros(1, 12, 12, 3, dtype=D64)
    with pytest.raises(ValueError, match=r"ssim\(\): img must be \[B, H, W, C\], got float32 \[3, 4\]"):
        ssim(torch.zeros(3, 4), img)
    with pytest.raises(ValueError, match=r"ssim\(\): img must be \[B, H, W, C\] with H, W >= win_size = 11"):
        ssim(img[:, :8], img[:, :8])
    with pytest.raises(ValueError, match=r"mse\(\): target must match pred"):
        mse(img, img.float())
    with pytest.raises(TypeError, match="pred"):
        l1(img.numpy(), img)
    with pytest.raises(ValueError, match="mask"):
        mse(img, img, mask=torch.ones(1, 12, 12, 3, dtype=D64))
    with pytest.raises(ValueError, match=r"mask_iou_loss\(\): pred_alpha must be \[B, H, W, 1\]"):
        mask_iou_loss(img, img)
    with pytest.raises(ValueError, match="kind must be 'l2' or 'bce'"):
        mask_loss(img[..., :1], img[..., :1], kind="l1")
    with pytest.raises(ValueError, match="win_size"):
        ssim(img, img, win_size=4)
    with pytest.raises(ValueError, match="data_range"):
        psnr(img, img, data_range=0.0)
