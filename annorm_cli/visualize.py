"""Pictures of AN layouts: hard layout (argmax entity, one colour each), blends, per-entity heat
maps ranked by share, and a contact sheet; the raw arrays go to layouts.npz."""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw


def palette(n: int) -> np.ndarray:
    """n well-separated colours [n, 3] uint8 (golden-ratio hues)."""
    colours = [colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95) for i in range(n)]
    return (np.array(colours) * 255).astype(np.uint8)


def heat(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8 with a blue-cyan-yellow-red ramp."""
    stops = np.array([[0, 0, 128], [0, 160, 255], [255, 230, 0], [220, 0, 0]], float)
    position = np.clip(values, 0, 1) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = (position - low)[..., None]
    return (stops[low] * (1 - frac) + stops[low + 1] * frac).astype(np.uint8)


def resize(array: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """[h, w] float or [h, w, 3] uint8 -> (H, W), nearest or bilinear."""
    mode = Image.NEAREST if nearest else Image.BILINEAR
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size[::-1], mode))
    return np.asarray(Image.fromarray(array).resize(size[::-1], mode))


def entity_shares(layout: np.ndarray) -> np.ndarray:
    """Share of the image each entity holds: mean of S_i over positions, [n]."""
    return layout.reshape(layout.shape[0], -1).mean(1)


def hard_layout(layout: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Argmax entity per position, coloured, nearest-upsampled to `size`: [H, W, 3] uint8."""
    return resize(palette(layout.shape[0])[layout.argmax(0)], size, nearest=True)


def entity_heat(layout: np.ndarray, entity: int, image: np.ndarray) -> np.ndarray:
    """Entity's soft map min-max scaled, bilinear-upsampled, blended 0.2 image + 0.8 map (as the authors)."""
    soft = layout[entity]
    soft = (soft - soft.min()) / max(float(soft.max() - soft.min()), 1e-12)
    return (0.2 * image + 0.8 * heat(resize(soft, image.shape[:2], nearest=False))).astype(np.uint8)


def ranked_entities(layout: np.ndarray, top_k: int, min_share: float = 0.01) -> list[int]:
    """Entities by decreasing share, empty ones (share below `min_share`) left out."""
    shares = entity_shares(layout)
    order = [int(i) for i in np.argsort(-shares) if shares[i] >= min_share]
    return order[:top_k]


def contact_sheet(image: np.ndarray, named_layouts: dict[str, np.ndarray], top_k: int) -> np.ndarray:
    """One row per AN layer: image, hard layout, blend, then the top-k entity heat maps, labelled."""
    H, W = image.shape[:2]
    pad, label_h = 4, 14
    rows = []
    for name, layout in named_layouts.items():
        hard = hard_layout(layout, (H, W))
        tiles = [("image", image), ("hard layout", hard), ("blend", (0.5 * image + 0.5 * hard).astype(np.uint8))]
        shares = entity_shares(layout)
        tiles += [(f"entity {i} ({shares[i]:.0%})", entity_heat(layout, i, image)) for i in ranked_entities(layout, top_k)]
        rows.append((name, tiles))
    cols = max(len(t) for _, t in rows)
    sheet = Image.new("RGB", (pad + cols * (W + pad), sum(2 * label_h + H + pad for _ in rows) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for name, tiles in rows:
        draw.text((pad, y), f"layer {name}", fill="black")
        for c, (caption, tile) in enumerate(tiles):
            x = pad + c * (W + pad)
            draw.text((x, y + label_h), caption, fill="black")
            sheet.paste(Image.fromarray(tile), (x, y + 2 * label_h))
        y += 2 * label_h + H + pad
    return np.asarray(sheet)
