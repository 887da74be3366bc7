"""`annorm bench`: benchmarks that print tables."""
from __future__ import annotations

from typing import Optional

import typer

from annorm_cli.cli.common import parse_widths, set_threads
from annorm_cli.cli.errors import fail

app = typer.Typer(no_args_is_help=True, help="Benchmarks that print tables (layer, generate, inpaint, serve).")


def _size(n: float) -> str:
    return f"{n / 2 ** 20:,.0f} MiB" if n < 2 ** 30 else f"{n / 2 ** 30:,.2f} GiB"


@app.command("layer")
def bench_layer(
    device: str = typer.Option("cpu", help="auto | cpu | cuda | mps"),
    channels: int = typer.Option(32, help="Channels C (the paper: 32)."),
    entities: int = typer.Option(16, help="AN entities n (the paper: 16)."),
    batch: int = typer.Option(1, help="Batch size (the paper: 1)."),
    resolutions: str = typer.Option("32,64,128,256,512,1024", help="Square sizes to measure, comma-separated."),
    max_memory_gb: float = typer.Option(8.0, help="Skip a cell whose estimated peak exceeds this."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (default: torch's choice)."),
) -> None:
    """Time fast AN, reference AN, self-attention and conv1x1+InstanceNorm over resolutions.

    Forward: eval mode, no grad. Forward+backward: training mode (AN self-sampling on), input
    gradient included. Peak: the growth of peak memory during one forward+backward, input
    included. Each cell runs in a fresh process.

    Example: annorm bench layer --resolutions 64,128,256
    """
    try:
        sizes = tuple(int(r) for r in resolutions.split(","))
    except ValueError:
        raise fail("--resolutions takes positive integers separated by commas, like 64,128,256.")
    if min(sizes) < 1 or min(channels, entities, batch) < 1:
        raise fail("Resolutions, channels, entities and batch must be positive.")
    from rich.console import Console

    from annorm_cli import bench
    from annorm_cli.device import resolve_device

    set_threads(threads)
    dev = resolve_device(device)
    config = bench.LayerBenchConfig(resolutions=sizes, channels=channels, entities=entities, batch=batch,
                                    device=str(dev), max_bytes=max_memory_gb * 1e9, threads=threads)
    console = Console()
    rows: dict[str, list[dict]] = {kind: [] for kind in bench.LAYER_KINDS}
    with console.status("measuring...") as status:
        for resolution in sizes:
            for kind in bench.LAYER_KINDS:
                status.update(f"measuring {kind} at {resolution}x{resolution}")
                rows[kind].append(bench.run_cell(config, kind, resolution))
    console.print(_layer_table(rows, f"Layer benchmark: C={channels}, n={entities}, batch {batch}, {dev}"))
    for line in _layer_summary(rows, sizes):
        console.print(line)


NOISY = 0.10               # a cell whose runs spread more than this (interquartile range / median) is flagged


def _layer_table(rows: dict[str, list[dict]], title: str):
    """The rich table of `bench layer`: one section per layer kind, one row per size."""
    from rich.table import Table
    table = Table(title=title)
    for column in ("layer", "size", "forward ms", "fwd+bwd ms", "peak memory", "fwd+bwd vs AN-fast", "spread"):
        table.add_column(column, justify="left" if column in ("layer", "size") else "right")
    fast = {r["resolution"]: r for r in rows["an-fast"]}
    for kind, measured in rows.items():
        for r in measured:
            size = f"{r['resolution']}^2"
            if "skipped" in r:
                table.add_row(kind, size, "skipped", "", r["skipped"], "", "")
                continue
            base = fast.get(r["resolution"], {})
            ratio = f"{r['train_ms'] / base['train_ms']:.1f}x" if "train_ms" in base else ""
            spread = f"{r['spread']:.0%}" + (" !" if r["spread"] > NOISY else "")
            table.add_row(kind, size, f"{r['forward_ms']:.2f}", f"{r['train_ms']:.2f}", _size(r["peak_bytes"]), ratio,
                          spread)
        table.add_section()
    return table


def _layer_summary(rows: dict[str, list[dict]], sizes: tuple[int, ...]) -> list[str]:
    """The lines under the table: scaling slopes, AN's cost over the cheapest layer, and a warning
    when timings were noisy."""
    from annorm_cli import bench
    lines = []
    for kind, measured in rows.items():
        slope = bench.loglog_slope(measured)
        text = f"{slope:.2f}" if slope is not None else "n/a (fewer than two sizes >= 64^2)"
        lines.append(f"log-log slope of fwd+bwd time vs pixels (sizes >= 64^2), {kind}: {text}")
    fast = {r["resolution"]: r for r in rows["an-fast"]}
    cheap = {r["resolution"]: r for r in rows["conv1x1+instnorm"]}
    ratios = [f"{res}^2 {fast[res]['train_ms'] / cheap[res]['train_ms']:.1f}x" for res in sizes
              if "train_ms" in fast.get(res, {}) and "train_ms" in cheap.get(res, {})]
    lines.append("AN-fast cost relative to conv1x1+InstanceNorm+residual (fwd+bwd): " + ", ".join(ratios))
    noisy = sum(r.get("spread", 0) > NOISY for measured in rows.values() for r in measured)
    if noisy:
        lines.append(f"warning: in {noisy} cell(s) (marked !) the timed runs spread more than {NOISY:.0%} "
                     "(interquartile range over the median): something else used the cores; rerun on a quiet "
                     "machine before comparing these numbers.")
    return lines


@app.command("generate")
def bench_generate(
    model: Optional[str] = typer.Option(None, help="Registry name (default cifar10-an)."),
    weights: Optional[str] = typer.Option(None, help="Or a .safetensors file with its card."),
    batch_sizes: str = typer.Option("1,16,64,256", help="Batch sizes, comma-separated."),
    images: int = typer.Option(256, help="Images timed per batch size."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | mps"),
    threads: Optional[int] = typer.Option(None, help="CPU threads."),
) -> None:
    """Generation throughput (img/s) of a class-conditional model by batch size, end to end
    (latents, forward pass, conversion to uint8), after one warm-up batch.

    Example: annorm bench generate --batch-sizes 1,64
    """
    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise fail("--batch-sizes takes positive integers separated by commas.")
    if min(sizes) < 1 or images < 1:
        raise fail("Batch sizes and --images must be positive.")
    import torch
    from rich.console import Console
    from rich.table import Table

    from annorm_cli import bench
    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device

    set_threads(threads)
    dev = resolve_device(device)
    generator, card = weight_files.load(model, weights)
    rows = bench.time_generate(generator, sizes, dev, images)
    table = Table(title=f"generate: {weights or model or 'cifar10-an'} ({card['sha256'][:12]}), {dev}, {torch.get_num_threads()} threads")
    table.add_column("batch")
    table.add_column("img/s", justify="right")
    for row in rows:
        table.add_row(str(row["batch"]), f"{row['img_per_s']:.1f}")
    Console().print(table)


@app.command("inpaint")
def bench_inpaint(
    model: Optional[str] = typer.Option(None, help="Registry name (default scenes-inpaint-an)."),
    weights: Optional[str] = typer.Option(None, help="Or a .safetensors file with its card."),
    sizes: str = typer.Option("256x256,512x512,1024x768,2048x1536", help="WIDTHxHEIGHT list, comma-separated."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | mps"),
    threads: Optional[int] = typer.Option(None, help="CPU threads."),
    holes: str = typer.Option("strokes,object", help="Hole kinds, comma-separated: strokes (30-40% free-form), "
                              "object (one object of 10-25%)."),
    texture: bool = typer.Option(True, help="With the texture step (as annorm inpaint does)."),
) -> None:
    """Seconds and peak memory of one whole inpaint by photo size and hole kind, each in a
    fresh process, excluding process start and model loading.

    Example: annorm bench inpaint --sizes 512x512,2048x1536
    """
    try:
        pairs = [tuple(int(v) for v in s.lower().split("x")) for s in sizes.split(",")]
    except ValueError:
        raise fail("--sizes takes WIDTHxHEIGHT items separated by commas, like 512x512,2048x1536.")
    if any(len(p) != 2 or min(p) < 8 for p in pairs):
        raise fail("Every size needs a width and a height of at least 8.")
    kinds = [h.strip() for h in holes.split(",") if h.strip()]
    if not kinds or any(h not in ("strokes", "object") for h in kinds):
        raise fail(f"--holes takes a comma-separated list of strokes, object; got '{holes}'.")
    from rich.console import Console
    from rich.table import Table

    from annorm_cli import bench
    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device

    set_threads(threads)
    path, _ = weight_files.resolve(model, weights, task="inpaint")
    dev = resolve_device(device)
    table = Table(title=f"inpaint: {path.name}, {dev}" + ("" if texture else ", no texture step"))
    for column in ("size", "hole", "seconds", "peak memory"):
        table.add_column(column, justify="right")
    for width, height in pairs:
        for kind in kinds:
            row = bench.run_inpaint_cell(str(path), height, width, str(dev), threads, kind, texture)
            if "skipped" in row:
                table.add_row(row["size"], kind, "failed", row["skipped"])
            else:
                table.add_row(row["size"], kind, f"{row['seconds']:.3f}", _size(row["peak_bytes"]))
    Console().print(table)


@app.command("serve")
def bench_serve(
    image: Optional[str] = typer.Option(None, help="The photo (default: a 512x512 test pattern)."),
    runs: int = typer.Option(3, help="Fills measured (the median is reported)."),
) -> None:
    """Time `annorm serve` in headless Chromium against the same fill in-process.

    Page load: navigation start to the load event. Fill through the page: the click on Fill
    to the result drawn (upload, server, download, decode). In-process: inpaint_array on the
    same photo and mask, as `annorm inpaint` runs it after loading. Needs the serve extra,
    Selenium and Debian's chromium + chromium-driver.
    """
    import statistics
    import tempfile
    import time
    from pathlib import Path

    import numpy as np
    from PIL import Image
    from rich.console import Console
    from rich.table import Table

    from annorm_cli import weights as weight_files
    from annorm_cli.images import read_image
    from annorm_cli.pipelines import inpaint_array
    from annorm_cli.server import browser
    from annorm_cli.server.app import create_app
    if runs < 1:
        raise fail(f"--runs must be positive, got {runs}.")
    missing = browser.browser_missing()
    if missing:
        raise fail(missing)
    photo = read_image(image) if image else np.tile(np.linspace(0, 255, 512, dtype=np.uint8)[:, None, None], (1, 512, 3))
    network, _ = weight_files.load(None, None, task="inpaint")
    with tempfile.TemporaryDirectory(prefix="annorm-bench-") as folder:
        path = Path(folder) / "photo.png"
        Image.fromarray(photo).save(path)
        with browser.running_server(create_app("cpu")) as address, browser.chromium() as driver:
            loads = [browser.open_page(driver, address) for _ in range(runs)]
            canvas = browser.open_photo(driver, path)
            page_fills, process_fills = [], []
            for _ in range(runs + 1):                       # the first fill loads the model: not counted
                browser.paint_stroke(driver, canvas)
                hole = browser.page_blob(driver, "annormPage.exportMask()")[..., 0] > 127
                current = browser.page_blob(driver, "annormPage.inpaint.photo")[..., :3]
                page_fills.append(browser.fill(driver))
                started = time.perf_counter()
                inpaint_array(network, current, hole)
                process_fills.append(time.perf_counter() - started)
    page, process = statistics.median(page_fills[1:]), statistics.median(process_fills[1:])
    table = Table(title=f"annorm serve, {photo.shape[1]}x{photo.shape[0]} photo, a painted stroke "
                        f"({hole.mean():.0%} of it), median of {runs}")
    for column in ("page load", "fill through the page", "fill in-process", "page - in-process"):
        table.add_column(column, justify="right")
    table.add_row(f"{statistics.median(loads) * 1000:.0f} ms", f"{page:.3f} s", f"{process:.3f} s",
                  f"{page - process:+.3f} s")
    Console().print(table)


@app.command("train-step")
def bench_train_step(
    batch_size: int = typer.Option(64, help="Batch size (the shipped run: 64)."),
    d_steps: int = typer.Option(1, help="D updates per G update (the shipped run: 1)."),
    steps: int = typer.Option(5, help="Steps timed (median) after two warm-up steps."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (default: torch's choice)."),
    compiled: bool = typer.Option(False, "--compile", help="Also time torch.compile'd G (Inductor; the first "
                                                          "step includes the compile)."),
    g_channels: str = typer.Option("256,128,64,32", help="Generator widths at 4,8,16,32 px (default: the shipped)."),
    d_channels: str = typer.Option("64,128,128,128", help="Discriminator widths at 16,8,4,4 px (default: the shipped)."),
) -> None:
    """Profile one class-conditional training step (synthetic data) of the shipped architecture or
    of other widths (to pick a design by its cost before a run): time per operator category, and
    img/s eager (and compiled).

    Example: annorm bench train-step --threads 2 --g-channels 256,256,128,64
    """
    if min(batch_size, d_steps, steps) < 1:
        raise fail("--batch-size, --d-steps and --steps must be positive.")
    import torch
    from rich.console import Console
    from rich.table import Table

    from annorm_cli.models import ClassConditionalConfig
    from annorm_cli.train import profiling
    widths = parse_widths(g_channels, "--g-channels"), parse_widths(d_channels, "--d-channels")
    set_threads(threads)
    config = ClassConditionalConfig(g_channels=widths[0], d_channels=widths[1])
    options = profiling.options_for(batch_size, d_steps)
    shares = profiling.profile_shares(config, options)
    total = sum(ms for _, ms in shares)
    g_params, d_params = profiling.parameter_counts(config)
    table = Table(title=f"one step (G {g_channels}: {g_params / 1e6:.2f}M, D {d_channels}: {d_params / 1e6:.2f}M "
                        f"parameters; batch {batch_size}, {d_steps} D + 1 G updates, DiffAugment), "
                        f"{torch.get_num_threads()} threads, self CPU time per step")
    for column in ("operators", "ms", "share"):
        table.add_column(column, justify="right" if column != "operators" else "left")
    for name, ms in shares:
        table.add_row(name, f"{ms:.0f}", f"{ms / total:.0%}")
    Console().print(table)
    speed = Table(title="throughput (median step after warm-up; img/s as the trainer logs it: batch x D steps)")
    for column in ("mode", "first step", "step", "img/s"):
        speed.add_column(column, justify="right" if column != "mode" else "left")
    for mode in ["eager"] + (["torch.compile(G)"] if compiled else []):
        row = profiling.time_steps(config, options, steps=steps, warmup=2, compiled=mode != "eager")
        speed.add_row(mode, f"{row['first_step_s']:.2f} s", f"{row['step_s']:.2f} s", f"{row['img_per_s']:.0f}")
    Console().print(speed)
