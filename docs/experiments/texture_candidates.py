"""Quick screen of texture-step candidates against PatchMatch (README, inpainting, 2026-12-03).

Objects bucket (`annorm_cli.evaluate.inpainting.evaluation_masks`, masks 0 and 1 per photo) on
the first 16 photos of the held-out list and on a folder of outside photos, every photo
downscaled to a long side of 640 px (Lanczos); hole crops as `annorm evaluate inpaint` makes
them; KID x 1000 with the standard error over photo folds and the paired difference to
PatchMatch. A screen for candidates, not the shipped protocol (that is `annorm evaluate inpaint`).

    python docs/experiments/texture_candidates.py OUTSIDE_PHOTOS_DIR [--scenes ../shared/data/scenes]

Candidates are set through the constants of annorm_cli/synthesis.py and annorm_cli/pipelines/inpainting.py;
add your own to CANDIDATES.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from annorm_cli import pipelines, synthesis
from annorm_cli.pipelines import inpainting as inpainting_pipeline
from annorm_cli import weights as weight_files
from annorm_cli.datasets import holdout_list, load_photos
from annorm_cli.evaluate import perceptual as p
from annorm_cli.evaluate.fid import inception_features, load_inception
from annorm_cli.evaluate.inpainting import evaluation_masks, patchmatch_inpaint, psnr_in_hole

CANDIDATES = {
    "shipped": {},
    "guide 0": {"GUIDE_WEIGHT": 0.0},
    "guide 0, source region x3": {"GUIDE_WEIGHT": 0.0, "TEXTURE_MARGIN": 3.0},
    "coarsest level 1/8 of the network's scale": {"COARSEST": 0.125},
}


def shrink(photo: np.ndarray, side: int = 640) -> np.ndarray:
    image = Image.fromarray(photo)
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    return np.asarray(image)


def screen_holes(outside: Path, scenes: Path) -> tuple[list, list, np.ndarray, int]:
    """The screen: (photos [H, W, 3] uint8: the first 16 held-out photos then the outside folder's,
    each at a long side of 640 px; (photo index, hole) pairs: masks 0 and 1 of the objects bucket;
    the photo index of every hole; how many photos are held-out ones)."""
    held = [shrink(t.permute(1, 2, 0).numpy()) for t in load_photos(scenes, holdout_list()[:16]).values()]
    photos = held + [shrink(np.asarray(Image.open(f).convert("RGB"))) for f in sorted(outside.iterdir())]
    masks = [(i, m) for i, photo in enumerate(photos) for m in evaluation_masks(photo, "objects", i, 2)]
    return photos, masks, np.array([i for i, _ in masks]), len(held)


def crop_features(image: np.ndarray, hole: np.ndarray, inception) -> np.ndarray:
    """Inception features [2048] of the square crop around the hole, as `annorm evaluate inpaint` makes it."""
    return inception_features(p.hole_crop(image, p.hole_crop_box(hole))[None], inception)[0]


def with_constants(network, constants: dict):
    def fill(photo, hole):
        module = lambda name: synthesis if hasattr(synthesis, name) else inpainting_pipeline  # noqa: E731
        saved = {name: getattr(module(name), name) for name in constants}
        for name, value in constants.items():
            setattr(module(name), name, value)
        try:
            return pipelines.inpaint_array(network, photo, hole)
        finally:
            for name, value in saved.items():
                setattr(module(name), name, value)
    return fill


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outside", type=Path)
    parser.add_argument("--scenes", type=Path, default=Path("../shared/data/scenes"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    photos, masks, groups, n_held = screen_holes(args.outside, args.scenes)
    inception = load_inception()
    network, _ = weight_files.load(None, None, task="inpaint")
    fills = {"PatchMatch": lambda photo, hole: patchmatch_inpaint(photo, hole)}
    fills.update({name: with_constants(network, constants) for name, constants in CANDIDATES.items()})

    features = lambda image, hole: crop_features(image, hole, inception)  # noqa: E731
    original = np.stack([features(photos[i], m) for i, m in masks])
    scores = {}
    for name, fill in fills.items():
        outs = [fill(photos[i], m) for i, m in masks]
        scores[name] = (np.stack([features(o, m) for o, (_, m) in zip(outs, masks)]),
                        np.array([psnr_in_hole(o, photos[i], m) for o, (i, m) in zip(outs, masks)]))
    for subset, keep in (("held-out", groups < n_held), ("outside", groups >= n_held),
                         ("all", groups >= 0)):
        folds = {name: p.kid_per_fold(f[keep], original[keep], groups[keep], min(10, len(set(groups[keep])) // 2))
                 for name, (f, _) in scores.items()}
        print(f"{subset} ({keep.sum()} fills)")
        for name, (_, psnr) in scores.items():
            kid, se = p.mean_and_error(folds[name])
            diff, diff_se = p.mean_and_error(folds[name] - folds["PatchMatch"])
            print(f"  {name:45s} KID {1000 * kid:5.1f} ± {1000 * se:4.1f}   minus PatchMatch {1000 * diff:+5.1f} ± "
                  f"{1000 * diff_se:4.1f}   PSNR {psnr[keep].mean():5.2f}")


if __name__ == "__main__":
    main()
