"""Tensors in, images out: the Python API behind the CLI.

    >>> import annorm_cli
    >>> images = annorm_cli.generate(classes=["cat"], seeds=[0, 1, 2])   # [3, 32, 32, 3] uint8
"""
from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

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


STANDING_SEEDS = 2 ** 31 - 4096   # latents of the standing statistics: seeds users rarely pick


_STANDING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # generator -> (key, prepared copy)


def for_truncation(generator: torch.nn.Module, truncation: Optional[float], *, batches: int = 16,
                   batch: int = 64) -> torch.nn.Module:
    """The generator ready to sample latents truncated to |z| <= truncation, as BigGAN does: a copy
    whose batch-norm statistics are recomputed (standing statistics) over batches of such latents.
    With the statistics of full-variance latents, truncated latents shrink every activation and
    images go dark and alike. No truncation: the generator itself."""
    if truncation is None:
        return generator
    key = (truncation, batches, batch, next(generator.parameters()).device,
           tuple(t._version for t in [*generator.parameters(), *generator.buffers()]))   # changes on any update
    cached = _STANDING.get(generator)
    if cached is not None and cached[0] == key:
        return cached[1]
    import copy

    from annorm_cli.models.class_conditional import standing_statistics
    config = generator.config
    device = next(generator.parameters()).device
    labels = torch.arange(batch) % config.n_classes                                          # [batch], balanced
    draws = [(torch.stack([latent(STANDING_SEEDS + b * batch + i, config.z_dim, truncation)
                           for i in range(batch)]).to(device), labels.to(device)) for b in range(batches)]
    prepared = copy.deepcopy(generator)
    standing_statistics(prepared, draws)
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


def check_truncation(truncation) -> Optional[float]:
    """None, or a positive finite number."""
    if truncation is None:
        return None
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float, np.floating, np.integer)) \
            or not 0 < float(truncation) < float("inf"):
        raise BadInputError(f"The truncation must be a positive finite number or None, got {truncation!r}.")
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
    if isinstance(classes, (str, int, np.integer)):
        classes = [classes]                            # "cat" is one class, not three letters
    wanted = list(range(len(names))) if [str(c) for c in classes] == ["all"] else \
        [class_index(c, names) for c in classes]
    pairs = [(c, s) for c in wanted for s in seeds]
    images = generate_images(generator, [c for c, _ in pairs], [s for _, s in pairs], truncation=truncation,
                             batch_size=batch_size, device=resolve_device(device), precision=precision)
    return Generated(images, [c for c, _ in pairs], [names[c] for c, _ in pairs], [s for _, s in pairs],
                     truncation, card)


SAMPLE_PREFIX = "annorm:"         # the PNG text keys of a sample: `annorm generate --from-png` reads them back


def sample_text(model_name: str, sha256: str, class_name: str, seed: int, truncation: Optional[float], *,
                scale: int = 1, precision: str = "fp32") -> dict[str, str]:
    """The PNG text chunks of one generated sample: what `--from-png` needs to make it again."""
    from annorm_cli import __version__
    values = {"model": model_name, "sha256": sha256, "truncation": "none" if truncation is None else repr(truncation),
              "version": __version__, "scale": str(scale), "precision": precision, "class": class_name,
              "seed": str(seed)}
    return {SAMPLE_PREFIX + k: v for k, v in values.items()}


def inpaint_text(model_name: str, sha256: str) -> dict[str, str]:
    """The PNG text chunks of an inpainted photo: which weights filled it."""
    from annorm_cli import __version__
    return {"annorm:model": model_name, "annorm:sha256": sha256, "annorm:version": __version__}


# ----------------------------------------------------------------------------- inpainting
def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    H, W = x.shape[2:]
    pad_h, pad_w = (-H) % multiple, (-W) % multiple
    if pad_h or pad_w:
        mode = "reflect" if H > pad_h and W > pad_w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, H, W


def hole_region(mask: np.ndarray, margin: float = 0.5, min_margin: int = 32) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the hole's bounding box grown by `margin` of its size
    (at least `min_margin` px) and clipped to the image: the context the network sees."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    grow_h = max(min_margin, int(margin * (bottom - top)))
    grow_w = max(min_margin, int(margin * (right - left)))
    H, W = mask.shape
    return max(0, top - grow_h), min(H, bottom + grow_h), max(0, left - grow_w), min(W, right + grow_w)


