"""Fidelity and diversity of samples as two numbers each, where FID mixes them into one.

On feature vectors (the FID network's pool features), real set X [N, d], sample set Y [M, d]:

- improved precision and recall (Kynkäänniemi et al. 2019), k = 3: each point's ball reaches
  its k-th nearest neighbour within its own set. Precision: the share of samples inside some
  real ball (are the samples realistic?); recall: the share of real points inside some sample
  ball (does the model cover the real data?).
- density and coverage (Naeem et al. 2020), k = 5, real balls only (robust to sample outliers):
  density = the mean number of real balls holding a sample, divided by k (about 1 when the
  samples are spread like the real data; above 1 when they crowd the dense parts); coverage =
  the share of real balls that hold at least one sample.

The protocol annorm reports (`annorm evaluate fid`): the first 200 test images of each class
against 200 samples of each class (seeds 0-199), 2,000 against 2,000; per class 200 against 200.
"""
from __future__ import annotations

import numpy as np

PRECISION_RECALL_K = 3
DENSITY_COVERAGE_K = 5


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] (float64; clamped at 0 against rounding)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squared, 0, None))


def kth_neighbour_radii(points: np.ndarray, k: int) -> np.ndarray:
    """[N]: each point's distance to its k-th nearest other point of the same set."""
    if len(points) <= k:
        raise ValueError(f"{len(points)} points have no {k}-th neighbour; give at least {k + 1}.")
    distances = pairwise_distances(points, points)
    np.fill_diagonal(distances, np.inf)                       # a point is not its own neighbour
    return np.partition(distances, k - 1, axis=1)[:, k - 1]


def precision_recall(real: np.ndarray, samples: np.ndarray, k: int = PRECISION_RECALL_K) -> dict:
    cross = pairwise_distances(samples, real)                                 # [M, N]
    precision = (cross <= kth_neighbour_radii(real, k)[None, :]).any(1).mean()
    recall = (cross <= kth_neighbour_radii(samples, k)[:, None]).any(0).mean()
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(real: np.ndarray, samples: np.ndarray, k: int = DENSITY_COVERAGE_K) -> dict:
    inside = pairwise_distances(samples, real) <= kth_neighbour_radii(real, k)[None, :]   # [M, N]
    return {"density": float(inside.sum() / (k * len(samples))), "coverage": float(inside.any(0).mean())}


def diversity(real: np.ndarray, samples: np.ndarray) -> dict:
    """precision, recall (k = 3), density, coverage (k = 5) of samples against real features."""
    return {**precision_recall(real, samples), **density_coverage(real, samples)}


def balanced(features: np.ndarray, labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` rows of every class (in order): the sets the protocol compares."""
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return features[keep], labels[keep]


def diversity_scores(real: np.ndarray, real_labels: np.ndarray, samples: np.ndarray, sample_labels: np.ndarray,
                     *, per_class: int, intra: bool = False) -> dict:
    """The protocol: `per_class` of each class on both sides, overall and (intra) per class."""
    real, real_labels = balanced(real, real_labels, per_class)
    samples, sample_labels = balanced(samples, sample_labels, per_class)
    result = {"diversity": diversity(real, samples), "diversity_per_class_samples": per_class}
    if intra:
        result["diversity_per_class"] = {int(c): diversity(real[real_labels == c], samples[sample_labels == c])
                                         for c in np.unique(real_labels)}
    return result
