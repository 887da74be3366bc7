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


# ----------------------------------------------------------------------------- object removal
OBJECT_RATIO = (0.1, 0.25)
OBJECT_SHAPES = ("person", "car", "sign", "blob", "box")


def _shape_polygons(kind: str, rng: np.random.Generator) -> list[tuple[str, list[float]]]:
    """One object's outline in unit coordinates (x, y in [0, 1] of its own box), as PIL shapes:
    ("ellipse" | "rectangle", [x0, y0, x1, y1]) or ("polygon", [x0, y0, x1, y1, ...])."""
    if kind == "person":                       # head, torso, two legs: a standing silhouette
        return [("ellipse", [0.3, 0.0, 0.7, 0.16]), ("rectangle", [0.12, 0.14, 0.88, 0.6]),
                ("rectangle", [0.2, 0.55, 0.48, 1.0]), ("rectangle", [0.52, 0.55, 0.8, 1.0])]
    if kind == "car":                          # body, cabin, wheels
        return [("rectangle", [0.0, 0.35, 1.0, 0.85]), ("polygon", [0.18, 0.38, 0.3, 0.0, 0.72, 0.0, 0.85, 0.38]),
                ("ellipse", [0.1, 0.65, 0.3, 1.0]), ("ellipse", [0.7, 0.65, 0.9, 1.0])]
    if kind == "sign":                         # a board (square or round) on a post
        board = ("ellipse" if rng.uniform() < 0.5 else "rectangle", [0.0, 0.0, 1.0, 0.55])
        return [board, ("rectangle", [0.42, 0.5, 0.58, 1.0])]
    if kind == "blob":                         # a smooth random star-shaped outline
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        harmonics = sum(rng.uniform(-0.12, 0.12) * np.cos(k * angles + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4))
        radius = 0.5 * (0.8 + harmonics) / (0.8 + 0.36)
        points = np.stack([0.5 + radius * np.cos(angles), 0.5 + radius * np.sin(angles)], 1)
        return [("polygon", points.ravel().tolist())]
    return [("rectangle", [0.0, 0.0, 1.0, 1.0])]


ASPECTS = {"person": (0.3, 0.45), "car": (1.6, 2.4), "sign": (0.5, 0.8), "blob": (0.6, 1.6), "box": (0.4, 2.5)}


def _draw_object(kind: str, rng: np.random.Generator, width: int, height: int, box_w: float, box_h: float,
                 left: float, top: float) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for shape, coords in _shape_polygons(kind, rng):
        xy = [left + c * box_w if i % 2 == 0 else top + c * box_h for i, c in enumerate(coords)]
        getattr(draw, shape)(xy, fill=255)
    return np.asarray(canvas) > 0


def object_mask(height: int, width: int, seed: int, ratio: tuple[float, float] = OBJECT_RATIO) -> np.ndarray:
    """A bool [height, width] hole of one solid object, as a user draws it to remove a person, a
    car, a sign, a blob or a box: a shape (from OBJECT_SHAPES, by the seed) with its own aspect
    ratio, scaled so its area is a target drawn uniformly from `ratio` of the photo (within a few
    per cent; less only where the photo cannot hold the shape), placed at a random position."""
    rng = np.random.default_rng(seed)
    kind = OBJECT_SHAPES[int(rng.integers(len(OBJECT_SHAPES)))]
    aspect = rng.uniform(*ASPECTS[kind])                                    # width / height of its box
    target = rng.uniform(*ratio) * height * width
    unit = _draw_object(kind, np.random.default_rng(seed), 200, 200, 200, 200, 0, 0).mean()  # fill of its box
    box_h = min(math.sqrt(target / (unit * aspect)), height)
    box_w = min(box_h * aspect, width)
    box_h = min(target / (unit * box_w), height)
    left, top = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
    return _draw_object(kind, np.random.default_rng(seed), width, height, box_w, box_h, left, top)


