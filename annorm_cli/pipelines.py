"""Tensors in, images out: the Python API behind the CLI.

    >>> import annorm_cli
    >>> images = annorm_cli.generate(classes=["cat"], seeds=[0, 1, 2])   # [3, 32, 32, 3] uint8
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from annorm_cli.errors import BadInputError


@dataclass
class Generated:
    """The result of generate(): images [N, H, W, 3] uint8 with, per image, its class and seed."""
    images: np.ndarray
    class_indices: list[int]
    class_names: list[str]
    seeds: list[int]
    truncation: Optional[float]
    card: dict


def class_index(name_or_index: str | int, class_names: Sequence[str]) -> int:
    """A class given by name (case-insensitive) or index; unknown names suggest the closest ones."""
    text = str(name_or_index).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(class_names):
            raise BadInputError(f"Class index {index} is out of range; this model has classes 0-{len(class_names) - 1}.")
        return index
    lowered = [c.lower() for c in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(class_names[lowered.index(c)]) for c in close)}?" if close else ""
    raise BadInputError(f"Unknown class '{text}'; the classes are {', '.join(class_names)}.{hint}")


def latent(seed: int, z_dim: int, truncation: Optional[float] = None) -> torch.Tensor:
    """The latent [z_dim] of one seed: standard normal, or truncated to |z| <= truncation by
    resampling the values outside (BigGAN's truncation trick). Depends on the seed alone."""
    rng = torch.Generator().manual_seed(int(seed))
    z = torch.randn(z_dim, generator=rng)
    if truncation is not None:
        if truncation <= 0:
            raise BadInputError(f"Truncation must be positive, got {truncation}.")
        for _ in range(1000):
            outside = z.abs() > truncation
            if not outside.any():
                break
            z = torch.where(outside, torch.randn(z_dim, generator=rng), z)
        z = z.clamp(-truncation, truncation)
    return z


@torch.no_grad()
def generate_images(generator: torch.nn.Module, class_indices: Sequence[int], seeds: Sequence[int], *,
                    truncation: Optional[float] = None, batch_size: int = 64,
                    device: torch.device = torch.device("cpu"), precision: str = "fp32",
                    progress=None) -> np.ndarray:
    """One image per (class, seed) pair: [N, H, W, 3] uint8. Every image depends on its own seed
    only (eval mode: per-sample statistics), so `batch_size` changes speed, not pixels."""
    from annorm_cli.images import to_uint8
    from annorm_cli.train.common import autocast
    if len(class_indices) != len(seeds):
        raise BadInputError("generate_images needs one class per seed.")
    if batch_size < 1:
        raise BadInputError(f"The batch size must be a positive integer, got {batch_size}.")
    z_dim = generator.config.z_dim
    generator = generator.to(device).eval()
    chunks = []
    for start in range(0, len(seeds), batch_size):
        stop = min(start + batch_size, len(seeds))
        z = torch.stack([latent(s, z_dim, truncation) for s in seeds[start:stop]]).to(device)
        labels = torch.tensor(list(class_indices[start:stop]), device=device)
        with autocast(device, precision):
            chunks.append(to_uint8(generator(z, labels)))
        if progress is not None:
            progress(stop - start)
    return np.concatenate(chunks) if chunks else np.zeros((0, 32, 32, 3), np.uint8)


def generate(classes: Sequence[str | int] = ("all",), seeds: Sequence[int] = (0,), *, model: Optional[str] = None,
             weights: Optional[str] = None, truncation: Optional[float] = None, batch_size: int = 64,
             device: str = "auto", precision: str = "fp32") -> Generated:
    """Generate one image per (class, seed): every class given (names or indices, or "all")
    crossed with every seed. Returns a Generated with uint8 images [N, 32, 32, 3]."""
    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    generator, card = weight_files.load(model, weights)
    names = list(generator.config.class_names) or [str(i) for i in range(generator.config.n_classes)]
    wanted = list(range(len(names))) if [str(c) for c in classes] == ["all"] else \
        [class_index(c, names) for c in classes]
    pairs = [(c, s) for c in wanted for s in seeds]
    images = generate_images(generator, [c for c, _ in pairs], [s for _, s in pairs], truncation=truncation,
                             batch_size=batch_size, device=resolve_device(device), precision=precision)
    return Generated(images, [c for c, _ in pairs], [names[c] for c, _ in pairs], [s for _, s in pairs],
                     truncation, card)
