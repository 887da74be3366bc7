"""`annorm visualize-layout`: what the AN layers learned, for a generated or an inpainted image."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from annorm_cli.cli.common import check_seed_option, working
from annorm_cli.cli.generate import MAX_SCALE
from annorm_cli.cli.errors import fail


def visualize_command(
    class_name: Optional[str] = typer.Option(None, "--class", "-c", help="Generator mode: class name or index."),
    seed: int = typer.Option(0, "--seed", "-s", help="Generator mode: the seed."),
    image: Optional[Path] = typer.Option(None, help="Inpainting mode: the photo."),
    mask: Optional[Path] = typer.Option(None, help="Inpainting mode: its mask."),
    out: Path = typer.Option(Path("layouts"), "--out", "-o", help="Output folder."),
    top_k: int = typer.Option(8, help="Entity heat maps per layer (largest shares first; empty ones skipped)."),
    scale: int = typer.Option(8, help="Enlargement of the image for the pictures (32x32 samples are tiny)."),
    model: Optional[str] = typer.Option(None, help="Registry name."),
    weights: Optional[Path] = typer.Option(None, help="A .safetensors file with its JSON card beside it."),
    overwrite: bool = typer.Option(False, help="Replace existing files."),
) -> None:
    """Dump every AN layer's layout: hard layout, blend, entity heat maps, a contact sheet, layouts.npz.

    Examples: annorm visualize-layout --class cat --seed 0 --out lay/
              annorm visualize-layout --image photo.png --mask mask.png --out lay/
    """
    if (image is None) != (mask is None):
        raise fail("Inpainting mode needs both --image and --mask.")
    if image is not None and class_name is not None:
        raise fail("Give either --class (generator) or --image and --mask (inpainting), not both.")
    if top_k < 1 or scale < 1:
        raise fail("--top-k and --scale must be positive.")
    check_seed_option(seed)
    if scale > MAX_SCALE:
        raise fail(f"--scale must be from 1 to {MAX_SCALE}, got {scale}.")
    if out.exists() and not out.is_dir():
        raise fail(f"--out '{out}' is a file; give a folder for the pictures.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise fail(f"The output folder '{out}' is not empty; pass --overwrite or choose another --out.")
    from annorm_cli import pipelines
    from annorm_cli import weights as weight_files
    from annorm_cli.images import read_image, read_mask

    if image is not None:
        network, _ = weight_files.load(model, weights, task="inpaint")
        photo = read_image(image)
        hole = read_mask(mask, photo.shape[:2])
        scale = 1 if scale == 8 else scale                  # photos are shown at their own size by default
        _check_picture_size(photo.shape[:2], scale)
        with working("inpainting and recording the layouts"):
            result = pipelines.inpainting_layouts(network, photo, hole)
    else:
        generator, _ = weight_files.load(model, weights)
        index = pipelines.class_index(class_name or 0, generator.config.class_names)
        result = pipelines.generator_layouts(generator, index, seed)
    picture = result.image.repeat(scale, 0).repeat(scale, 1)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"Cannot create the output folder '{out}' ({exc.strerror}).")
    with working("drawing the pictures"):
        _write_pictures(out, picture, result, top_k, scale)
    typer.echo(f"wrote layouts of {len(result.layouts)} AN layer(s) to {out}/ (contact-sheet.png, layouts.npz)",
               err=True)


def _check_picture_size(size: tuple[int, int], scale: int) -> None:
    """Refuse a --scale whose pictures would exceed the pixel limit every command keeps."""
    from annorm_cli.images import MAX_PIXELS
    if size[0] * size[1] * scale ** 2 > MAX_PIXELS:
        raise fail(f"--scale {scale} would make {size[1] * scale}x{size[0] * scale} px pictures, above the limit "
                   f"of {MAX_PIXELS:,} pixels; choose a smaller --scale.")


def _write_pictures(out: Path, picture, result, top_k: int, scale: int) -> None:
    """image.png, per AN layer the hard layout, blend and heat maps, the contact sheet, layouts.npz."""
    import numpy as np

    from annorm_cli import visualize
    from annorm_cli.images import save_png
    save_png(picture, out / "image.png")
    for name, layout in result.layouts.items():
        tag = name.replace(".", "_")
        hard = visualize.hard_layout(layout, picture.shape[:2])
        save_png(hard, out / f"{tag}-hard.png")
        save_png((0.5 * picture + 0.5 * hard).astype(np.uint8), out / f"{tag}-blend.png")
        for entity in visualize.ranked_entities(layout, top_k):
            save_png(visualize.entity_heat(layout, entity, picture), out / f"{tag}-entity{entity:02d}.png")
    hole = None if result.hole is None else result.hole.repeat(scale, 0).repeat(scale, 1)
    save_png(visualize.contact_sheet(picture, result.layouts, top_k, hole), out / "contact-sheet.png")
    arrays = {f"{n}/layout": s for n, s in result.layouts.items()}
    arrays.update({f"{n}/logits": l for n, l in result.logits.items()})
    np.savez_compressed(out / "layouts.npz", layer_names=np.array(list(result.layouts)), **arrays)
