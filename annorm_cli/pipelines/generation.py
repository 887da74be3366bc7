"""Class-conditional samples: seeds and latents, truncation, batches, interpolation."""
from __future__ import annotations

import difflib
import os
import weakref
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


MAX_CLASS_NAME = 40         # longer class names are quoted cut to this many characters


def class_index(name_or_index: str | int, class_names: Sequence[str]) -> int:
    """A class given by name (case-insensitive) or index; unknown names suggest the closest ones."""
    text = str(name_or_index).strip()
    if len(text) > MAX_CLASS_NAME:
        raise BadInputError(f"Unknown class '{text[:MAX_CLASS_NAME]}...' ({len(text):,} characters); the classes are "
                            f"{', '.join(class_names)}.")
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


STANDING_SEEDS = 2 ** 31 - 4096   # latents of the standing statistics: seeds users rarely pick
STANDING_FILES_KEPT = 64          # the on-disk cache keeps the most recently used files (each a few KB)


_STANDING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # generator -> (key, prepared copy)


def standing_file(generator: torch.nn.Module, truncation: float, batches: int, batch: int):
    """Where the standing statistics of this generator (by its weights' bytes) and truncation are
    kept between runs: annorm's cache folder (datasets.cache_dir), standing/<key>.safetensors."""
    import hashlib

    from annorm_cli.datasets import cache_dir
    digest = hashlib.sha256(repr((float(truncation), batches, batch, STANDING_SEEDS)).encode())
    for name, tensor in sorted(generator.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return cache_dir() / "standing" / f"{digest.hexdigest()[:32]}.safetensors"


def _load_buffers(model: torch.nn.Module, path) -> bool:
    """Copy the buffers stored at `path` into `model`; False (nothing changed) when the file is
    missing, unreadable or does not hold exactly the model's buffers (names, shapes, dtypes), finite."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        stored = load_file(str(path))
    except (OSError, SafetensorError, ValueError):
        return False
    own = dict(model.named_buffers())
    if set(stored) != set(own) or any(stored[n].shape != own[n].shape or stored[n].dtype != own[n].dtype
                                      or (stored[n].is_floating_point() and not stored[n].isfinite().all())
                                      for n in own):
        return False
    for name, buffer in own.items():
        buffer.copy_(stored[name])
    model.eval()
    _touch(path)
    return True


def _touch(path) -> None:
    """Mark a cache file as just used (the cache drops the least recently used first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune_cache(folder, keep: int = STANDING_FILES_KEPT) -> None:
    """Delete all but the `keep` most recently used *.safetensors files in `folder`."""
    try:
        files = sorted(folder.glob("*.safetensors"), key=lambda f: f.stat().st_mtime, reverse=True)
        for stale in files[keep:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


def _save_buffers(model: torch.nn.Module, path) -> None:
    """Store `model`'s buffers at `path` (whole file or none); a cache that cannot be written is skipped."""
    from safetensors.torch import save

    from annorm_cli.files import atomic_open
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = save({name: b.detach().cpu().contiguous() for name, b in model.named_buffers()})
        with atomic_open(path) as handle:
            handle.write(data)
    except OSError:
        return
    prune_cache(path.parent)


def for_truncation(generator: torch.nn.Module, truncation: Optional[float], *, batches: int = 16,
                   batch: int = 64) -> torch.nn.Module:
    """The generator ready to sample latents truncated to |z| <= truncation, as BigGAN does: a copy
    whose batch-norm statistics are recomputed (standing statistics) over batches of such latents.
    With the statistics of full-variance latents, truncated latents shrink every activation and
    images go dark and alike. No truncation: the generator itself. Kept in memory per generator
    and on disk (standing_file) across runs: computing them takes seconds."""
    if truncation is None:
        return generator
    key = (truncation, batches, batch, next(generator.parameters()).device,
           tuple(t._version for t in [*generator.parameters(), *generator.buffers()]))   # changes on any update
    cached = _STANDING.get(generator)
    if cached is not None and cached[0] == key:
        return cached[1]
    import copy

    from annorm_cli.models.class_conditional import standing_statistics
    prepared = copy.deepcopy(generator)
    stored = standing_file(generator, truncation, batches, batch)
    if not _load_buffers(prepared, stored):
        config = generator.config
        device = next(generator.parameters()).device
        labels = torch.arange(batch) % config.n_classes                                      # [batch], balanced
        draws = [(torch.stack([latent(STANDING_SEEDS + b * batch + i, config.z_dim, truncation)
                               for i in range(batch)]).to(device), labels.to(device)) for b in range(batches)]
        standing_statistics(prepared, draws)
        _save_buffers(prepared, stored)
    _STANDING[generator] = (key, prepared)          # one truncation per model kept: the page asks again and again
    return prepared


@torch.no_grad()
def generate_images(generator: torch.nn.Module, class_indices: Sequence[int], seeds: Sequence[int], *,
                    truncation: Optional[float] = None, batch_size: int = 64,
                    device: torch.device = torch.device("cpu"), precision: str = "fp32",
                    progress=None) -> np.ndarray:
    """One image per (class, seed) pair: [N, H, W, 3] uint8. Every image depends on its own seed
    only (eval mode: per-sample statistics), so `batch_size` changes speed, not pixels."""
    from annorm_cli.images import to_uint8
    from annorm_cli.device import autocast
    if len(class_indices) != len(seeds):
        raise BadInputError("generate_images needs one class per seed.")
    if batch_size < 1:
        raise BadInputError(f"The batch size must be a positive integer, got {batch_size}.")
    seeds = [check_seed(s) for s in seeds]
    truncation = check_truncation(truncation)
    z_dim = generator.config.z_dim
    generator = for_truncation(generator.to(device), truncation).eval()
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


MAX_SEED = 2 ** 63 - 1


def check_seed(seed, what: str = "The seed") -> int:
    """A seed as the API takes it: an integer from 0 to 2**63 - 1 (bool and float refused)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise BadInputError(f"{what} must be an integer from 0 to 2**63 - 1, got {seed!r}.")
    return int(seed)


def _as_seeds(seeds) -> list[int]:
    """One seed or an iterable of them -> list[int], checked."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return [check_seed(seeds)]
    if seeds is None or isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise BadInputError(f"seeds must be an integer or a list of integers from 0 to 2**63 - 1, got {seeds!r}.")
    checked = [check_seed(s, "Each seed") for s in seeds]
    if not checked:
        raise BadInputError("seeds is empty; give at least one seed.")
    return checked


TRUNCATION_RANGE = (0.1, 4.0)   # below 0.1 every sample is the class's mean image; above 4 nothing is truncated


def check_truncation(truncation) -> Optional[float]:
    """None, or a number from 0.1 to 4: the one check of the CLI, the server and the Python API
    (outside that range truncation buys nothing, and tiny values cost seconds of resampling)."""
    if truncation is None:
        return None
    low, high = TRUNCATION_RANGE
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float, np.floating, np.integer)) \
            or not low <= float(truncation) <= high:
        shown = repr(truncation) if isinstance(truncation, (int, float, np.floating, np.integer)) else \
            type(truncation).__name__
        raise BadInputError(f"The truncation must be a number from {low:g} to {high:g}, or none; got {shown[:40]}.")
    return float(truncation)


def check_precision(precision) -> str:
    if precision not in ("fp32", "bf16"):
        raise BadInputError(f"Unknown precision {precision!r}; choose 'fp32' or 'bf16'.")
    return precision


def generate(classes: Sequence[str | int] = ("all",), seeds: Sequence[int] = (0,), *, model: Optional[str] = None,
             weights: Optional[str] = None, truncation: Optional[float] = None, batch_size: int = 64,
             device: str = "auto", precision: str = "fp32") -> Generated:
    """Generate one image per (class, seed): every class given (names or indices, or "all")
    crossed with every seed. Returns a Generated with uint8 images [N, 32, 32, 3]."""
    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    seeds, truncation, precision = _as_seeds(seeds), check_truncation(truncation), check_precision(precision)
    generator, card = weight_files.load(model, weights)
    names = list(generator.config.class_names) or [str(i) for i in range(generator.config.n_classes)]
    wanted = _class_indices(classes, names)
    pairs = [(c, s) for c in wanted for s in seeds]
    images = generate_images(generator, [c for c, _ in pairs], [s for _, s in pairs], truncation=truncation,
                             batch_size=batch_size, device=resolve_device(device), precision=precision)
    return Generated(images, [c for c, _ in pairs], [names[c] for c, _ in pairs], [s for _, s in pairs],
                     truncation, card)


def _class_indices(classes, names: list[str]) -> list[int]:
    """What a Python user passes as classes (a name, an index, "all", or a list of names and
    indices) -> class indices; anything else, or nothing, is refused in one sentence."""
    if isinstance(classes, (str, int, np.integer)) and not isinstance(classes, bool):
        classes = [classes]                            # "cat" is one class, not three letters
    try:
        listed = list(classes)
    except TypeError:
        listed = None
    if listed is None or any(isinstance(c, bool) or not isinstance(c, (str, int, np.integer)) for c in listed):
        raise BadInputError(f"classes must be a class name or index, 'all', or a list of them, got {classes!r}.")
    classes = listed
    if not classes:
        raise BadInputError("classes is empty; give at least one class name or index, or 'all'.")
    if [str(c).lower() for c in classes] == ["all"]:
        return list(range(len(names)))
    return [class_index(c, names) for c in classes]


SAMPLE_PREFIX = "annorm:"         # the PNG text keys of a sample: `annorm generate --from-png` reads them back


def sample_text(model_name: str, sha256: str, class_name: str, seed: int, truncation: Optional[float], *,
                scale: int = 1, precision: str = "fp32") -> dict[str, str]:
    """The PNG text chunks of one generated sample: what `--from-png` needs to make it again."""
    from annorm_cli import __version__
    values = {"model": model_name, "sha256": sha256, "truncation": "none" if truncation is None else repr(truncation),
              "version": __version__, "scale": str(scale), "precision": precision, "class": class_name,
              "seed": str(seed)}
    return {SAMPLE_PREFIX + k: v for k, v in values.items()}


# ----------------------------------------------------------------------------- interpolation
def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two latents (linear where they are parallel)."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.no_grad()
def interpolate(generator: torch.nn.Module, classes: tuple[int, int], seeds: tuple[int, int], frames: int, *,
                truncation: Optional[float] = None, device: torch.device = torch.device("cpu")) -> np.ndarray:
    """`frames` images from (classes[0], seeds[0]) to (classes[1], seeds[1]): latents by slerp,
    classes by blending their class embeddings. -> [frames, H, W, 3] uint8."""
    from annorm_cli.images import to_uint8
    if frames < 2:
        raise BadInputError(f"An interpolation needs at least 2 frames, got {frames}.")
    seeds, truncation = tuple(check_seed(s) for s in seeds), check_truncation(truncation)
    config = generator.config
    za, zb = (latent(s, config.z_dim, truncation) for s in seeds)
    steps = torch.linspace(0, 1, frames)
    z = torch.stack([slerp(za, zb, float(t)) for t in steps])                       # [F, z_dim]
    weights = torch.zeros(frames, config.n_classes)
    weights[:, classes[0]] += 1 - steps
    weights[:, classes[1]] += steps                                                # [F, n_classes]
    generator = for_truncation(generator.to(device), truncation).eval()
    return to_uint8(generator(z.to(device), weights.to(device)))
