"""Texture at the photo's own resolution: guided patch synthesis after the network's fill.

The network fills a hole at a small scale, where it knows the structure (which colour goes
where) but not the detail. This step copies real texture from the known pixels into the hole,
coarse to fine (Wexler et al. 2007, with PatchMatch's search, Barnes et al. 2009), guided by
the network: a source patch is chosen for how well it continues the current fill *and* for how
well its low-pass colour matches the network's fill at that spot, so the copied texture keeps
the network's layout (sky stays sky, the wall's colour does not wander into the floor).

Everything is vectorised over the hole's pixels in torch and seeded: the same input and seed
give the same bits. Only hole pixels are written.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

PATCH_RADIUS = 3                 # 7 x 7 patches
FEATURE_DIMS = 16                # PCA components of a patch (of 147) used in the search
GUIDE_WEIGHT = 1.0               # the network-guide term, relative to the mean squared patch error
MAX_TARGET_PIXELS = 150_000      # finest level synthesised; larger holes are synthesised below full size
COARSEST = 0.5                   # the coarsest level, relative to the network's scale
VOTE_WEIGHTING = 0.1             # votes weighted by exp(-cost / (VOTE_WEIGHTING * median cost)); 0: uniform
EM_STEPS = 2                     # search + vote per level (the finest: 1)
ITERATIONS = 2                   # PatchMatch rounds per search (the coarsest level: 2 x + 2)
SPLIT_VOTE = True                # detail from the best vote only (else: the weighted mean of all votes)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[C, H, W] -> [C, *size], bilinear with antialiasing."""
    if tuple(x.shape[1:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def downscale_known(image: torch.Tensor, hole: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased downscale of image [C, H, W] to `size` from its known pixels only (hole [H, W]
    bool): each small pixel averages the known pixels under its filter, so what the hole holds
    now (the object being removed) cannot bleed into the context; 0 where none is known."""
    known = (~hole).float()[None]
    weight = _resize(known, size)
    return _resize(image * known, size) / weight.clamp_min(1e-6) * (weight > 1e-6)


def _known_resize(image: torch.Tensor, hole: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(downscale_known of image [3, H, W], hole [h, w] bool: a small pixel is a hole pixel if any
    full-size hole pixel lies under it)."""
    return downscale_known(image, hole, size), _resize(hole.float()[None], size)[0] > 1e-3


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels of bool mask [H, W] whose (2r+1)^2 neighbourhood lies inside the mask and the image."""
    padded = F.pad((~mask).float()[None, None], (radius,) * 4, value=1.0)
    return F.max_pool2d(padded, 2 * radius + 1, 1)[0, 0] == 0


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask.float()[None, None], 2 * radius + 1, 1, radius)[0, 0] > 0


def _patches_at(image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, radius: int) -> torch.Tensor:
    """Patches of image [C, H, W] centred at (ys, xs) (inside after replicate padding) -> [N, C*(2r+1)^2]."""
    C, H, W = image.shape
    padded = F.pad(image[None], (radius,) * 4, mode="replicate")[0].reshape(C, -1)
    offsets = torch.arange(-radius, radius + 1)
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    index = (ys[:, None] + radius + oy.reshape(1, -1)) * (W + 2 * radius) + xs[:, None] + radius + ox.reshape(1, -1)
    return padded[:, index].permute(1, 0, 2).reshape(len(ys), -1)                 # [N, C * k * k]


def _pca_filters(image: torch.Tensor, sources: torch.Tensor, radius: int, dims: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The principal directions of the image's known patches, as conv filters [dims, C, k, k] and
    the bias that centres them [dims]: a patch's features are its coordinates in that basis."""
    ys, xs = torch.nonzero(sources, as_tuple=True)
    pick = torch.randperm(len(ys), generator=generator)[:4096]
    patches = _patches_at(image, ys[pick], xs[pick], radius)                      # [n, C k k]
    mean = patches.mean(0)
    _, _, vh = torch.linalg.svd(patches - mean, full_matrices=False)
    basis = torch.zeros(dims, patches.shape[1])
    basis[:min(dims, len(vh))] = vh[:dims]                                         # [dims, C k k]
    k = 2 * radius + 1
    return basis.reshape(dims, image.shape[0], k, k), -(basis @ mean)


def _features(image: torch.Tensor, filters: torch.Tensor, bias: torch.Tensor, radius: int) -> torch.Tensor:
    """[C, H, W] -> [dims, H, W]: each pixel's patch in the PCA basis."""
    padded = F.pad(image[None], (radius,) * 4, mode="replicate")
    return F.conv2d(padded, filters, bias)[0]


class _Search:
    """PatchMatch over one level: for every target pixel the source pixel (whose whole patch is
    known) with the nearest features, by propagation from neighbours and random search."""

    def __init__(self, features: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor) -> None:
        self.dims, self.H, self.W = features.shape
        self.table = features.reshape(self.dims, -1).T.contiguous()                # [H*W, D]
        self.sources = sources.reshape(-1)
        self.ty, self.tx = torch.nonzero(targets, as_tuple=True)                    # [Nt]
        self.query = self.table[self.ty * self.W + self.tx]                         # [Nt, D]
        self.slot = torch.full((self.H, self.W), -1, dtype=torch.long)
        self.slot[self.ty, self.tx] = torch.arange(len(self.ty))

    def cost(self, sy: torch.Tensor, sx: torch.Tensor) -> torch.Tensor:
        inside = (sy >= 0) & (sy < self.H) & (sx >= 0) & (sx < self.W)
        flat = sy.clamp(0, self.H - 1) * self.W + sx.clamp(0, self.W - 1)
        ok = inside & self.sources[flat]
        cost = ((self.table[flat] - self.query) ** 2).sum(1)
        return torch.where(ok, cost, torch.full_like(cost, float("inf")))

    def improve(self, sy, sx, best, cy, cx):
        cost = self.cost(cy, cx)
        better = cost < best
        return torch.where(better, cy, sy), torch.where(better, cx, sx), torch.where(better, cost, best)

    def run(self, sy: torch.Tensor, sx: torch.Tensor, iterations: int, generator: torch.Generator, *,
            jumps: tuple[int, ...] = (1,), search_radius: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`iterations` rounds of propagation (from the neighbours `jumps` px away) and random search
        (radii search_radius, /2, ... 1 around the current match)."""
        best = self.cost(sy, sx)
        for _ in range(iterations):
            for step in jumps:
                for dy, dx in ((step, 0), (-step, 0), (0, step), (0, -step)):
                    ny, nx = self.ty + dy, self.tx + dx                              # a neighbour ...
                    inside = (ny >= 0) & (ny < self.H) & (nx >= 0) & (nx < self.W)
                    other = self.slot[ny.clamp(0, self.H - 1), nx.clamp(0, self.W - 1)]
                    usable = inside & (other >= 0)
                    other = other.clamp_min(0)
                    cy = torch.where(usable, sy[other] - dy, torch.full_like(sy, -1))  # ... its match, shifted back
                    cx = torch.where(usable, sx[other] - dx, torch.full_like(sx, -1))
                    sy, sx, best = self.improve(sy, sx, best, cy, cx)
            radius = search_radius
            while radius >= 1:
                jy = torch.randint(-radius, radius + 1, sy.shape, generator=generator)
                jx = torch.randint(-radius, radius + 1, sx.shape, generator=generator)
                sy, sx, best = self.improve(sy, sx, best, sy + jy, sx + jx)
                radius //= 2
        return sy, sx, best


def _split(source: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """source [C, H, W] -> (low: the 3x3 mean of the known pixels, detail: source - low)."""
    known = (~hole).float()[None, None]
    total = F.avg_pool2d(source[None] * known, 3, 1, 1, count_include_pad=False)
    count = F.avg_pool2d(known, 3, 1, 1, count_include_pad=False)
    low = (total / count.clamp_min(1e-6))[0]
    return low, source - low


def _vote(source: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor, sy: torch.Tensor, sx: torch.Tensor,
          hole: torch.Tensor, radius: int, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Each hole pixel p from the patches covering it: for every target q within `radius` of p,
    the source pixel match(q) + (p - q) votes (sources' patches lie inside the image). A split
    vote, as PyPatchMatch casts them: the low frequencies (3x3 means) are averaged over the votes,
    weighted by each match's `weight`, and the detail comes from the single best vote, so
    overlapping patches that disagree do not blur the texture. -> image [C, H, W], hole replaced."""
    C, H, W = source.shape
    Wp = W + 2 * radius
    match = torch.full(((H + 2 * radius) * Wp,), -1, dtype=torch.long)           # flat source index per target
    match[(ty + radius) * Wp + tx + radius] = sy * W + sx
    weights = torch.zeros(match.shape)
    weights[(ty + radius) * Wp + tx + radius] = 1.0 if weight is None else weight
    low, detail = _split(source, hole)
    split = torch.cat([low, detail]).reshape(2 * C, -1)                            # [2C, H*W]
    py, px = torch.nonzero(hole, as_tuple=True)
    here = (py + radius) * Wp + px + radius                                        # [n] in the padded grid
    total, count = torch.zeros(C, len(py)), torch.zeros(len(py))
    best_detail, best_weight = torch.zeros(C, len(py)), torch.full((len(py),), -1.0)
    for oy in range(-radius, radius + 1):
        for ox in range(-radius, radius + 1):
            voter = here - (oy * Wp + ox)                                          # q = p - offset
            matched = match[voter]
            w = weights[voter] * (matched >= 0)
            values = split[:, (matched + oy * W + ox).clamp(0, H * W - 1)]        # [2C, n]
            total += values[:C] * w
            count += w
            ranked = w * (1 - 1e-5 * (oy * oy + ox * ox))        # near ties: the patch centred closest
            better = ranked > best_weight
            best_weight = torch.where(better, ranked, best_weight)
            best_detail = torch.where(better, values[C:], best_detail)
    out = source.clone()
    if not SPLIT_VOTE:
        total, count = torch.zeros(C, len(py)), torch.zeros(len(py))
        for oy in range(-radius, radius + 1):
            for ox in range(-radius, radius + 1):
                voter = here - (oy * Wp + ox)
                matched = match[voter]
                w = weights[voter] * (matched >= 0)
                total += source.reshape(C, -1)[:, (matched + oy * W + ox).clamp(0, H * W - 1)] * w
                count += w
        best_detail = 0
    out[:, py, px] = total / count.clamp_min(1e-12) + best_detail
    return out


def _level_sizes(H: int, W: int, hole_pixels: int, start_scale: float) -> list[tuple[int, int]]:
    """Sizes from the network's scale up to full size in steps of 2, the finest capped so the hole
    has at most MAX_TARGET_PIXELS."""
    finest = min(1.0, math.sqrt(MAX_TARGET_PIXELS / max(hole_pixels, 1)))
    scales = [min(start_scale, finest)]
    while scales[-1] < finest:
        scales.append(min(finest, scales[-1] * 2))
        if len(scales) > 2 and scales[-1] < 1.5 * scales[-2]:      # no level of less than 1.5x
            del scales[-2]
    return [(max(8, round(H * s)), max(8, round(W * s))) for s in scales]


def _upscale_matches(matches: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor,
                     size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The coarser level's matches [2, h, w] (-1: none) carried to this level's targets (ty, tx):
    a target takes its coarse pixel's match, scaled, plus its own offset inside that pixel; a
    target without one points at itself (not a source, so the search replaces it)."""
    h, w = matches.shape[1:]
    fy = (ty * h // size[0]).clamp(0, h - 1)
    fx = (tx * w // size[1]).clamp(0, w - 1)
    my, mx = matches[0, fy, fx], matches[1, fy, fx]
    sy = my * size[0] // h + ty - fy * size[0] // h
    sx = mx * size[1] // w + tx - fx * size[1] // w
    found = my >= 0
    return (torch.where(found, sy, ty).clamp(0, size[0] - 1),           # inside the image; the search
            torch.where(found, sx, tx).clamp(0, size[1] - 1))           # replaces what is not a source


class _Level:
    """One level of the pyramid: the photo's known pixels at `size`, its hole, the pixels whose
    whole patch is known (sources), those whose patch touches the hole (targets), and the PCA
    basis of its known patches."""

    def __init__(self, image: torch.Tensor, hole: torch.Tensor, size: tuple[int, int], generator: torch.Generator):
        self.source, self.hole = _known_resize(image, hole, size)
        self.sources = _erode(~self.hole, PATCH_RADIUS)
        if not self.sources.any():                      # a tiny photo: patches that reach the border will do
            self.sources = ~self.hole
        self.targets = _dilate(self.hole, PATCH_RADIUS) & ~self.sources
        self.ty, self.tx = torch.nonzero(self.targets, as_tuple=True)
        self.basis = _pca_filters(self.source, self.sources, PATCH_RADIUS, FEATURE_DIMS, generator)

    def search(self, features: torch.Tensor, sy: torch.Tensor, sx: torch.Tensor, rounds: int,
               generator: torch.Generator, jumps=(1,), search_radius: int = 4):
        return _Search(features, self.sources, self.targets).run(sy, sx, rounds, generator, jumps=jumps,
                                                                search_radius=search_radius)

    def copy(self, sy: torch.Tensor, sx: torch.Tensor) -> torch.Tensor:
        """The image [3, h, w] with each hole pixel copied from its own match (a quick first estimate)."""
        out = self.source.clone()
        inside = self.hole[self.ty, self.tx]
        out[:, self.ty[inside], self.tx[inside]] = self.source[:, sy[inside], sx[inside]]
        return out

    def vote(self, sy: torch.Tensor, sx: torch.Tensor, cost: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The image [3, h, w] with its hole rebuilt from the matches (weighted by their cost if given)."""
        weight = None
        if cost is not None and VOTE_WEIGHTING > 0:
            weight = torch.exp(-(cost / (VOTE_WEIGHTING * cost.median().clamp_min(1e-6))).clamp(max=20))
        return _vote(self.source, self.ty, self.tx, sy, sx, self.hole, PATCH_RADIUS, weight)


@torch.no_grad()
def synthesize(image: torch.Tensor, hole: torch.Tensor, guide: torch.Tensor, start_scale: float, *,
               seed: int = 0) -> torch.Tensor:
    """Fill hole [H, W] (bool) of image [3, H, W] (float, 0-255) with texture copied from its known
    pixels, guided by guide [3, H, W] (the network's fill at full size; only its low pass at
    `start_scale`, the scale the network filled at, is used). Returns [3, H, W] float with the
    known pixels unchanged.

    Levels from COARSEST x start_scale up to full size (see _level_sizes). On the coarsest, the
    matches are found between the low-pass composite (network fill in the hole) and the low-pass
    photo: the network decides where each part of the hole copies from; the estimate is then built
    from sharp pixels. On every level, EM_STEPS rounds of search (patch features of the current
    estimate + GUIDE_WEIGHT x the network's low-pass colour) and voting; a finer level starts from
    the coarser matches, scaled up, and rebuilds its estimate from its own pixels."""
    generator = torch.Generator().manual_seed(int(seed))
    H, W = hole.shape
    composite = torch.where(hole[None], guide, image)
    network_size = (max(4, round(H * start_scale)), max(4, round(W * start_scale)))
    low_pass = _resize(_resize(composite, network_size), (H, W))                   # [3, H, W]
    guide_scale = math.sqrt(GUIDE_WEIGHT * (2 * PATCH_RADIUS + 1) ** 2)
    sizes = _level_sizes(H, W, int(hole.sum()), start_scale * COARSEST)
    level = None
    for size in sizes:
        coarser, level = level, _Level(image, hole, size, generator)
        structure = _resize(low_pass, size)                                         # [3, h, w]
        if coarser is None:              # random matches, improved on the low-pass pictures alone
            sources_y, sources_x = torch.nonzero(level.sources, as_tuple=True)
            pick = torch.randint(len(sources_y), level.ty.shape, generator=generator)
            sy, sx = sources_y[pick], sources_x[pick]
            low_basis = _pca_filters(structure, level.sources, PATCH_RADIUS, FEATURE_DIMS, generator)
            wide = dict(jumps=(8, 4, 2, 1), search_radius=max(size))
            sy, sx, _ = level.search(_features(structure, *low_basis, PATCH_RADIUS), sy, sx,
                                     2 * ITERATIONS + 2, generator, **wide)
        else:                            # the coarser matches, scaled up
            sy, sx = _upscale_matches(coarser.matches, level.ty, level.tx, size)
            wide = {}
        estimate = level.copy(sy, sx)
        for step in range(EM_STEPS if size != sizes[-1] else 1):
            features = torch.cat([_features(estimate, *level.basis, PATCH_RADIUS), guide_scale * structure])
            rounds = 2 * ITERATIONS + 2 if wide and step == 0 else ITERATIONS
            sy, sx, cost = level.search(features, sy, sx, rounds, generator, **(wide if step == 0 else {}))
            estimate = level.vote(sy, sx, cost)
        level.matches = torch.full((2, *size), -1, dtype=torch.long)
        level.matches[0, level.ty, level.tx], level.matches[1, level.ty, level.tx] = sy, sx
    if tuple(estimate.shape[1:]) != (H, W):
        estimate = F.interpolate(estimate[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    return torch.where(hole[None], estimate, image)


def patchmatch_fill(image, mask, seed: int = 0, patch_size: int = 3):
    """PatchMatch inpainting (Barnes et al. 2009; the pypatchmatch package, patch size 3: its best
    setting on this project's screens) of an RGB uint8 image [H, W, 3] with bool mask [H, W]:
    the baseline of `annorm evaluate inpaint` and the proposal the network refines
    (`train inpaint --proposal patchmatch`). Seeded: every fill's random search starts from `seed`."""
    import numpy as np

    from annorm_cli.errors import AnnormError
    try:
        import patchmatch
    except ImportError:
        patchmatch = None
    if patchmatch is None or not patchmatch.patchmatch_available:
        raise AnnormError("PatchMatch needs pypatchmatch (a dependency of annorm): pip install 'pypatchmatch>=2.2'.")
    patchmatch.set_random_seed(seed)
    return patchmatch.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8), patch_size=patch_size)

