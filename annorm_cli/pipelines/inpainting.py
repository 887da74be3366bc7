"""Inpainting: the network's fill at its scale, PatchMatch or the texture step at full
resolution, and the Python API's argument handling."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from annorm_cli.errors import BadInputError
from annorm_cli.pipelines.generation import check_seed


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


def patchmatch_proposals(images: torch.Tensor, masks: torch.Tensor, seed: int) -> torch.Tensor:
    """PatchMatch's fill (synthesis.patchmatch_fill, patch size 3) of each image: images [B, 3, H, W]
    in [-1, 1], masks [B, 1, H, W] (1 = hole) -> [B, 3, H, W] in [-1, 1], the proposals a network
    trained with `train inpaint --proposal patchmatch` refines. Every fill starts its random search
    from `seed` (pypatchmatch's global seed), so the same inputs give the same bits; the images are
    filled in parallel threads (the native code runs without the GIL), one per CPU core."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from annorm_cli.synthesis import patchmatch_fill
    pixels = ((images.cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    holes = masks[:, 0].cpu().numpy() > 0
    patchmatch_fill(np.zeros((8, 8, 3), np.uint8), np.eye(8, dtype=bool), seed=seed)   # seeds it (or says it is missing)
    import patchmatch
    fill = lambda pair: patchmatch.inpaint(np.ascontiguousarray(pair[0]), pair[1].astype(np.uint8),  # noqa: E731
                                           patch_size=3)
    with ThreadPoolExecutor(max_workers=max(1, min(len(pixels), os.cpu_count() or 1))) as pool:
        fills = list(pool.map(fill, zip(pixels, holes)))
    return torch.from_numpy(np.stack(fills)).permute(0, 3, 1, 2).float() / 127.5 - 1


def low_pass_in_hole(values: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """values [B, C, H, W] smoothed by a Gaussian of `sigma` px over the hole's pixels only (mask
    [B, 1, H, W], 1 = hole; normalised by the hole's share under the kernel, so the hole's edge
    keeps full strength), 0 outside the hole: the low frequencies of a correction, which cannot
    carry texture. sigma 0: values * mask."""
    if sigma <= 0:
        return values * mask
    radius = max(1, int(3 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device) ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()

    def smooth(x: torch.Tensor) -> torch.Tensor:                                   # [B, C, H, W], zeros beyond
        c = x.shape[1]
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0)), taps.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(F.pad(x, (0, 0, radius, radius)), taps.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return smooth(values * mask) / smooth(mask).clamp_min(1e-6) * mask


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
                 whole_image: bool = False, match: bool = True, proposal: bool = False) -> tuple[np.ndarray, float]:
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
    model = model.to(device).eval()
    _, refined = model(x, m, patchmatch_proposals(x, m, seed=0).to(device)) if proposal else model(x, m)
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


NETWORK_DEPTH = 8          # px: hole regions no deeper than this (thin strokes) keep the network's fill


def _box_sum(x: np.ndarray, radius: int) -> np.ndarray:
    """[H, W] bool -> the count of True over each (2 radius + 1)^2 square, outside the image 0: an
    integral image, so the cost does not grow with the radius."""
    H, W = x.shape
    padded = np.zeros((H + 2 * radius + 1, W + 2 * radius + 1), np.int32)          # x: bool; sums < 2**31
    padded[radius + 1:radius + 1 + H, radius + 1:radius + 1 + W] = x
    table = padded.cumsum(0).cumsum(1)
    size = 2 * radius + 1
    return table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]


def texture_share(mask: np.ndarray, depth: int) -> np.ndarray:
    """[H, W] float in [0, 1]: how much of each hole pixel the texture step fills. Deep regions of
    the hole (pixels more than `depth` px, chessboard, from any known pixel; the image border
    counts as unknown) and everything within `depth` px of them are texture (1): object holes
    whole, rim included. Thin regions out of their reach (scribbles, wires, thin limbs of a
    shape) are the network's (0). Where they meet, the share falls off over about `depth` px
    (the share of texture region in a square of side 2 depth + 1, doubled). Square erosions and
    dilations by box sums over the hole's bounding box grown by 2 depth + 1 (nothing beyond it
    reaches in)."""
    share = np.zeros(mask.shape, np.float32)
    if not mask.any():
        return share
    area = (2 * depth + 1) ** 2
    top, bottom, left, right = hole_region(mask, margin=0.0, min_margin=2 * depth + 1)
    hole = np.ascontiguousarray(mask[top:bottom, left:right])
    core = _box_sum(hole, depth) == area                                     # eroded by `depth`
    reach = _box_sum(core, depth) > 0                                        # the deep region, rim included
    ramp = np.minimum(1.0, 2 * _box_sum(reach, depth) / area)
    share[top:bottom, left:right] = np.where(reach, 1.0, ramp) * hole
    return share


def network_where_thin(network: np.ndarray, textured: np.ndarray, mask: np.ndarray,
                       depth: Optional[int] = None) -> np.ndarray:
    """Per region, what fills the hole: thin regions (texture_share 0: strokes) take the network's
    fill, where it is measured best (PSNR above Telea / Navier-Stokes), deep ones the texture
    step's (realism), blended where they meet. Known pixels are the input's in both, so unchanged.
    depth None: NETWORK_DEPTH; 0: the texture step's fill everywhere."""
    depth = NETWORK_DEPTH if depth is None else depth
    if depth <= 0:
        return textured
    weight = texture_share(mask, depth)[mask][:, None]                       # [hole pixels, 1]
    if (weight == 1).all():                                                  # no thin region: all texture
        return textured
    out = network.copy()
    blended = network[mask].astype(np.float32) * (1 - weight) + textured[mask].astype(np.float32) * weight
    out[mask] = np.round(blended).astype(np.uint8)
    return out


COMPACT_HOLE = 0.06        # depth^2 / area at or above which a hole is deep for its size (see is_object_hole)
SOLID_HOLE = 0.6           # the share of its convex hull a hole covers at or above which it is one solid shape
OBJECT_PARTS = 32          # a hole of more parts is speckle or scribbles, not objects drawn to be removed
PATCHMATCH_PIXELS = 1_000_000   # PatchMatch fills photos of up to this many pixels at full size (about 3 s here)
PATCHMATCH_SIDE = 640           # px: larger photos are filled at this long side, then brought back by texture_fill


def is_solid_shape(part: np.ndarray) -> bool:
    """Whether one connected hole part [h, w] bool (cropped to its box: what lies outside it is
    known) is a solid shape: deep for its size (depth^2 / area >= COMPACT_HOLE, depth as
    masks.hole_depth: a disc reads 0.16, a square 0.25) and filling most of its convex hull
    (masks.solidity >= SOLID_HOLE: a disc 0.98, an L of two bars 0.46)."""
    from annorm_cli.masks import hole_depth, solidity
    return hole_depth(part) ** 2 / max(int(part.sum()), 1) >= COMPACT_HOLE and solidity(part) >= SOLID_HOLE


def is_object_hole(mask: np.ndarray) -> bool:
    """Whether the hole [H, W] bool is drawn over objects to remove them: at most OBJECT_PARTS
    connected parts, every one a solid shape (is_solid_shape). Every mask of masks.object_mask
    (people, cars, signs, blobs, boxes) reads at least 0.069 and 0.77; free-form strokes (masks.random_mask) read
    0.01-0.15 and 0.15-0.72 as a whole, and 3 in 100 of the 10-20% ones, none of the larger ones,
    are solid shapes in every part (640x480, 100 seeds each)."""
    from annorm_cli.masks import hole_parts
    parts = hole_parts(mask)
    return len(parts) <= OBJECT_PARTS and all(is_solid_shape(part) for _, _, part in parts)


def patchmatch_photo(image: np.ndarray, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """PatchMatch's fill (synthesis.patchmatch_fill) of the hole, searching the whole photo (the
    hole's box alone was worse on the outside photos of the realism screen: KID 19.6 against 14.6).
    A photo of more than PATCHMATCH_PIXELS (PatchMatch alone would take over 3 s on 2 CPU cores)
    is filled at a long side of PATCHMATCH_SIDE from its known pixels (downscale_known), and that
    fill guides texture_fill back to full size, so a large photo costs about what a small one
    does. image [H, W, 3] uint8, mask [H, W] bool -> [H, W, 3] uint8; only hole pixels change."""
    from annorm_cli.synthesis import downscale_known as downscale
    from annorm_cli.synthesis import patchmatch_fill
    scale = 1.0 if mask.size <= PATCHMATCH_PIXELS else min(1.0, PATCHMATCH_SIDE / max(mask.shape))
    if scale == 1.0:
        return patchmatch_fill(image, mask, seed=seed)
    size = (max(8, round(mask.shape[0] * scale)), max(8, round(mask.shape[1] * scale)))
    hole = torch.from_numpy(np.ascontiguousarray(mask))
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()                             # [3, H, W], 0-255
    small_hole = F.interpolate(hole[None, None].float(), size=size, mode="area")[0, 0] > 0
    small = downscale(pixels, hole, size).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    proposal = torch.from_numpy(patchmatch_fill(small, small_hole.numpy(), seed=seed)).permute(2, 0, 1).float()
    guide = F.interpolate(proposal[None], size=mask.shape, mode="bilinear", align_corners=False)[0]
    guide = guide.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return texture_fill(image, mask, np.where(mask[..., None], guide, image), scale, seed)


def inpaint_array(model: torch.nn.Module, image: np.ndarray, mask: np.ndarray, *,
                  device: torch.device = torch.device("cpu"), max_side: Optional[int] = None,
                  whole_image: bool = False, match: bool = True, texture: bool = True, seed: int = 0,
                  proposal: bool = False) -> np.ndarray:
    """Fill the hole of one photo. image [H, W, 3] uint8, mask [H, W] bool (True = hole) ->
    [H, W, 3] uint8 whose pixels outside the hole are the input's, bit for bit.

    Two steps: the network's fill at a small scale (network_fill: structure and colour), then,
    with `texture`, real texture from the photo: PatchMatch's fill in an object hole
    (is_object_hole, patchmatch_photo), elsewhere texture copied in at full resolution under the
    network's guidance (texture_fill); thin regions keep the network's fill in both
    (network_where_thin). The same inputs and seed give the same bits."""
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
                                 match=match, proposal=proposal)
    if texture and not whole_image:
        textured = patchmatch_photo(image, mask, seed) if is_object_hole(mask) else \
            texture_fill(image, mask, filled, scale, seed)
        filled = network_where_thin(filled, textured, mask)
    return filled


MIN_MAX_SIDE = 16      # the network's smallest useful work side


def check_max_side(max_side) -> Optional[int]:
    """A max_side the network can work at: None (the model's work_side) or an integer >= 16."""
    if max_side is None:
        return None
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < MIN_MAX_SIDE:
        raise BadInputError(f"max_side must be an integer of at least {MIN_MAX_SIDE} or None, got {max_side!r}.")
    return int(max_side)


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
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise BadInputError(f"The image is empty ({image.shape[1]}x{image.shape[0]} pixels).")
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
    check_max_side(max_side)
    network, _ = weight_files.load(model, weights, task="inpaint")
    return inpaint_array(network, image, mask, device=resolve_device(device), max_side=max_side, texture=texture,
                         seed=seed)




def inpaint_text(model_name: str, sha256: str) -> dict[str, str]:
    """The PNG text chunks of an inpainted photo: which weights filled it."""
    from annorm_cli import __version__
    return {"annorm:model": model_name, "annorm:sha256": sha256, "annorm:version": __version__}


