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
    order = [int(i) for i in np.argsort(-shares, kind="stable") if shares[i] >= min_share]
    return order[:top_k]


SHEET_TILE = 256           # long side of a tile on the contact sheet (the single PNGs keep full size)
SHEET_COLUMNS = 6          # tiles per line; a layer with more heat maps wraps
OUTLINE = (255, 0, 255)    # the hole's outline on the inpainting sheet


def outline(image: np.ndarray, hole: np.ndarray, width: int = 2) -> np.ndarray:
    """image [H, W, 3] uint8 with the hole's border (bool hole [H, W]: pixels of the hole within
    `width` px of a known one) painted OUTLINE."""
    inner = hole.copy()
    for _ in range(width):                                    # erode by one pixel, 4-neighbourhood
        padded = np.pad(inner, 1, constant_values=False)
        inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out = image.copy()
    out[hole & ~inner] = OUTLINE
    return out


def _font(size: int):
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def _tile_size(H: int, W: int) -> tuple[int, int]:
    scale = SHEET_TILE / max(H, W)
    return max(1, round(H * scale)), max(1, round(W * scale))


def contact_sheet(image: np.ndarray, named_layouts: dict[str, np.ndarray], top_k: int,
                  hole: np.ndarray | None = None) -> np.ndarray:
    """One block per AN layer: the image (the hole outlined when given), the hard layout, their
    blend, then the top-k entity heat maps, each captioned with its entity's colour in the hard
    layout and its share; tiles SHEET_TILE px on the long side, SHEET_COLUMNS per line."""
    h, w = _tile_size(*image.shape[:2])
    small = resize(image, (h, w), nearest=max(image.shape[:2]) < SHEET_TILE)
    if hole is not None:
        small = outline(small, resize(hole.astype(np.float32), (h, w), nearest=False) > 0.5)
    pad, caption_h, title_h = 6, 20, 24
    blocks = []
    for name, layout in named_layouts.items():
        colours, shares = palette(layout.shape[0]), entity_shares(layout)
        hard = hard_layout(layout, (h, w))
        tiles = [("image" + (", hole outlined" if hole is not None else ""), None, small),
                 ("hard layout (argmax entity)", None, hard),
                 ("blend", None, (0.5 * small + 0.5 * hard).astype(np.uint8))]
        tiles += [(f"entity {i}: {shares[i]:.0%} of the image", colours[i], entity_heat(layout, i, small))
                  for i in ranked_entities(layout, top_k)]
        title = f"layer {name}: {layout.shape[0]} entities, {int((shares >= 0.01).sum())} hold 1% or more"
        blocks.append((title, tiles))
    columns = min(SHEET_COLUMNS, max(len(tiles) for _, tiles in blocks))
    lines = [(len(tiles) + columns - 1) // columns for _, tiles in blocks]
    width = pad + columns * (w + pad)
    height = pad + sum(title_h + n * (caption_h + h + pad) for n in lines)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    title_font, caption_font = _font(16), _font(12)
    y = pad
    for (title, tiles), n in zip(blocks, lines):
        draw.text((pad, y + 2), title, fill="black", font=title_font)
        y += title_h
        for index, (caption, colour, tile) in enumerate(tiles):
            x, top = pad + (index % columns) * (w + pad), y + (index // columns) * (caption_h + h + pad)
            text_x = x
            if colour is not None:                          # the entity's colour in the hard layout
                draw.rectangle((x, top + 3, x + 12, top + 15), fill=tuple(int(c) for c in colour), outline="black")
                text_x += 17
            draw.text((text_x, top + 3), caption, fill="black", font=caption_font)
            sheet.paste(Image.fromarray(tile), (x, top + caption_h))
        y += n * (caption_h + h + pad)
    return np.asarray(sheet)