def downscale_known(region: torch.Tensor, hole: torch.Tensor, size: list[int]) -> torch.Tensor:
    """synthesis.downscale_known for region [1, 3, H, W] and hole [1, 1, H, W] (1 = hole)."""
    from annorm_cli.synthesis import downscale_known as downscale
    return downscale(region[0], hole[0, 0] > 0, tuple(size))[None]


def pull_push(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill values [B, C, H, W] where known [B, 1, H, W] is 0 from where it is 1, by the pull-push
    algorithm (Gortler et al. 1996): known-pixel averages over a pyramid of 2x2 blocks (pull),
    then each level keeps its own average where it has known pixels under it and takes the
    upsampled coarser estimate where it has none (push). Smooth, parameter-free, and exact on
    known pixels."""
    levels = [(F.avg_pool2d(values * known, 2, ceil_mode=True) * 4,            # (sum, count) per block
               F.avg_pool2d(known, 2, ceil_mode=True) * 4)]
    while max(levels[-1][1].shape[2:]) > 1:
        total, count = levels[-1]
        levels.append((F.avg_pool2d(total, 2, ceil_mode=True) * 4, F.avg_pool2d(count, 2, ceil_mode=True) * 4))
    total, count = levels[-1]
    estimate = total / count.clamp_min(1e-6)                                    # [B, C, 1, 1]
    for total, count in reversed(levels[:-1]):
        coarser = F.interpolate(estimate, size=total.shape[2:], mode="bilinear", align_corners=False)
        estimate = torch.where(count > 0, total / count.clamp_min(1e-6), coarser)
    coarser = F.interpolate(estimate, size=values.shape[2:], mode="bilinear", align_corners=False)
    return torch.where(known > 0, values, coarser)


def match_surroundings(fill: torch.Tensor, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Correct the network's fill [B, 3, H, W] by its own error on the known pixels: the error
    image - fill, known outside the hole (1 = hole), is pull-push interpolated into the hole and
    added, so the fill meets its surroundings without a seam or a colour cast."""
    return fill + pull_push(image - fill, 1 - hole)


DEEPEST_HOLE = 16          # px at the network's scale: holes deeper than this are filled smaller
TEXTURE_MARGIN = 1.0       # the texture step copies from the hole's box grown by this much of its size


def network_scale(model: torch.nn.Module, mask: np.ndarray, region_side: int, max_side: Optional[int]) -> float:
    """The scale (<= 1) at which the network fills: the region fits `max_side` (default: the
    model's work_side) and the deepest hole pixel lies at most DEEPEST_HOLE px from known ones,
    as deep as the holes the network was trained on. Deeper holes (a box over a sky) at full
    scale leave the network's interior guess far from any context: a dark blob."""
    from annorm_cli.masks import hole_depth
    depth = hole_depth(mask)
    return min(1.0, (max_side or model.config.work_side) / region_side, DEEPEST_HOLE / max(depth, 1))


@torch.no_grad()
def network_fill(model: torch.nn.Module, image: np.ndarray, mask: np.ndarray, *,
                 device: torch.device = torch.device("cpu"), max_side: Optional[int] = None,
                 whole_image: bool = False, match: bool = True) -> tuple[np.ndarray, float]:
    """The network's fill of one photo. image [H, W, 3] uint8, mask [H, W] bool (True = hole) ->
    ([H, W, 3] uint8 whose pixels outside the hole are the input's, bit for bit; the scale the
    network worked at).

    The network sees the hole's bounding box plus a margin of context, downscaled by
    network_scale (to the model's work_side, or `max_side`, and so the hole is no deeper than
    the network was trained for), inpainted, upscaled, and only the hole pixels are pasted back.
    `whole_image` makes the network see the whole photo (as visualize-layout wants). With `match`
    the fill, back at full size, is corrected by its error on the known pixels (match_surroundings):
    this removes the network's colour cast and restores detail the downscale lost at the hole's edge."""
    from annorm_cli.models.inpainting import MULTIPLE
    top, bottom, left, right = (0, mask.shape[0], 0, mask.shape[1]) if whole_image else hole_region(mask)
    region = torch.from_numpy(image[top:bottom, left:right].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    hole = torch.from_numpy(mask[top:bottom, left:right])[None, None].float()
    size = region.shape[2:]
    scale = network_scale(model, mask, max(size), max_side)
    x, m = region, hole
    if scale < 1.0:
        small = [max(MULTIPLE, round(s * scale)) for s in size]
        x = downscale_known(region, hole, small)
        m = (F.interpolate(hole, size=small, mode="area") > 0).float()         # any hole pixel -> hole
    x, H, W = _pad_to_multiple(x.to(device), MULTIPLE)
    m, _, _ = _pad_to_multiple(m.to(device), MULTIPLE)
    _, refined = model.to(device).eval()(x, m)
    refined = refined[:, :, :H, :W].float().cpu()
    if scale < 1.0:
        refined = F.interpolate(refined, size=size, mode="bilinear", align_corners=False)
    if match:
        refined = match_surroundings(refined, region, hole)
    filled = ((refined.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    out = image.copy()
    window = out[top:bottom, left:right]
    window_mask = mask[top:bottom, left:right]
    window[window_mask] = filled[window_mask]
    return out, scale


def texture_fill(image: np.ndarray, mask: np.ndarray, guide: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """Texture from the photo's known pixels copied into the hole at the photo's resolution,
    guided by the network's fill `guide` [H, W, 3] uint8 made at `scale` (see annorm_cli.synthesis).
    Works on the hole's box grown by TEXTURE_MARGIN; only hole pixels change."""
    from annorm_cli.synthesis import synthesize
    top, bottom, left, right = hole_region(mask, margin=TEXTURE_MARGIN, min_margin=48)
    as_tensor = lambda a: torch.from_numpy(np.array(a[top:bottom, left:right])).permute(2, 0, 1).float()  # noqa: E731
    hole = torch.from_numpy(np.array(mask[top:bottom, left:right]))
    filled = synthesize(as_tensor(image), hole, as_tensor(guide), scale, seed=seed)
    out = guide.copy()
    window, window_mask = out[top:bottom, left:right], mask[top:bottom, left:right]
    window[window_mask] = filled.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()[window_mask]
    return out


def inpaint_array(model: torch.nn.Module, image: np.ndarray, mask: np.ndarray, *,
                  device: torch.device = torch.device("cpu"), max_side: Optional[int] = None,
                  whole_image: bool = False, match: bool = True, texture: bool = True, seed: int = 0) -> np.ndarray:
    """Fill the hole of one photo. image [H, W, 3] uint8, mask [H, W] bool (True = hole) ->
    [H, W, 3] uint8 whose pixels outside the hole are the input's, bit for bit.

    Two steps: the network's fill at a small scale (network_fill: structure and colour), then,
    with `texture`, real texture from the photo copied in at full resolution under the
    network's guidance (texture_fill). The same inputs and seed give the same bits."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadInputError("inpaint needs an RGB uint8 image [H, W, 3].")
    if mask.shape != image.shape[:2]:
        raise BadInputError(f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                            f"{image.shape[1]}x{image.shape[0]}.")
    check_seed(seed)
    mask = mask.astype(bool)
    if not mask.any():
        return image.copy()
    if mask.all():
        raise BadInputError("The mask covers the whole image: there are no known pixels to fill the hole from.")
    filled, scale = network_fill(model, image, mask, device=device, max_side=max_side, whole_image=whole_image,
                                 match=match)
    if texture and not whole_image:
        filled = texture_fill(image, mask, filled, scale, seed)
    return filled


def as_photo(image) -> np.ndarray:
    """What a Python user passes as a photo -> [H, W, 3] uint8: an array ([H, W, 3] or grey
    [H, W], uint8), a PIL image (any mode, see images.to_rgb) or a path."""
    import os

    from PIL import Image

    from annorm_cli.images import read_image, to_rgb
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        return image.copy() if image.ndim == 3 and image.shape[2] == 3 else \
            np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
    raise BadInputError("The image must be a uint8 array [H, W, 3] or [H, W], a PIL image or a path, "
                        f"got {type(image).__name__}" + (f" {image.dtype} {image.shape}" if isinstance(image, np.ndarray) else "") + ".")


def as_hole(mask, size: tuple[int, int]) -> np.ndarray:
    """What a Python user passes as a mask -> [H, W] bool (True = hole): a 2-D array (bool, or
    numbers where non-zero is hole), a PIL image or a path (read as the CLI reads mask files)."""
    import io
    import os

    from PIL import Image

    from annorm_cli.images import read_mask
    if isinstance(mask, Image.Image):
        buffer = io.BytesIO()
        mask.save(buffer, format="PNG" if mask.mode not in ("I;16", "F", "I") else "TIFF")
        return read_mask(buffer.getvalue(), size, name="mask image")
    if isinstance(mask, (str, os.PathLike)):
        return read_mask(mask, size)
    if isinstance(mask, np.ndarray) and mask.ndim == 2 and (mask.dtype == bool or np.issubdtype(mask.dtype, np.number)):
        if mask.shape != tuple(size):
            raise BadInputError(f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is {size[1]}x{size[0]}.")
        return np.nan_to_num(mask) != 0
    raise BadInputError("The mask must be a 2-D array (True or non-zero = hole), a PIL image or a path, "
                        f"got {type(mask).__name__}.")


def inpaint(image, mask, *, model: Optional[str] = None, weights: Optional[str] = None,
            device: str = "auto", max_side: Optional[int] = None, texture: bool = True, seed: int = 0) -> np.ndarray:
    """Fill `mask` (True = hole) in `image` with a shipped inpainting model. The image: a uint8
    array [H, W, 3] or [H, W], a PIL image or a path; the mask: a 2-D array, a PIL image or a
    path. Returns [H, W, 3] uint8.

    >>> filled = annorm_cli.inpaint(photo, hole)     # pixels outside the hole unchanged
    """
    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    image = as_photo(image)
    mask = as_hole(mask, image.shape[:2])
    network, _ = weight_files.load(model, weights, task="inpaint")
    return inpaint_array(network, image, mask, device=resolve_device(device), max_side=max_side, texture=texture,
                         seed=seed)


# ----------------------------------------------------------------------------- layouts
@dataclass
class Layouts:
    """What the AN layers saw: the image [H, W, 3] uint8 and, per AN layer name, the soft layout
    [n, h, w] (sums to 1 over entities) and the logits [n, h, w], as float32 numpy arrays."""
    image: np.ndarray
    layouts: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]


def _recorded(model: torch.nn.Module, run) -> tuple[np.ndarray, dict, dict]:
    from annorm_cli.nn import recording_layouts
    with recording_layouts(model) as layers:
        image = run()
    if not layers:
        raise BadInputError("This model has no AN layers (it was trained with attention 'sa' or 'none').")
    return (image, {n: l.last_layout[0].cpu().numpy() for n, l in layers.items()},
            {n: l.last_logits[0].cpu().numpy() for n, l in layers.items()})


def generator_layouts(generator: torch.nn.Module, class_index_: int, seed: int, *,
                      truncation: Optional[float] = None) -> Layouts:
    """Generate one image and record the layouts of every AN layer of the generator."""
    run = lambda: generate_images(generator, [class_index_], [seed], truncation=truncation)[0]  # noqa: E731
    return Layouts(*_recorded(generator, run))


def inpainting_layouts(network: torch.nn.Module, image: np.ndarray, mask: np.ndarray, *,
                       max_side: Optional[int] = None) -> Layouts:
    """Inpaint one photo and record the layouts of every AN layer (on the region the network saw)."""
    run = lambda: inpaint_array(network, image, mask, max_side=max_side, whole_image=True)  # noqa: E731
    return Layouts(*_recorded(network, run))


def layouts(*, class_name: Optional[str] = None, seed: int = 0, image: Optional[np.ndarray] = None,
            mask: Optional[np.ndarray] = None, model: Optional[str] = None, weights: Optional[str] = None) -> Layouts:
    """Layouts for a generated image (class_name + seed) or an inpainted photo (image + mask).

    >>> result = annorm_cli.layouts(class_name="cat", seed=0)
    >>> {name: s.shape for name, s in result.layouts.items()}   # {'attention.attention': (16, 16, 16)}
    """
    from annorm_cli import weights as weight_files
    if image is not None:
        if mask is None:
            raise BadInputError("A photo's layouts need its mask too: layouts(image=..., mask=...).")
        photo = as_photo(image)
        network, _ = weight_files.load(model, weights, task="inpaint")
        return inpainting_layouts(network, photo, as_hole(mask, photo.shape[:2]))
    generator, _ = weight_files.load(model, weights)
    return generator_layouts(generator, class_index(class_name or 0, generator.config.class_names), check_seed(seed))


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
    config = generator.config
    za, zb = (latent(s, config.z_dim, truncation) for s in seeds)
    steps = torch.linspace(0, 1, frames)
    z = torch.stack([slerp(za, zb, float(t)) for t in steps])                       # [F, z_dim]
    weights = torch.zeros(frames, config.n_classes)
    weights[:, classes[0]] += 1 - steps
    weights[:, classes[1]] += steps                                                # [F, n_classes]
    generator = for_truncation(generator.to(device), truncation).eval()
    return to_uint8(generator(z.to(device), weights.to(device)))
