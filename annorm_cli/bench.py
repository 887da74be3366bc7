"""Benchmarks that print tables: the AN layer against its reference, self-attention and the
cheapest comparable block. Each measurement runs in a fresh subprocess so its peak memory is
its own (CPU: growth of the peak resident set; CUDA: torch's peak allocation)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

LAYER_KINDS = ("an-fast", "an-reference", "self-attention", "conv1x1+instnorm")


class CheapestBlock(nn.Module):
    """x + InstanceNorm(conv1x1(x)): the cheapest block with a learned projection and a
    normalization, the yardstick for AN's overhead."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.norm = nn.InstanceNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(x))


def build_layer(kind: str, channels: int, entities: int) -> nn.Module:
    from annorm_cli.nn import AttentiveNorm2d, SelfAttention2d
    if kind == "an-fast":
        layer = AttentiveNorm2d(channels, n_entities=entities, impl="fast")
    elif kind == "an-reference":
        layer = AttentiveNorm2d(channels, n_entities=entities, impl="reference")
    elif kind == "self-attention":
        layer = SelfAttention2d(channels)
    else:
        layer = CheapestBlock(channels)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name == "gamma":
                p.fill_(0.5)  # so the whole block is on the gradient path
    return layer


def estimated_bytes(kind: str, batch: int, channels: int, entities: int, pixels: int) -> float:
    """Rough peak of forward+backward in float32, used only to skip what cannot fit."""
    base = 12 * batch * pixels * (channels + entities) * 4
    if kind == "an-reference":
        return base + 6 * batch * pixels * channels * entities * 4
    if kind == "self-attention":
        return base + 3 * batch * pixels * pixels * 4
    return base


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, device: torch.device, min_seconds: float = 0.3, min_runs: int = 3,
               max_runs: int = 50) -> tuple[float, float]:
    """(median ms of repeated runs of fn after one warm-up, their spread: the interquartile range
    over the median, which another process on the same cores inflates)."""
    import time
    fn()
    _sync(device)
    times = []
    while len(times) < min_runs or (sum(times) < min_seconds and len(times) < max_runs):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    spread = (times[(3 * len(times)) // 4] - times[len(times) // 4]) / median
    return 1000 * median, spread


def measure_one(kind: str, resolution: int, channels: int, entities: int, batch: int, device: str) -> dict:
    """Forward (eval, no grad) and forward+backward (train) time and peak memory of one layer."""
    import resource
    dev = torch.device(device)
    torch.manual_seed(0)
    layer = build_layer(kind, channels, entities).to(dev)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base_cuda = torch.cuda.memory_allocated(dev)
    x = torch.randn(batch, channels, resolution, resolution, device=dev, requires_grad=True)

    def forward_backward():
        layer.train()
        layer(x).sum().backward()
        x.grad = None

    forward_backward()
    _sync(dev)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base_cuda
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    train_ms, train_spread = _median_ms(forward_backward, dev)
    layer.eval()
    with torch.no_grad():
        forward_ms, forward_spread = _median_ms(lambda: layer(x), dev)
    return {"kind": kind, "resolution": resolution, "forward_ms": forward_ms, "train_ms": train_ms,
            "peak_bytes": peak, "spread": max(train_spread, forward_spread)}


@dataclass
class LayerBenchConfig:
    resolutions: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    channels: int = 32
    entities: int = 16
    batch: int = 1
    device: str = "cpu"
    max_bytes: float = 8e9
    threads: Optional[int] = None


def _run_fresh(code: str) -> tuple[Optional[dict], str]:
    """Run `code` in a fresh interpreter; (the JSON its last line prints, "") or (None, its error)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["failed"]
        return None, "out of memory" if "memory" in done.stderr.lower() else lines[-1][:80]
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


def run_cell(config: LayerBenchConfig, kind: str, resolution: int) -> dict:
    """Measure one (layer, resolution) in a fresh interpreter; returns the measurement or a skip."""
    need = estimated_bytes(kind, config.batch, config.channels, config.entities, resolution ** 2)
    if need > config.max_bytes:
        return {"kind": kind, "resolution": resolution, "skipped": f"needs ~{need / 1e9:.0f} GB"}
    args = [kind, resolution, config.channels, config.entities, config.batch, config.device]
    code = ("import json,sys,torch;from annorm_cli.bench import measure_one;"
            + (f"torch.set_num_threads({config.threads});" if config.threads else "")
            + f"print(json.dumps(measure_one(*{args!r})))")
    result, error = _run_fresh(code)
    return result or {"kind": kind, "resolution": resolution, "skipped": error}


def loglog_slope(rows: list[dict], key: str = "train_ms", min_resolution: int = 64) -> Optional[float]:
    """Least-squares slope of log(time) against log(pixels) over the measured rows >= min_resolution."""
    points = [(math.log(r["resolution"] ** 2), math.log(r[key])) for r in rows
              if "skipped" not in r and r["resolution"] >= min_resolution]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def time_generate(generator: nn.Module, batch_sizes: tuple[int, ...], device: torch.device,
                  images: int = 256) -> list[dict]:
    """Images per second of generate_images at each batch size (`images` images, after a warm-up)."""
    import time

    from annorm_cli.pipelines import generate_images
    rows = []
    for batch in batch_sizes:
        count = max(images, batch)
        classes, seeds = [i % generator.config.n_classes for i in range(count)], list(range(count))
        generate_images(generator, classes[:batch], seeds[:batch], batch_size=batch, device=device)
        start = time.perf_counter()
        generate_images(generator, classes, seeds, batch_size=batch, device=device)
        _sync(device)
        rows.append({"batch": batch, "img_per_s": count / (time.perf_counter() - start)})
    return rows


INPAINT_HOLES = ("strokes", "object")


def measure_inpaint(weights_path: str, height: int, width: int, device: str, hole: str = "strokes",
                    texture: bool = True, repeats: int = 3) -> dict:
    """Seconds (median) and peak memory growth of inpaint_array on one [height, width] photo (noise)
    with a 30-40% free-form hole ("strokes") or one object of 10-25% ("object", seed 0); meant to
    run in a fresh process (see run_inpaint_cell)."""
    import resource
    import time

    import numpy as np

    from annorm_cli import weights
    from annorm_cli.masks import object_mask, random_mask
    from annorm_cli.pipelines import inpaint_array
    dev = torch.device(device)
    network, _ = weights.load(weights=weights_path, task="inpaint")
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = random_mask(height, width, 0, (0.3, 0.4)) if hole == "strokes" else object_mask(height, width, 0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    inpaint_array(network, image, mask, device=dev, texture=texture)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        inpaint_array(network, image, mask, device=dev, texture=texture)
        _sync(dev)
        times.append(time.perf_counter() - start)
    return {"size": f"{width}x{height}", "hole": hole, "seconds": sorted(times)[len(times) // 2], "peak_bytes": peak}


def run_inpaint_cell(weights_path: str, height: int, width: int, device: str, threads: Optional[int],
                     hole: str = "strokes", texture: bool = True) -> dict:
    code = ("import json,torch;from annorm_cli.bench import measure_inpaint;"
            + (f"torch.set_num_threads({threads});" if threads else "")
            + f"print(json.dumps(measure_inpaint({weights_path!r}, {height}, {width}, {device!r}, {hole!r}, {texture!r})))")
    result, error = _run_fresh(code)
    return result or {"size": f"{width}x{height}", "hole": hole, "skipped": error}
