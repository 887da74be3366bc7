"""`annorm generate`: class-conditional samples with seeds, batching, grids and PNG metadata."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from annorm_cli import __version__
from annorm_cli.cli.common import check_truncation, parse_seeds, progress
from annorm_cli.cli.errors import fail



def _read_png_parameters(path: Path) -> dict:
    from PIL import Image

    from annorm_cli.pipelines import SAMPLE_PREFIX as META_PREFIX
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or {})
    except Exception:
        raise fail(f"'{path}' is not a readable PNG image.")
    params = {k[len(META_PREFIX):]: v for k, v in text.items() if k.startswith(META_PREFIX)}
    if "seed" not in params or "class" not in params:
        raise fail(f"'{path}' carries no annorm parameters (was it written by `annorm generate`?).")
    return params


ONE_CLASS_COLUMNS = 8             # a one-class grid wraps into rows of 8 (16 cats: 2 rows, not a strip)
MAX_SCALE = 64                    # 32 px x 64 = 2048 px per sample


def _check_sample_options(scale: int, grid_cols: Optional[int], truncation: Optional[float]) -> None:
    if not 1 <= scale <= MAX_SCALE:
        raise fail(f"--scale must be from 1 to {MAX_SCALE}, got {scale}.")
    if grid_cols is not None and grid_cols < 1:
        raise fail(f"--grid-cols must be a positive integer, got {grid_cols}.")
    check_truncation(truncation)


def _prepare_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"Cannot create the output folder '{out}' ({exc.strerror}); choose another --out.")
    if not os.access(out, os.W_OK):
        raise fail(f"The output folder '{out}' is not writable; choose another --out.")


def _label_rows(sheet, labels: list[str], cell: int, pad: int):
    """Add a column of row labels left of a grid sheet."""
    import numpy as np
    from PIL import Image, ImageDraw
    width = 8 + 7 * max(len(label) for label in labels)
    canvas = Image.new("RGB", (sheet.shape[1] + width, sheet.shape[0]), "white")
    canvas.paste(Image.fromarray(sheet), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(labels):
        draw.text((4, pad + row * (cell + pad) + cell // 2 - 5), label, fill="black")
    return np.asarray(canvas)


def _write_interpolation(generator, card, names, classes, seeds, frames, truncation, out, scale, gif, overwrite,
                         device, quiet) -> None:
    """Two seeds (one class) or two classes (one seed) -> a strip PNG (and a GIF)."""
    from annorm_cli.images import make_grid, save_png
    from annorm_cli.pipelines import SAMPLE_PREFIX as META_PREFIX
    from annorm_cli.pipelines import class_index, interpolate
    if frames < 2:
        raise fail(f"--interpolate needs at least 2 frames, got {frames}.")
    picked = [class_index(c, names) for c in classes] if [c.lower() for c in classes] != ["all"] else []
    if len(seeds) == 2 and len(picked) == 1:
        ends, seed_pair, label = (picked[0], picked[0]), (seeds[0], seeds[1]), f"{names[picked[0]]}-seed{seeds[0]:04d}-to-seed{seeds[1]:04d}"
    elif len(seeds) == 1 and len(picked) == 2:
        ends, seed_pair, label = tuple(picked), (seeds[0], seeds[0]), f"{names[picked[0]]}-to-{names[picked[1]]}-seed{seeds[0]:04d}"
    else:
        raise fail("--interpolate needs two seeds and one --class, or two --class values and one seed.")
    strip_file, gif_file = out / f"interpolation-{label}.png", out / f"interpolation-{label}.gif"
    existing = [p for p in (strip_file, gif_file if gif else None) if p is not None and p.exists()]
    if existing and not overwrite:
        raise fail(f"'{existing[0]}' already exists; pass --overwrite or choose another --out.")
    _prepare_out_dir(out)
    images = interpolate(generator, ends, seed_pair, frames, truncation=truncation, device=device)
    save_png(make_grid(images, frames, scale=scale), strip_file,
             text={META_PREFIX + "model_sha256": card["sha256"], META_PREFIX + "version": __version__})
    if gif:
        from PIL import Image

        from annorm_cli.files import atomic_open
        pictures = [Image.fromarray(make_grid(i[None], 1, pad=0, scale=scale)) for i in images]
        with atomic_open(gif_file) as handle:
            pictures[0].save(handle, format="GIF", save_all=True, append_images=pictures[1:] + pictures[::-1],
                             duration=80, loop=0)
    if not quiet:
        typer.echo(f"wrote {strip_file}" + (f" and {gif_file}" if gif else ""), err=True)


def _png_settings(path: Path, params: dict, model: Optional[str], scale: int) -> tuple:
    """(model, precision, truncation, scale) that reproduce a PNG from its parameters; a typed
    --model or --scale wins (the scale changes no pixel)."""
    precision = params.get("precision", "fp32")          # older PNGs carry none: they were fp32
    try:
        truncation = float(params["truncation"]) if params.get("truncation", "none") != "none" else None
        scale = scale if scale != 1 else int(params.get("scale", 1))
    except ValueError:
        raise fail(f"'{path}' carries malformed annorm parameters (truncation "
                   f"'{params.get('truncation')}', scale '{params.get('scale')}').")
    return model or params.get("model"), precision, truncation, scale


def _output_files(out: Path, names: list[str], wanted: list[int], seeds: list[int], grid: bool,
                  overwrite: bool) -> tuple[list[Path], Optional[Path]]:
    """One PNG per (class, seed) and the grid's (None without one), refused when one is a folder
    or exists without --overwrite; the folder is made."""
    files = [out / f"{names[c]}-seed{s:04d}.png" for c in wanted for s in seeds]
    tag = "all" if len(wanted) == len(names) and len(wanted) > 1 else "-".join(names[c] for c in wanted)
    grid_file = out / f"grid-{tag}-seed{seeds[0]:04d}-{seeds[-1]:04d}.png" if grid and len(files) > 1 else None
    targets = files + ([grid_file] if grid_file else [])
    folders = [p for p in targets if p.is_dir()]
    if folders:
        raise fail(f"'{folders[0]}' is a folder where an image should be written; choose another --out.")
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise fail(f"'{existing[0]}' already exists ({len(existing)} of the outputs do); pass --overwrite or "
                   "choose another --out.")
    _prepare_out_dir(out)
    return files, grid_file


def _grid_sheet(images, names: list[str], wanted: list[int], n_seeds: int, grid_cols: Optional[int], scale: int):
    """The grid of images [N, H, W, 3]: one row per class with its name (or --grid-cols; one class
    wraps into rows of ONE_CLASS_COLUMNS)."""
    from annorm_cli.images import make_grid
    cols = grid_cols or (n_seeds if len(wanted) > 1 else min(n_seeds, ONE_CLASS_COLUMNS))
    sheet = make_grid(images, cols, scale=scale)
    if cols == n_seeds and len(wanted) > 1:
        sheet = _label_rows(sheet, [names[c] for c in wanted], images.shape[1] * scale, 2)
    return sheet


def generate_command(
    classes: List[str] = typer.Option(["all"], "--class", "-c", help="Class name or index, repeatable, or 'all'."),
    num: Optional[int] = typer.Option(None, "--num", "-n", help="Images per class when --seed is one integer."),
    seed: str = typer.Option("0", "--seed", "-s", help="One integer (then --num consecutive seeds), a range 0-29, or a list 1,5,9."),
    truncation: Optional[float] = typer.Option(None, help="Truncated-normal latent |z| <= T (BigGAN's trick)."),
    out: Path = typer.Option(Path("samples"), "--out", "-o", help="Output folder."),
    grid: bool = typer.Option(True, "--grid/--no-grid", help="Also write a grid PNG of the batch."),
    grid_cols: Optional[int] = typer.Option(None, help="Grid columns (default: seeds per class, one row per class; one class: rows of 8)."),
    scale: int = typer.Option(1, help="Nearest-neighbour enlargement of every written PNG (32x32 is tiny)."),
    model: Optional[str] = typer.Option(None, help="Registry name (see `annorm models`); default cifar10-an."),
    weights: Optional[Path] = typer.Option(None, help="A .safetensors file with its JSON card beside it."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    precision: str = typer.Option("fp32", help="fp32 | bf16"),
    batch_size: int = typer.Option(64, help="Images per forward pass (speed only; pixels do not change)."),
    from_png: Optional[Path] = typer.Option(None, help="Reproduce a PNG written by annorm generate from its metadata."),
    interpolate: Optional[int] = typer.Option(None, help="Frames of an interpolation between two seeds or two classes "
                                                          "(two seeds as --seed 3,7 with one --class, or two --class values with one seed)."),
    gif: bool = typer.Option(False, help="With --interpolate: also write an animated GIF."),
    overwrite: bool = typer.Option(False, help="Replace existing files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Generate class-conditional images, one PNG per (class, seed), plus a grid.

    Example: annorm generate --class cat --num 16 --seed 0 --out samples/ --scale 4
    """
    if num is not None and num < 1:
        raise fail(f"--num must be a positive integer, got {num}.")
    if batch_size < 1:
        raise fail(f"--batch-size must be a positive integer, got {batch_size}.")
    params = {}
    if from_png is not None:
        params = _read_png_parameters(from_png)
        classes, seed, num = [params["class"]], params["seed"], 1
        model, precision, truncation, scale = _png_settings(from_png, params, model, scale)
    _check_sample_options(scale, grid_cols, truncation)
    if precision not in ("fp32", "bf16"):
        raise fail(f"Unknown precision '{precision}'; choose fp32 or bf16.")
    seeds = parse_seeds(seed, num)
    if num is not None and len(seeds) != num:
        raise fail(f"--num {num} disagrees with --seed '{seed}', which gives {len(seeds)} seeds; drop one of them.")

    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.images import make_grid, save_png
    from annorm_cli.pipelines import SAMPLE_PREFIX as META_PREFIX
    from annorm_cli.pipelines import class_index, generate_images, sample_text

    resolved = resolve_device(device)
    generator, card = weight_files.load(model, weights)
    if params.get("sha256") and params["sha256"] != card["sha256"]:
        raise fail(f"'{from_png}' was made by weights with sha256 {params['sha256'][:12]}..., not these; "
                   "pass the matching --model or --weights.")
    names = list(generator.config.class_names)
    if interpolate is not None:
        _write_interpolation(generator, card, names, classes, seeds, interpolate, truncation, out, scale, gif,
                             overwrite, resolved, quiet)
        return
    wanted = list(range(len(names))) if [c.lower() for c in classes] == ["all"] else \
        [class_index(c, names) for c in classes]
    pairs = [(c, s) for c in wanted for s in seeds]
    files, grid_file = _output_files(out, names, wanted, seeds, grid, overwrite)

    with progress("generating", len(pairs), quiet=quiet) as advance:
        images = generate_images(generator, [c for c, _ in pairs], [s for _, s in pairs], truncation=truncation,
                                 batch_size=batch_size, device=resolved, precision=precision, progress=advance)
    name = model or ("file:" + str(weights) if weights else weight_files.DEFAULT_MODEL["class-conditional"])
    for (c, s), pixels, path in zip(pairs, images, files):
        text = sample_text(name, card["sha256"], names[c], s, truncation, scale=scale, precision=precision)
        save_png(make_grid(pixels[None], 1, pad=0, scale=scale), path, text=text)
    if grid_file:
        save_png(_grid_sheet(images, names, wanted, len(seeds), grid_cols, scale), grid_file,
                 text={META_PREFIX + "grid": ",".join(p.name for p in files[:200]),
                       META_PREFIX + "model": name, META_PREFIX + "version": __version__})
    if not quiet:
        typer.echo(f"wrote {len(files)} image(s){' and a grid' if grid_file else ''} to {out}/",
                   err=True)
