"""`annorm inpaint`: fill the masked part of photos (one file or matching folders)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from annorm_cli.cli.common import check_max_side, check_seed_option, progress, working
from annorm_cli.cli.errors import fail

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MASK_NAME_SUFFIXES = ("", "_mask", "-mask", ".mask")     # photo.png's mask: photo.png, photo_mask.png, ...
MAX_HOLE_SHARE = 0.75                                   # larger holes are refused unless --large-hole


def _mask_for(stem: str, masks: dict) -> Optional[Path]:
    return next((masks[stem + suffix] for suffix in MASK_NAME_SUFFIXES if stem + suffix in masks), None)


def _pairs(image: Path, mask: Path, out: Optional[Path]) -> list[tuple[Path, Path, Path]]:
    """(image, mask, output) triples: one file, or folders matched by file stem."""
    if image.is_dir():
        if not mask.is_dir():
            raise fail("When IMAGE is a folder, MASK must be a folder of masks named like the images.")
        images = sorted(p for p in image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise fail(f"The folder '{image}' holds no images.")
        masks = {p.stem: p for p in mask.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        missing = [p.name for p in images if _mask_for(p.stem, masks) is None]
        if missing:
            raise fail(f"No mask in '{mask}' for {len(missing)} image(s), e.g. '{missing[0]}'; name masks like the "
                       "image (photo.png, photo_mask.png, photo-mask.png or photo.mask.png).")
        target = out or image.with_name(image.name + "-filled")
        return [(p, _mask_for(p.stem, masks), target / f"{p.stem}.png") for p in images]
    if not image.exists():
        raise fail(f"The image '{image}' does not exist.")
    if out is not None and (out.is_dir() or str(out).endswith(("/", "\\"))):
        out = out / f"{image.stem}-filled.png"                  # --out DIR/ for one photo
    return [(image, mask, out or image.with_name(f"{image.stem}-filled.png"))]


def inpaint_command(
    image: Path = typer.Argument(..., help="A photo, or a folder of photos."),
    mask: Path = typer.Argument(..., help="Its mask (white or transparent = hole), or a folder of masks."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output .png (or folder for folders)."),
    dilate: int = typer.Option(0, help="Grow the hole by this many pixels."),
    invert_mask: bool = typer.Option(False, help="The mask marks what to keep (black hole on white)."),
    large_hole: bool = typer.Option(False, help=f"Fill a hole of more than {MAX_HOLE_SHARE:.0%} of the photo "
                                                "(refused by default: usually an inverted mask)."),
    compare: bool = typer.Option(False, help="Also write a before/after strip (<name>-compare.png)."),
    max_side: Optional[int] = typer.Option(None, help="Largest side the network sees; bigger hole regions are "
                                                      "downscaled (default: the model's work_side). Deep holes are "
                                                      "filled smaller still, as deep as the network was trained for."),
    texture: bool = typer.Option(True, help="Copy real texture from the photo into the hole at full resolution: "
                                 "PatchMatch for an object-shaped hole, elsewhere guided by the network's fill; "
                                 "--no-texture keeps the network's smooth fill."),
    seed: int = typer.Option(0, help="Seed of the texture step's (and PatchMatch's) random search: the same seed "
                                     "gives the same bits."),
    model: Optional[str] = typer.Option(None, help="Registry name (default scenes-inpaint-an)."),
    weights: Optional[Path] = typer.Option(None, help="A .safetensors file with its JSON card beside it."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    overwrite: bool = typer.Option(False, help="Replace existing files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Fill the masked part of a photo; pixels outside the hole come back bit-identical.

    Example: annorm inpaint photo.jpg mask.png --out filled.png --compare
    """
    if dilate < 0:
        raise fail(f"--dilate must be zero or positive, got {dilate}.")
    check_seed_option(seed)
    check_max_side(max_side)
    jobs = _pairs(image, mask, out)
    _check_targets(jobs, compare, overwrite)
    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.pipelines import inpaint_array, inpaint_text

    resolved = resolve_device(device)
    network, card = weight_files.load(model, weights, task="inpaint")
    loaded = _read_jobs(jobs, dilate, invert_mask, large_hole)     # everything read and checked before any write
    for folder in {t.parent for _, _, t in loaded}:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fail(f"Cannot create the output folder '{folder}' ({exc.strerror}).")
    with progress("inpainting", len(loaded), quiet=quiet or len(loaded) == 1) as advance:
        for photo, hole, target in loaded:
            with working(f"inpainting {photo.shape[1]}x{photo.shape[0]} px, {hole.mean():.0%} hole",
                         quiet=quiet or len(loaded) > 1):
                filled = inpaint_array(network, photo, hole, device=resolved, max_side=max_side, texture=texture,
                                       seed=seed)
            _write_fill(photo, hole, filled, target, compare, inpaint_text(model or "scenes-inpaint-an", card["sha256"]))
            advance(1)
    if not quiet:
        typer.echo(f"wrote {len(loaded)} inpainted image(s)" + (f" to {loaded[0][2].parent}/" if len(loaded) > 1
                                                                else f": {loaded[0][2]}"), err=True)


def _check_targets(jobs: list, compare: bool, overwrite: bool) -> None:
    """Refuse outputs that are not .png, that are one of the inputs or a folder, or that exist
    without --overwrite."""
    for _, _, target in jobs:
        if target.suffix.lower() != ".png":
            raise fail(f"'{target}' must be a .png: keeping the pixels outside the hole bit-identical needs a lossless format.")
    targets = [t for _, _, t in jobs] + ([t.with_name(t.stem + "-compare.png") for _, _, t in jobs] if compare else [])
    inputs = {path.resolve() for photo, hole, _ in jobs for path in (photo, hole)}
    for target in targets:
        if target.resolve() in inputs:
            raise fail(f"'{target}' is one of the inputs; choose another --out (an output never replaces an input).")
        if target.is_dir():
            raise fail(f"'{target}' is a folder; choose another --out.")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise fail(f"'{existing[0]}' already exists; pass --overwrite or choose another --out.")


def _read_jobs(jobs: list, dilate: int, invert_mask: bool, large_hole: bool) -> list:
    """[(photo [H, W, 3] uint8, hole [H, W] bool, target)] for every job, each hole checked."""
    from annorm_cli.images import read_image, read_mask
    loaded = []
    for photo_path, mask_path, target in jobs:
        photo = read_image(photo_path)
        hole = read_mask(mask_path, photo.shape[:2], dilate, invert=invert_mask)
        if hole.all():
            raise fail("The mask covers the whole image: there are no known pixels to fill the hole from.")
        if hole.mean() > MAX_HOLE_SHARE and not large_hole:
            raise fail(f"The mask '{mask_path}' marks {hole.mean():.0%} of the photo as hole; if it is black on white, "
                       "pass --invert-mask, or --large-hole to fill it anyway.")
        loaded.append((photo, hole, target))
    return loaded


def _write_fill(photo, hole, filled, target: Path, compare: bool, text: dict) -> None:
    """The filled photo as PNG (a grey photo stays grey: its known pixels keep their values), and
    with `compare` a labelled before/after strip beside it."""
    import numpy as np

    from annorm_cli.images import is_grey, label_columns, make_grid, save_png
    grey = is_grey(photo)
    if grey:
        filled = np.repeat(filled.mean(2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    save_png(filled[..., 0] if grey else filled, target, text=text)
    if compare:
        shown = np.where(hole[..., None], np.uint8(255), photo)
        strip = label_columns(make_grid(np.stack([shown, filled]), 2), ["input (hole in white)", "filled"])
        save_png(strip, target.with_name(target.stem + "-compare.png"))