def flat_region_mask(image: np.ndarray, fraction: float = 1 / 16, shape: str = "box") -> np.ndarray:
    """A hole of `fraction` of the photo (a box or an ellipse with the photo's aspect ratio) over
    its smoothest region: the position, on a grid of 1/32 of each side, where the box and a band
    of half its size around it have the least mean squared gradient (sky, water, a wall). The
    case where a fill must come back smooth and of the surrounding colour."""
    H, W = image.shape[:2]
    side = math.sqrt(fraction)
    h, w = max(1, round(H * side)), max(1, round(W * side))
    grey = image.astype(np.float64).mean(2)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.diff(grey, axis=1) ** 2
    energy[1:, :] += np.diff(grey, axis=0) ** 2
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, best_score = (0, 0), float("inf")
    for top in range(0, H - h + 1, max(1, H // 32)):
        for left in range(0, W - w + 1, max(1, W // 32)):
            t, b = max(0, top - h // 2), min(H, top + h + h // 2)
            l, r = max(0, left - w // 2), min(W, left + w + w // 2)
            score = (integral[b, r] - integral[t, r] - integral[b, l] + integral[t, l]) / ((b - t) * (r - l))
            if score < best_score:
                best, best_score = (top, left), score
    canvas = Image.new("L", (W, H), 0)
    top, left = best
    (ImageDraw.Draw(canvas).rectangle if shape == "box" else ImageDraw.Draw(canvas).ellipse)(
        [left, top, left + w - 1, top + h - 1], fill=255)
    return np.asarray(canvas) > 0


def hole_depth(mask: np.ndarray) -> int:
    """How far (px, chessboard distance, to within the reduction factor) the deepest hole pixel
    of bool mask [H, W] lies from the nearest known pixel or the image border: counted by 3x3
    erosions on the mask reduced to a long side of at most 256 (a reduced pixel is hole only
    if all of it is)."""
    import torch
    import torch.nn.functional as F
    factor = max(1, math.ceil(max(mask.shape) / 256))
    hole = torch.from_numpy(np.ascontiguousarray(mask))[None, None].float()
    if factor > 1:
        hole = (F.avg_pool2d(hole, factor, ceil_mode=True) > 0.999).float()
    depth = 0
    while bool(hole.any()):
        hole = -F.max_pool2d(F.pad(-hole, (1, 1, 1, 1), value=0.0), 3, 1)        # erode; outside = known
        depth += 1
    return depth * factor


def _row_runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """The horizontal runs of True in bool mask [H, W]: (row, first column, last column + 1)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    rows, cols = np.nonzero(np.diff(padded, axis=1))                            # starts (+1) and ends (-1) alternate
    return [(int(r), int(s), int(e)) for r, s, e in zip(rows[::2], cols[::2], cols[1::2])]


def hole_parts(mask: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """The connected parts of bool mask [H, W] (8-connected), largest first, each as (top, left,
    the part cropped to its bounding box [h, w] bool), so a mask of many specks costs no more
    memory than the mask: runs of each row joined to the runs of the row above that touch them
    (union-find)."""
    runs = _row_runs(mask)
    parent = list(range(len(runs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    by_row: dict[int, list[int]] = {}
    for i, (row, start, end) in enumerate(runs):
        for j in by_row.get(row - 1, []):
            _, s, e = runs[j]
            if s <= end and start <= e:                                         # overlap, diagonals included
                parent[root(i)] = root(j)
        by_row.setdefault(row, []).append(i)
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(root(i), []).append(run)
    parts = []
    for members in groups.values():
        top, bottom = members[0][0], members[-1][0] + 1                         # runs come row by row
        left, right = min(m[1] for m in members), max(m[2] for m in members)
        part = np.zeros((bottom - top, right - left), bool)
        for row, start, end in members:
            part[row - top, start - left:end - left] = True
        parts.append((top, left, part))
    return sorted(parts, key=lambda p: -int(p[2].sum()))


def solidity(mask: np.ndarray) -> float:
    """The share of its convex hull that bool mask [H, W] covers (pixels as unit squares): 1 for
    a box, about 0.98 for a disc, low for strokes and scribbles. The hull of the first and last
    pixel's corners of each row (Andrew's monotone chain)."""
    runs = _row_runs(mask)
    if not runs:
        return 0.0
    corners = {(x, y) for row, start, end in runs for x in (start, end) for y in (row, row + 1)}
    points = sorted(corners)

    def half(points):
        chain: list[tuple[int, int]] = []
        for p in points:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain
    hull = half(points)[:-1] + half(points[::-1])[:-1]
    area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1])))
    return float(mask.sum()) / area if area > 0 else 1.0
