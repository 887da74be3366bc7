"""The realism screen of the inpainting fine-tune (issue 33; docs/models/scenes-inpaint-an.md).

Holes: the objects bucket (masks 0 and 1) and the 10-20% and 30-40% stroke buckets (mask 0) of
`annorm_cli.evaluate.inpainting.evaluation_masks`, on the first 16 photos of the held-out list and
on a folder of outside photos, every photo downscaled to a long side of 640 px (Lanczos): 52
object holes and 52 stroke holes. Measures: KID x 1000 of the square crops around each hole
against the same crops of the original (as `annorm evaluate inpaint` makes them), mean and
standard error over folds of photos, the paired difference to PatchMatch (pypatchmatch, patch
size 3, seed 0: its best setting on this screen), and PSNR in the hole. A screen for candidates,
not the shipped protocol (that is `annorm evaluate inpaint`).

    python docs/experiments/realism_screen.py OUTSIDE_DIR --candidate shipped=weights/scenes-inpaint-an.safetensors \\
        --candidate ft=RUN.safetensors:32 --candidate ft-texture=RUN.safetensors:32:texture --strip strip.png

A candidate is NAME=WEIGHTS[:DEPTH[:texture|notexture[:THIN[:proposal]]]]: the network fills at a
scale where the hole is at most DEPTH px deep (the pipeline's DEEPEST_HOLE), refining PatchMatch's
fill at that scale if `proposal` is named, then the texture step if named, which keeps the
network's fill in thin regions (NETWORK_DEPTH, default 0: texture everywhere); a candidate with
no suffix is the pipeline as it stands. Prototypes of the PatchMatch-first forms (2026-12-06):
WEIGHTS:corrected[:BLUR[:thin]] (PatchMatch at full size plus the proposal network's correction
at its scale, blurred by BLUR px; BLUR inf: PatchMatch alone; thin: the network's fill in thin
regions), WEIGHTS:layered:D (the pipeline's fill, PatchMatch's in regions deeper than D) and
WEIGHTS:compact:C:D (layered:D for holes with depth^2 / area >= C, else the pipeline). Since
2026-12-06 (third session): WEIGHTS:lowpass:BLUR:objects|strokes|all (the pipeline's PatchMatch or
texture fill taking the network's low frequencies: plus the Gaussian of BLUR px at the network's
scale of the network's fill minus it, in object holes, other holes or both). Baseline fills and the originals'
features are cached in --cache (keyed by the photo set), so a screen of one checkpoint costs only
its own fills.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from annorm_cli import pipelines
from annorm_cli import weights as weight_files
from annorm_cli.datasets import holdout_list, load_photos
from annorm_cli.evaluate import perceptual as p
from annorm_cli.evaluate.fid import inception_features, load_inception
from annorm_cli.evaluate.inpainting import baseline_fill, evaluation_masks, psnr_in_hole
from annorm_cli.images import make_grid, save_png
from annorm_cli.pipelines import inpainting as inpainting_pipeline

BASELINES = ("patchmatch", "telea", "ns")
STROKE_BUCKETS = ("10-20%", "30-40%")


def shrink(photo: np.ndarray, side: int = 640) -> np.ndarray:
    image = Image.fromarray(photo)
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    return np.asarray(image)


def screen_holes(outside: Path, scenes: Path) -> tuple[list[np.ndarray], list[tuple[int, str, np.ndarray]], int]:
    """(photos: the first 16 held-out ones then the outside folder's, at 640 px; holes as
    (photo index, "objects" | "strokes", mask); how many photos are held-out ones)."""
    held = [shrink(t.permute(1, 2, 0).numpy()) for t in load_photos(scenes, holdout_list()[:16]).values()]
    photos = held + [shrink(np.asarray(Image.open(f).convert("RGB"))) for f in sorted(outside.iterdir())]
    holes = [(i, "objects", m) for i, photo in enumerate(photos) for m in evaluation_masks(photo, "objects", i, 2)]
    holes += [(i, "strokes", evaluation_masks(photo, bucket, i, 1)[0])
              for bucket in STROKE_BUCKETS for i, photo in enumerate(photos)]
    return photos, holes, len(held)


def crop_features(images: list[np.ndarray], holes: list[np.ndarray], inception) -> np.ndarray:
    """Inception features [n, 2048] of the square crop around each hole."""
    crops = np.stack([p.hole_crop(image, p.hole_crop_box(hole)) for image, hole in zip(images, holes)])
    return np.concatenate([inception_features(crops[i:i + 16], inception) for i in range(0, len(crops), 16)])


@torch.no_grad()
def corrected_patchmatch(network, photo: np.ndarray, hole: np.ndarray, blur: float = 0.0) -> np.ndarray:
    """PatchMatch's fill at full resolution plus the network's correction at its scale: the hole's
    region downscaled as network_fill does, PatchMatch's full-resolution fill area-downscaled as
    the proposal, and (refined - proposal), optionally smoothed by a Gaussian of `blur` px over
    the hole at that scale (low_pass_in_hole, as `train inpaint --correction-blur` trains it; a
    plain blur before 2026-12-06, third session), upsampled and added. Where the network works at full scale (strokes) this is its refinement."""
    import torch.nn.functional as F
    from annorm_cli.models.inpainting import MULTIPLE
    from annorm_cli.synthesis import patchmatch_fill
    ip = inpainting_pipeline
    proposal_full = patchmatch_fill(photo, hole, seed=0)
    top, bottom, left, right = ip.hole_region(hole)
    as_tensor = lambda a: torch.from_numpy(np.array(a[top:bottom, left:right])).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
    region, proposal = as_tensor(photo), as_tensor(proposal_full)
    region_hole = torch.from_numpy(hole[top:bottom, left:right])[None, None].float()
    size = region.shape[2:]
    scale = ip.network_scale(network, hole, max(size), None)
    x, m, p_small = region, region_hole, proposal
    if scale < 1.0:
        small = [max(MULTIPLE, round(s * scale)) for s in size]
        x = ip.downscale_known(region, region_hole, small)
        m = (F.interpolate(region_hole, size=small, mode="area") > 0).float()
        p_small = F.interpolate(proposal, size=small, mode="area")
    xp, H, W = ip._pad_to_multiple(x, MULTIPLE)
    mp, _, _ = ip._pad_to_multiple(m, MULTIPLE)
    pp, _, _ = ip._pad_to_multiple(p_small, MULTIPLE)
    _, refined = network.eval()(xp, mp, pp)
    delta = ip.low_pass_in_hole(refined[:, :, :H, :W] - p_small, m, blur)     # as `--correction-blur` trains it
    if scale < 1.0:
        delta = F.interpolate(delta, size=size, mode="bilinear", align_corners=False)
    out_region = ((proposal + delta).clamp(-1, 1) + 1) * 127.5
    out = photo.copy()
    window, window_mask = out[top:bottom, left:right], hole[top:bottom, left:right]
    window[window_mask] = out_region.round().to(torch.uint8)[0].permute(1, 2, 0).numpy()[window_mask]
    return out


def low_pass_from(base: np.ndarray, guide: np.ndarray, hole: np.ndarray, sigma: float) -> np.ndarray:
    """base's fill with its low frequencies replaced by guide's: base + the Gaussian of `sigma` px
    of (guide - base) over the hole (low_pass_in_hole, at full resolution). [H, W, 3] uint8 each;
    only hole pixels change."""
    r = max(1, int(3 * sigma))
    top, bottom, left, right = inpainting_pipeline.hole_region(hole, margin=0.0, min_margin=r)
    as_tensor = lambda a: torch.from_numpy(a[top:bottom, left:right].astype(np.float32)).permute(2, 0, 1)[None]  # noqa: E731
    m = torch.from_numpy(np.ascontiguousarray(hole[top:bottom, left:right]))[None, None].float()
    moved = as_tensor(base) + inpainting_pipeline.low_pass_in_hole(as_tensor(guide) - as_tensor(base), m, sigma)
    out = base.copy()
    window, window_mask = out[top:bottom, left:right], hole[top:bottom, left:right]
    window[window_mask] = moved.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()[window_mask]
    return out


def candidate_fill(spec: str):
    """NAME=WEIGHTS[:DEPTH[:texture[:THIN]]] -> (name, fill(photo, hole)): the network fills at
    most DEPTH px deep (the pipeline's DEEPEST_HOLE), then the texture step if named, whose fill
    gives way to the network's within THIN px of known pixels (NETWORK_DEPTH; default 0: texture
    everywhere). No suffix: the pipeline as it stands."""
    name, _, rest = spec.partition("=")
    parts = rest.split(":")
    network, _ = weight_files.load(None, parts[0], task="inpaint")
    if len(parts) == 1:
        return name, lambda photo, hole: pipelines.inpaint_array(network, photo, hole)
    if parts[1] == "layered":                          # WEIGHTS:layered:D: PatchMatch in regions deeper than D
        depth = int(parts[2])

        def layered(photo, hole):
            from annorm_cli.synthesis import patchmatch_fill
            share = inpainting_pipeline.texture_share(hole, depth)[..., None]
            pipeline = pipelines.inpaint_array(network, photo, hole).astype(np.float32)
            deep = patchmatch_fill(photo, hole, seed=0).astype(np.float32)
            return np.round(pipeline * (1 - share) + deep * share).astype(np.uint8)
        return name, layered
    if parts[1] in ("pm", "pmphoto"):                  # WEIGHTS:pm:SEED / pmphoto:SEED: PatchMatch alone: pypatchmatch / the pipeline's patchmatch_photo
        seed = int(parts[2])
        if parts[1] == "pm":
            from annorm_cli.synthesis import patchmatch_fill
            return name, lambda photo, hole: patchmatch_fill(photo, hole, seed=seed)
        return name, lambda photo, hole: inpainting_pipeline.patchmatch_photo(photo, hole, seed)
    if parts[1] == "compact":                          # WEIGHTS:compact:C:D: layered:D for holes with depth^2/area >= C
        threshold, depth = float(parts[2]), int(parts[3])
        _, layered = candidate_fill(f"{name}={parts[0]}:layered:{depth}")

        def per_hole(photo, hole):
            from annorm_cli.masks import hole_depth
            if hole_depth(hole) ** 2 / hole.sum() >= threshold:
                return layered(photo, hole)
            return pipelines.inpaint_array(network, photo, hole)
        return name, per_hole
    if parts[1] == "lowpass":                          # WEIGHTS:lowpass:BLUR:objects|strokes|all
        blur, which = float(parts[2]), parts[3]

        def lowpass(photo, hole):
            ip = inpainting_pipeline
            filled, scale = ip.network_fill(network, photo, hole)
            is_object = ip.is_object_hole(hole)
            textured = ip.patchmatch_photo(photo, hole, 0) if is_object else ip.texture_fill(photo, hole, filled, scale, 0)
            if which == "all" or (which == "objects") == is_object:
                textured = low_pass_from(textured, filled, hole, blur / scale)
            return ip.network_where_thin(filled, textured, hole)
        return name, lowpass
    if parts[1] == "corrected":                        # WEIGHTS:corrected[:BLUR[:thin]]; BLUR inf: PatchMatch alone
        blur = float(parts[2]) if len(parts) > 2 else 0.0

        def fill(photo, hole):
            from annorm_cli.synthesis import patchmatch_fill
            deep = patchmatch_fill(photo, hole, seed=0) if blur == float("inf") else \
                corrected_patchmatch(network, photo, hole, blur)
            if "thin" not in parts:
                return deep
            thin, _ = inpainting_pipeline.network_fill(network, photo, hole, proposal=True)
            return inpainting_pipeline.network_where_thin(thin, deep, hole)
        return name, fill
    constants = {"DEEPEST_HOLE": int(parts[1]), "NETWORK_DEPTH": int(parts[3]) if len(parts) > 3 else 0,
                 "COMPACT_HOLE": float("inf")}         # the texture step in every hole, as before PatchMatch took objects
    texture = len(parts) > 2 and parts[2] == "texture"
    proposal = "proposal" in parts                     # the network refines PatchMatch's fill at its scale

    def fill(photo, hole):
        saved = {key: getattr(inpainting_pipeline, key) for key in constants}
        for key, value in constants.items():
            setattr(inpainting_pipeline, key, value)
        try:
            return pipelines.inpaint_array(network, photo, hole, texture=texture, proposal=proposal)
        finally:
            for key, value in saved.items():
                setattr(inpainting_pipeline, key, value)
    return name, fill


def cached(path: Path, compute):
    if path.is_file():
        return dict(np.load(path))
    values = compute()
    np.savez_compressed(path, **values)
    return values


def report(scores: dict, original: np.ndarray, groups: np.ndarray, kinds: np.ndarray, n_held: int) -> None:
    for kind in ("objects", "strokes"):
        for subset, keep in (("held-out", groups < n_held), ("outside", groups >= n_held), ("all", groups >= 0)):
            keep = keep & (kinds == kind)
            n_folds = min(10, len(set(groups[keep].tolist())) // 2)
            folds = {name: p.kid_per_fold(f[keep], original[keep], groups[keep], n_folds)
                     for name, (f, _) in scores.items()}
            print(f"{kind}, {subset} ({keep.sum()} holes)")
            for name, (_, psnr) in scores.items():
                kid, se = p.mean_and_error(folds[name])
                diff, diff_se = p.mean_and_error(folds[name] - folds["patchmatch"])
                print(f"  {name:24s} KID {1000 * kid:5.1f} ± {1000 * se:4.1f}   minus PatchMatch "
                      f"{1000 * diff:+5.1f} ± {1000 * diff_se:4.1f}   PSNR {psnr[keep].mean():6.2f}")


def strip(photos, holes, fills: dict[str, list[np.ndarray]], path: Path, rows: int = 10, side: int = 192) -> None:
    """One row per object hole (every fifth, so both photo sets show): the hole, each fill, the truth."""
    picked = [k for k, (_, kind, _) in enumerate(holes) if kind == "objects"][::5][:rows]
    tiles = []
    for k in picked:
        i, _, hole = holes[k]
        box = p.hole_crop_box(hole)
        shown = np.where(hole[..., None], np.uint8(255), photos[i])
        tiles += [p.hole_crop(a, box, side) for a in (shown, *(f[k] for f in fills.values()), photos[i])]
    grid = make_grid(np.stack(tiles), len(fills) + 2)
    save_png(grid, path)
    print("strip columns: hole |", " | ".join(fills), "| truth ->", path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outside", type=Path)
    parser.add_argument("--scenes", type=Path, default=Path("../shared/data/scenes"))
    parser.add_argument("--candidate", action="append", default=[])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "annorm-realism-screen")
    parser.add_argument("--strip", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos, holes, n_held = screen_holes(args.outside, args.scenes)
    key = hashlib.sha256(b"".join(photo.tobytes() for photo in photos)).hexdigest()[:12]
    args.cache.mkdir(parents=True, exist_ok=True)
    inception = load_inception()
    masks = [hole for _, _, hole in holes]
    truths = [photos[i] for i, _, _ in holes]
    original = cached(args.cache / f"{key}-original.npz",
                      lambda: {"features": crop_features(truths, masks, inception)})["features"]
    fills, scores = {}, {}
    for name in BASELINES:
        saved = cached(args.cache / f"{key}-{name}.npz", lambda name=name: {
            f"{k:04d}": baseline_fill(name, photos[i], m) for k, (i, _, m) in enumerate(holes)})
        fills[name] = [saved[f"{k:04d}"] for k in range(len(holes))]
    for spec in args.candidate:
        name, fill = candidate_fill(spec)
        fills[name] = [fill(photos[i], m) for i, _, m in holes]
    for name, outs in fills.items():
        scores[name] = (crop_features(outs, masks, inception),
                        np.array([psnr_in_hole(o, t, m) for o, t, m in zip(outs, truths, masks)]))
    groups = np.array([i for i, _, _ in holes])
    kinds = np.array([kind for _, kind, _ in holes])
    report(scores, original, groups, kinds, n_held)
    if args.strip:
        strip(photos, holes, {n: f for n, f in fills.items() if n != "ns"}, args.strip)


if __name__ == "__main__":
    main()
