"""Two screens of 2026-12-03 (session 2), objects bucket against PatchMatch (README, Inpaint):

1. How far selection could go: PatchMatch with 4 seeds and patch radii 3 / 5 / 7 / 11 / 15, the
   shipped fill and the network's smooth fill, each scored alone, and the best candidate per hole
   picked *with the truth* (the smallest Inception feature distance to the original crop): a
   ceiling for any critic that picks among these fills.
2. A different design, not a tuning: statistics of patch offsets (He and Sun 2012). The dominant
   offsets between similar known patches (7 x 7, PCA to 24 dimensions, offsets shorter than 1/15
   of the region left out, histogram smoothed, 48 peaks) label the hole's pixels (shift-map, min-sum
   loopy BP, 25 rounds, at a work side of 96 px), optionally with the network's fill as a data
   term; the labels are upsampled, the copies pasted at full resolution and the seam error on the
   known ring diffused in (pull-push).

Masks, photos and crops as docs/experiments/texture_candidates.py (52 fills: masks 0-1 of the first
16 held-out photos and of a folder of outside photos, every photo at a long side of 640 px).

    python docs/experiments/offset_statistics.py OUTSIDE_PHOTOS_DIR [--scenes ../shared/data/scenes]

Takes about 45 minutes on 2 CPU cores (PatchMatch at radius 15 alone: 11 minutes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from texture_candidates import crop_features, screen_holes  # noqa: E402

from annorm_cli import pipelines  # noqa: E402
from annorm_cli import weights as weight_files  # noqa: E402
from annorm_cli.evaluate import perceptual as p  # noqa: E402
from annorm_cli.evaluate.fid import load_inception  # noqa: E402
from annorm_cli.evaluate.inpainting import patchmatch_inpaint, psnr_in_hole  # noqa: E402
from annorm_cli.pipelines.inpainting import hole_region, network_fill, pull_push  # noqa: E402
from annorm_cli.synthesis import downscale_known  # noqa: E402

INF = 1e4


def dominant_offsets(img, hole, K=48, radius=3, queries=4000, tau_frac=1 / 15, seed=0):
    """img [3,h,w] float 0-255, hole [h,w] bool -> offsets [K, 2] (dy, dx) ints."""
    C, h, w = img.shape
    known_centre = F.max_pool2d(hole.float()[None, None], 2 * radius + 1, 1, radius)[0, 0] == 0
    border = torch.zeros_like(known_centre)
    border[radius:h - radius, radius:w - radius] = True
    centres = torch.nonzero(known_centre & border)                       # [N, 2]
    if len(centres) < 10:
        return torch.zeros(0, 2, dtype=torch.long)
    patches = F.unfold(img[None], 2 * radius + 1, padding=radius)[0].T.view(h, w, -1)   # [h, w, 147]
    feats = patches[centres[:, 0], centres[:, 1]]                         # [N, 147]
    feats = feats - feats.mean(0)
    _, _, v = torch.pca_lowrank(feats, q=min(24, feats.shape[1]), center=False)
    feats = feats @ v                                                     # [N, 24]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(centres), generator=g)[:queries]
    q = feats[pick]
    d = torch.cdist(q, feats)                                             # [Q, N]
    delta = centres[None, :, :] - centres[pick][:, None, :]               # [Q, N, 2]
    tau = max(3.0, tau_frac * max(h, w))
    near = (delta.float().norm(dim=2) < tau)
    d[near] = float("inf")
    best = d.argmin(1)
    off = delta[torch.arange(len(pick)), best]                            # [Q, 2]
    hist = torch.zeros(2 * h + 1, 2 * w + 1)
    hist.index_put_((off[:, 0] + h, off[:, 1] + w), torch.ones(len(off)), accumulate=True)
    kernel = torch.exp(-torch.arange(-3, 4).float() ** 2 / (2 * 2.0))
    kernel = kernel / kernel.sum()
    sm = F.conv2d(hist[None, None], kernel.view(1, 1, 1, 7), padding=(0, 3))
    sm = F.conv2d(sm, kernel.view(1, 1, 7, 1), padding=(3, 0))[0, 0]
    peaks = (sm == F.max_pool2d(sm[None, None], 5, 1, 2)[0, 0]) & (sm > 0)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    order = torch.argsort(-sm[ys, xs], stable=True)[:K]
    return torch.stack([ys[order] - h, xs[order] - w], 1)


def label_bp(img, hole, offsets, guide=None, guide_weight=0.0, iterations=40, damping=0.5):
    """Shift-map labelling of the hole pixels by min-sum loopy BP. Returns labels [P] and node coords [P,2]."""
    C, h, w = img.shape
    nodes = torch.nonzero(hole)                                           # [P, 2]
    P, K = len(nodes), len(offsets)
    index = torch.full((h, w), -1, dtype=torch.long)
    index[nodes[:, 0], nodes[:, 1]] = torch.arange(P)
    flat = img.permute(1, 2, 0)                                           # [h, w, 3]

    def sample(points):                                                   # points [M, 2] -> vals [M, K, 3], valid [M, K]
        src = points[:, None, :] + offsets[None]                          # [M, K, 2]
        inside = (src[..., 0] >= 0) & (src[..., 0] < h) & (src[..., 1] >= 0) & (src[..., 1] < w)
        sy, sx = src[..., 0].clamp(0, h - 1), src[..., 1].clamp(0, w - 1)
        valid = inside & ~hole[sy, sx]
        return flat[sy, sx], valid

    vals, valid = sample(nodes)
    unary = torch.where(valid, 0.0, INF)                                  # [P, K]
    if guide is not None and guide_weight > 0:
        g = guide.permute(1, 2, 0)[nodes[:, 0], nodes[:, 1]]              # [P, 3]
        unary = unary + guide_weight * ((vals - g[:, None]) ** 2).sum(-1) / 3
    # known neighbours: the copy's neighbour should equal the real neighbour
    pair_p, pair_q = [], []
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        ny, nx = nodes[:, 0] + dy, nodes[:, 1] + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        ny, nx = ny.clamp(0, h - 1), nx.clamp(0, w - 1)
        known_nb = ok & ~hole[ny, nx]
        if known_nb.any():
            pts = torch.stack([ny[known_nb], nx[known_nb]], 1)
            nv, nvalid = sample(pts)
            cost = ((nv - flat[pts[:, 0], pts[:, 1]][:, None]) ** 2).sum(-1)
            cost = torch.where(nvalid, cost, INF)
            unary.index_add_(0, torch.nonzero(known_nb)[:, 0], cost)
        if dy >= 0 and dx >= 0:
            hole_nb = ok & hole[ny, nx]
            pair_p.append(torch.nonzero(hole_nb)[:, 0])
            pair_q.append(index[ny[hole_nb], nx[hole_nb]])
    pp, qq = torch.cat(pair_p), torch.cat(pair_q)                         # undirected edges [E]
    V = torch.cdist(vals[pp], vals[pp]) ** 2 + torch.cdist(vals[qq], vals[qq]) ** 2   # [E, K, K]
    V = V.clamp_max(INF)
    src = torch.cat([pp, qq]); dst = torch.cat([qq, pp])                  # directed [2E]
    Vd = torch.cat([V, V.transpose(1, 2)])                                # Vd[e, a(src), b(dst)]
    E2 = len(src)
    reverse = torch.cat([torch.arange(E2 // 2) + E2 // 2, torch.arange(E2 // 2)])
    msg = torch.zeros(E2, K)
    for _ in range(iterations):
        belief = unary.clone().index_add_(0, dst, msg)                    # [P, K]
        hvec = belief[src] - msg[reverse]                                 # [E2, K]
        new = (hvec[:, :, None] + Vd).amin(1)                             # [E2, K]
        new = new - new.amin(1, keepdim=True)
        msg = damping * msg + (1 - damping) * new
    belief = unary.clone().index_add_(0, dst, msg)
    return belief.argmin(1), nodes


def shiftmap_fill(image, mask, guide=None, guide_weight=0.0, work_side=128, K=48, seed=0, iterations=40):
    """image [H,W,3] uint8, mask [H,W] bool -> [H,W,3] uint8."""
    top, bottom, left, right = hole_region(mask, margin=1.0, min_margin=48)
    region = torch.from_numpy(image[top:bottom, left:right].copy()).permute(2, 0, 1).float()
    hole = torch.from_numpy(mask[top:bottom, left:right].copy())
    H, W = hole.shape
    s = min(1.0, work_side / max(H, W))
    size = (max(8, round(H * s)), max(8, round(W * s)))
    small = downscale_known(region, hole, size)
    small_hole = F.interpolate(hole.float()[None, None], size=size, mode="area")[0, 0] > 0
    offsets = dominant_offsets(small, small_hole, K=K, seed=seed)
    g = None
    if guide is not None:
        g = torch.from_numpy(guide[top:bottom, left:right].copy()).permute(2, 0, 1).float()
        g = F.interpolate(g[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    labels, nodes = label_bp(small, small_hole, offsets, g, guide_weight, iterations)
    # label map at small scale, extended to every pixel by nearest hole node (for the seam ring)
    lab = torch.full(size, -1, dtype=torch.long)
    lab[nodes[:, 0], nodes[:, 1]] = labels
    # propagate labels outward a few px so the ring around the hole has one
    for _ in range(3):
        missing = lab < 0
        padded = F.pad(lab[None, None].float(), (1, 1, 1, 1), value=-1)[0, 0]
        cand = torch.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]).max(0).values.long()
        lab = torch.where(missing, cand, lab)
    full_lab = F.interpolate(lab[None, None].float(), size=(H, W), mode="nearest")[0, 0].long()
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    off_full = torch.zeros(H, W, 2)
    has = full_lab >= 0
    sc = torch.tensor([H / size[0], W / size[1]])
    off_full[has] = offsets[full_lab[has]].float() * sc
    sy = (ys + off_full[..., 0].round().long()).clamp(0, H - 1)
    sx = (xs + off_full[..., 1].round().long()).clamp(0, W - 1)
    ok = has & ~hole[sy, sx]
    copy = region[:, sy, sx]                                              # [3, H, W]
    # seam correction: error on known pixels of the ring, diffused into the hole (pull-push)
    ring = has & ~hole & ok
    err = torch.where(ring, region - copy, torch.zeros_like(region))
    corr = pull_push(err[None], ring.float()[None, None])[0]
    filled_vals = copy + corr
    bad = hole & ~ok                                                      # no valid source: pull-push of known colours
    if bad.any():
        fallback = pull_push(region[None], (~hole).float()[None, None])[0]
        filled_vals = torch.where(bad[None], fallback, filled_vals)
    out = image.copy()
    window = out[top:bottom, left:right]
    window[mask[top:bottom, left:right]] = filled_vals.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()[hole.numpy()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outside", type=Path)
    parser.add_argument("--scenes", type=Path, default=Path("../shared/data/scenes"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    photos, masks, groups, _ = screen_holes(args.outside, args.scenes)
    inception = load_inception()
    network, _ = weight_files.load(None, None, task="inpaint")
    fills = {f"PatchMatch r3 seed {s}": (lambda ph, h, s=s: patchmatch_inpaint(ph, h, seed=s)) for s in range(4)}
    fills.update({f"PatchMatch r{r}": (lambda ph, h, r=r: patchmatch_inpaint(ph, h, patch_size=r)) for r in (5, 7, 11, 15)})
    fills["annorm (shipped)"] = lambda ph, h: pipelines.inpaint_array(network, ph, h)
    fills["network alone"] = lambda ph, h: network_fill(network, ph, h)[0]
    fills["offset statistics"] = lambda ph, h: shiftmap_fill(ph, h, work_side=96, iterations=25)
    fills["offset statistics + network"] = lambda ph, h: shiftmap_fill(
        ph, h, guide=network_fill(network, ph, h)[0], guide_weight=0.3, work_side=96, iterations=25)

    features = lambda image, hole: crop_features(image, hole, inception)  # noqa: E731
    original = np.stack([features(photos[i], m) for i, m in masks])
    scores = {}
    for name, fill in fills.items():
        outs = [fill(photos[i], m) for i, m in masks]
        scores[name] = (np.stack([features(o, m) for o, (_, m) in zip(outs, masks)]),
                        np.array([psnr_in_hole(o, photos[i], m) for o, (i, m) in zip(outs, masks)]))
    candidates = [n for n in scores if not n.startswith("offset")]
    distance = np.stack([((scores[n][0] - original) ** 2).sum(1) for n in candidates])      # [candidates, fills]
    pick = distance.argmin(0)
    scores["best of the above per hole, picked with the truth"] = (
        np.stack([scores[candidates[c]][0][k] for k, c in enumerate(pick)]),
        np.array([scores[candidates[c]][1][k] for k, c in enumerate(pick)]))
    folds = {name: p.kid_per_fold(f, original, groups, 10) for name, (f, _) in scores.items()}
    for name, (_, psnr) in scores.items():
        kid, se = p.mean_and_error(folds[name])
        diff, diff_se = p.mean_and_error(folds[name] - folds["PatchMatch r3 seed 0"])
        print(f"{name:50s} KID {1000 * kid:5.1f} ± {1000 * se:4.1f}   minus PatchMatch {1000 * diff:+5.1f} ± "
              f"{1000 * diff_se:4.1f}   PSNR {psnr.mean():5.2f}")


if __name__ == "__main__":
    main()
