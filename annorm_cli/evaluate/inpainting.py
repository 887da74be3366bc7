"""Inpainting metrics, classical baselines and the evaluation loop.

Protocol (`annorm evaluate inpaint`), at each photo's native size, per bucket of masks:

- strokes 10-20%, 20-30%, 30-40%: free-form masks `random_mask(H, W, seed, ratio=bucket)`;
- objects: one solid object of 10-25% of the photo (`object_mask`: a person, a car, a sign,
  a blob or a box), as a user draws it to remove something;
- flat: a box and an ellipse of 1/16 of the photo over its smoothest region (`flat_region_mask`).

Stroke and object masks: `masks_per_photo` per photo, seed = 1000 * bucket + photo index +
100 * mask index (mask 0 of a stroke bucket is the one the earlier one-mask protocol used).
PSNR and L1 inside the hole, SSIM over the whole image (Gaussian window 11, sigma 1.5, per RGB
channel, on 0-255), averaged over all masks; the perceptual measure of every fill
(annorm_cli/evaluate/perceptual.py: KID, FID and feature distance of square crops around the
hole against the same crops of the original). Methods: annorm (the shipped pipeline), OpenCV's
Telea and Navier-Stokes (radius 3), PatchMatch (pypatchmatch, patch size 3, seed 0, on the
whole photo)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from annorm_cli.errors import AnnormError
from annorm_cli.evaluate.names import BUCKETS


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
    import torch
    import torch.nn.functional as F
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


def patchmatch_inpaint(image: np.ndarray, mask: np.ndarray, seed: int = 0, patch_size: int = 3) -> np.ndarray:
    """PatchMatch inpainting (Barnes et al. 2009, the pypatchmatch package) of an RGB uint8 image."""
    from annorm_cli.synthesis import patchmatch_fill
    return patchmatch_fill(image, mask, seed, patch_size)


def baseline_fill(method: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if method == "patchmatch":
        return patchmatch_inpaint(image, mask)
    return opencv_inpaint(image, mask, method)


def evaluation_masks(image: np.ndarray, bucket: str, photo_index: int, masks_per_photo: int) -> list[np.ndarray]:
    """The masks of one photo in one bucket (see the protocol above)."""
    from annorm_cli.masks import EVAL_BUCKETS, flat_region_mask, object_mask, random_mask
    H, W = image.shape[:2]
    if bucket == "flat":
        return [flat_region_mask(image, shape="box"), flat_region_mask(image, shape="ellipse")]
    index = BUCKETS.index(bucket)
    seeds = [1000 * index + photo_index + 100 * j for j in range(masks_per_photo)]
    if bucket == "objects":
        return [object_mask(H, W, seed) for seed in seeds]
    return [random_mask(H, W, seed, ratio=EVAL_BUCKETS[index]) for seed in seeds]


# ----------------------------------------------------------------------------- the evaluation loop
@dataclass
class BucketResult:
    """Per method: per-fill psnr / l1 / ssim lists and crop features [n, 2048]; the originals'
    crop features; the photo index of every crop (the folds of KID)."""
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)
    photo_of_crop: list[int] = field(default_factory=list)


def evaluate_photos(fills: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], photos: list[np.ndarray],
                    buckets: Sequence[str] = BUCKETS, *, masks_per_photo: int = 8, perceptual: bool = True,
                    inception=None, on_fill: Optional[Callable] = None) -> dict[str, BucketResult]:
    """Fill every mask of every photo with every method (name -> fill(image, mask)) and score it.
    on_fill(bucket, photo_index, mask_index, mask, outputs) is called after each mask (pictures)."""
    from annorm_cli.evaluate import perceptual as p
    from annorm_cli.evaluate.fid import inception_features
    results = {b: BucketResult() for b in buckets}
    for bucket in buckets:
        result = results[bucket]
        result.scores = {method: {"psnr": [], "l1": [], "ssim": []} for method in fills}
        result.features = {method: [] for method in [*fills, "original"]}
        for i, truth in enumerate(photos):
            for j, mask in enumerate(evaluation_masks(truth, bucket, i, masks_per_photo)):
                outputs = {method: fill(truth, mask) for method, fill in fills.items()}
                for method, out in outputs.items():
                    result.scores[method]["psnr"].append(psnr_in_hole(out, truth, mask))
                    result.scores[method]["l1"].append(l1_in_hole(out, truth, mask))
                    result.scores[method]["ssim"].append(ssim(out, truth))
                if perceptual:
                    box = p.hole_crop_box(mask)
                    crops = np.stack([p.hole_crop(a, box) for a in [*outputs.values(), truth]])
                    features = inception_features(crops, inception)
                    for method, f in zip([*outputs, "original"], features):
                        result.features[method].append(f)
                    result.photo_of_crop.append(i)
                if on_fill is not None:
                    on_fill(bucket, i, j, mask, outputs)
    return results


def summarise(result: BucketResult, paired_with: str = "annorm") -> dict[str, dict[str, float]]:
    """Per method: mean psnr / l1 / ssim and, with features: kid (x 1000) with its standard error
    over the folds, crop FID, the mean feature distance with its standard error, and
    kid_minus_<paired_with> (x 1000): the paired difference, fold by fold, with its standard error
    (negative: this method is closer to the originals than `paired_with`)."""
    from annorm_cli.evaluate import perceptual as p
    summary = {}
    groups = np.array(result.photo_of_crop)
    original = np.stack(result.features["original"]) if len(result.features.get("original", [])) >= 2 else None
    folds = {}
    if original is not None:
        n_folds = max(1, min(p.FOLDS, len(set(groups.tolist())) // 2))     # at least two photos per fold
        folds = {m: p.kid_per_fold(np.stack(f), original, groups, n_folds)
                 for m, f in result.features.items() if m != "original"}
    for method, scores in result.scores.items():
        row = {k: float(np.mean(v)) for k, v in scores.items()}
        if method in folds:
            features = np.stack(result.features[method])
            distance = p.feature_distance(features, original)
            row["kid"], row["kid_se"] = (1000 * v for v in p.mean_and_error(folds[method]))
            row["fid"] = p.crop_fid(features, original)
            row["feature_distance"], row["feature_distance_se"] = p.mean_and_error(distance)
            row["crops"] = len(features)
            if paired_with in folds and method != paired_with:
                difference = p.mean_and_error(folds[method] - folds[paired_with])
                row[f"kid_minus_{paired_with}"], row[f"kid_minus_{paired_with}_se"] = (1000 * v for v in difference)
        summary[method] = row
    return summary


def comparison_row(truth: np.ndarray, mask: np.ndarray, outputs: dict, side: int = 256) -> list[np.ndarray]:
    """Input with the hole (white), Telea, PatchMatch, annorm, truth: the square crop around the hole."""
    from annorm_cli.evaluate.perceptual import hole_crop, hole_crop_box
    box = hole_crop_box(mask)
    shown = np.where(mask[..., None], np.uint8(255), truth)
    blank = np.full_like(truth, 255)
    return [hole_crop(a, box, side) for a in (shown, outputs.get("telea", blank), outputs.get("patchmatch", blank),
                                              outputs["annorm"], truth)]


@dataclass
class InpaintEvaluation:
    """What `annorm evaluate inpaint` reports: per bucket the summary (summarise) and the raw
    results, and the comparison tiles (rows of 5) of the first object holes."""
    summary: dict[str, dict[str, dict[str, float]]]
    results: dict[str, BucketResult]
    tiles: list[np.ndarray]


def evaluate_inpainting(annorm_fill: Callable[[np.ndarray, np.ndarray], np.ndarray], truths: list[np.ndarray],
                        buckets: Sequence[str], baselines: Sequence[str], *, masks_per_photo: int, perceptual: bool,
                        inception=None, comparison_rows: int = 0,
                        progress: Optional[Callable[[int], None]] = None) -> InpaintEvaluation:
    """The protocol above for annorm's fill and the chosen baselines (a missing baseline says so
    before any work). `progress(1)` after each mask; `comparison_rows` object-hole rows kept."""
    for method in baselines:
        baseline_fill(method, np.zeros((8, 8, 3), np.uint8), np.eye(8, dtype=bool))
    fills = {m: (lambda image, mask, m=m: baseline_fill(m, image, mask)) for m in baselines}
    fills["annorm"] = annorm_fill
    tiles: list[np.ndarray] = []

    def on_fill(bucket, photo_index, mask_index, mask, outputs):
        if bucket == "objects" and mask_index == 0 and len(tiles) < 5 * comparison_rows:
            tiles.extend(comparison_row(truths[photo_index], mask, outputs))
        if progress is not None:
            progress(1)
    results = evaluate_photos(fills, truths, buckets, masks_per_photo=masks_per_photo, perceptual=perceptual,
                              inception=inception, on_fill=on_fill)
    return InpaintEvaluation({b: summarise(r) for b, r in results.items()}, results, tiles)
