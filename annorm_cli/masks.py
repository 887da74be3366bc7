"""Free-form hole masks: random walks of thick strokes (DeepFill v2 style) plus rectangles,
deterministic from a seed. True (1) marks the hole."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

EVAL_BUCKETS = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4))


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    size = min(height, width)
    thickness = int(rng.uniform(0.03, 0.09) * size) + 1
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(3, 9))):
        angle += rng.uniform(-1.2, 1.2)
        length = rng.uniform(0.08, 0.25) * size
        nx = float(np.clip(x + length * math.cos(angle), 0, width - 1))
        ny = float(np.clip(y + length * math.sin(angle), 0, height - 1))
        draw.line([(x, y), (nx, ny)], fill=255, width=thickness)
        r = thickness / 2
        draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
        x, y = nx, ny


def _rectangle(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    h, w = rng.uniform(0.1, 0.35) * height, rng.uniform(0.1, 0.35) * width
    top, left = rng.uniform(0, height - h), rng.uniform(0, width - w)
    draw.rectangle([left, top, left + w, top + h], fill=255)


def random_mask(height: int, width: int, seed: int, ratio: tuple[float, float] = (0.1, 0.5)) -> np.ndarray:
    """A bool [height, width] hole mask whose hole ratio lies in `ratio` (as closely as the
    shapes allow): strokes and rectangles are added until a target ratio drawn from the range
    is reached; a shape that would overshoot the range's top is skipped."""
    rng = np.random.default_rng(seed)
    low, high = ratio
    target = rng.uniform(low, high)
    canvas = Image.new("L", (width, height), 0)
    current = np.zeros((height, width), bool)
    for _ in range(200):
        trial = canvas.copy()
        draw = ImageDraw.Draw(trial)
        (_stroke if rng.uniform() < 0.7 else _rectangle)(draw, rng, height, width)
        candidate = np.asarray(trial) > 0
        if candidate.mean() > high:
            continue
        canvas, current = trial, candidate
        if current.mean() >= target:
            break
    return current
