"""Images: tensors <-> PIL, grids, and atomic PNG writes with text metadata."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch
from PIL import Image, PngImagePlugin


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8 (rounded, clamped)."""
    scaled = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(pixels: np.ndarray, cols: int, *, pad: int = 2, scale: int = 1, fill: int = 255) -> np.ndarray:
    """[B, H, W, 3] uint8 -> one [rows*(H+pad)+pad, cols*(W+pad)+pad, 3] sheet, nearest-upscaled by `scale`."""
    if scale > 1:
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    count, height, width, _ = pixels.shape
    cols = max(1, min(cols, count))
    rows = -(-count // cols)
    sheet = np.full((rows * (height + pad) + pad, cols * (width + pad) + pad, 3), fill, np.uint8)
    for index in range(count):
        r, c = divmod(index, cols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        sheet[top:top + height, left:left + width] = pixels[index]
    return sheet


def save_png(pixels: np.ndarray, path: str | os.PathLike, *, text: Optional[Mapping[str, str]] = None,
             overwrite: bool = True) -> Path:
    """Write an [H, W, 3] uint8 array as PNG atomically (temp file + rename), with tEXt chunks."""
    path = Path(path)
    if path.exists() and not overwrite:
        from annorm_cli.errors import OutputExistsError
        raise OutputExistsError(f"'{path}' already exists; pass --overwrite to replace it.")
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(pixels).save(handle, format="PNG", pnginfo=info)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
