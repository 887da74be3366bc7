"""Inpainting metrics and classical baselines.

Protocol (`annorm evaluate inpaint`): for every photo and every hole-size bucket, a free-form
mask from `random_mask(H, W, seed=1000 * bucket + photo index, ratio=bucket)` at the photo's
native size; PSNR and L1 inside the hole, SSIM over the whole image (Gaussian window 11,
sigma 1.5, per RGB channel, on 0-255), for annorm and OpenCV's Telea and Navier-Stokes
inpainting (radius 3)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from annorm_cli.errors import AnnormError


def psnr_in_hole(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) over the hole's pixels and channels."""
    diff = prediction[mask].astype(np.float64) - truth[mask].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def l1_in_hole(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error over the hole, in [0, 1] units."""
    return float(np.mean(np.abs(prediction[mask].astype(np.float64) - truth[mask].astype(np.float64))) / 255.0)


def ssim(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, L 255, "valid"
    windows) over RGB channels; separable float32 filtering (|error| < 1e-5 against float64)."""
    x = torch.from_numpy(prediction).permute(2, 0, 1)[:, None].float()            # [3, 1, H, W]
    y = torch.from_numpy(truth).permute(2, 0, 1)[:, None].float()
    coords = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    blur = lambda t: F.conv2d(F.conv2d(t, g.view(1, 1, 11, 1)), g.view(1, 1, 1, 11))  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.double().mean())


def opencv_inpaint(image: np.ndarray, mask: np.ndarray, method: str, radius: int = 3) -> np.ndarray:
    """OpenCV's Telea ("telea") or Navier-Stokes ("ns") inpainting of an RGB uint8 image."""
    try:
        import cv2
    except ImportError:
        raise AnnormError("The classical baselines need OpenCV: pip install 'annorm[eval]' "
                          "(opencv-python-headless).") from None
    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    bgr = np.ascontiguousarray(image[..., ::-1])
    out = cv2.inpaint(bgr, mask.astype(np.uint8) * 255, radius, flag)
    return np.ascontiguousarray(out[..., ::-1])


def evaluation_mask(height: int, width: int, bucket_index: int, photo_index: int,
                    bucket: tuple[float, float]) -> np.ndarray:
    from annorm_cli.masks import random_mask
    return random_mask(height, width, seed=1000 * bucket_index + photo_index, ratio=bucket)


def hole_window(mask: np.ndarray, side: int) -> tuple[slice, slice]:
    """A side x side window (smaller where the image is) centred on the hole's centroid and
    shifted to lie inside the image: where a comparison picture shows the fill."""
    rows, cols = np.nonzero(mask)
    H, W = mask.shape
    h, w = min(side, H), min(side, W)
    top = int(np.clip(round(rows.mean()) - h // 2, 0, H - h))
    left = int(np.clip(round(cols.mean()) - w // 2, 0, W - w))
    return slice(top, top + h), slice(left, left + w)
