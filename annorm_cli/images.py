"""Images: tensors <-> PIL, grids, and atomic PNG writes with text metadata."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from annorm_cli.files import atomic_open


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


def label_columns(sheet: np.ndarray, labels: list[str], *, pad: int = 2, band: int = 16) -> np.ndarray:
    """A make_grid sheet [H, W, 3] with a white band on top naming its len(labels) columns."""
    from PIL import ImageDraw
    width = (sheet.shape[1] - pad) // len(labels)
    canvas = Image.new("RGB", (sheet.shape[1], sheet.shape[0] + band), "white")
    canvas.paste(Image.fromarray(sheet), (0, band))
    draw = ImageDraw.Draw(canvas)
    for column, label in enumerate(labels):
        draw.text((pad + column * width + 4, 3), label, fill="black")
    return np.asarray(canvas)


def png_bytes(pixels: np.ndarray, *, text: Optional[Mapping[str, str]] = None, compress_level: int = 6) -> bytes:
    """An [H, W, 3] uint8 array as the bytes of a PNG file with tEXt chunks (zlib level
    `compress_level`: 1 is several times faster and a little larger, for answers over localhost)."""
    import io
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def png_rgba(hole: np.ndarray) -> bytes:
    """A hole mask [H, W] bool as PNG bytes: hole pixels opaque white, the rest transparent."""
    rgba = np.zeros((*hole.shape, 4), np.uint8)
    rgba[hole] = 255
    return png_bytes(rgba)


def save_png(pixels: np.ndarray, path: str | os.PathLike, *, text: Optional[Mapping[str, str]] = None) -> Path:
    """Write an [H, W, 3] (or grey [H, W]) uint8 array as PNG atomically (temp file + rename), with tEXt chunks.
    Callers check for existing files (and --overwrite) before any work starts."""
    path = Path(path)
    data = png_bytes(pixels, text=text)
    with atomic_open(path) as handle:
        handle.write(data)
    return path


MAX_PIXELS = 50_000_000     # larger images are refused before decoding (decompression bombs)


def _open(source: Path | bytes, what: str, name: str) -> Image.Image:
    """A decoded image from a file path or the bytes of an upload, EXIF orientation applied.
    Refuses a missing, empty or unreadable file and one of more than MAX_PIXELS pixels (checked
    from the header, before decoding)."""
    import io
    import warnings

    from annorm_cli.errors import BadInputError
    if isinstance(source, Path):
        if not source.is_file():
            raise BadInputError(f"The {what} '{name}' does not exist.")
        if source.stat().st_size == 0:
            raise BadInputError(f"The {what} '{name}' is empty.")
    elif not source:
        raise BadInputError(f"The {what} '{name}' is empty.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(source.read_bytes() if isinstance(source, Path) else source))
            width, height = image.size
        except Image.DecompressionBombError:                  # far too large: Pillow refused to open it
            raise BadInputError(f"The {what} '{name}' has more than {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} "
                                f"million pixels, more than the {MAX_PIXELS // 1_000_000} million annorm reads; "
                                "downscale it first.") from None
        except Exception:
            raise BadInputError(f"The {what} '{name}' is not a readable image (truncated or another format).") from None
        if width * height > MAX_PIXELS:
            raise BadInputError(f"The {what} '{name}' has {width * height / 1e6:.0f} million pixels, more than "
                                f"the {MAX_PIXELS // 1_000_000} million annorm reads; downscale it first.")
        try:
            image.load()
        except Exception:
            raise BadInputError(f"The {what} '{name}' is not a readable image (truncated or another format).") from None
    from PIL import ImageOps
    return ImageOps.exif_transpose(image)


def _source(path_or_bytes: str | os.PathLike | bytes, name: Optional[str]) -> tuple[Path | bytes, str]:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes), name or "upload"
    return Path(path_or_bytes), name or str(path_or_bytes)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image as [H, W, 3] uint8 RGB with its values scaled, not clipped: 16-bit grey
    (I;16, or I with values up to 65535) / 257, float grey in [0, 1] x 255 (other floats
    clipped to 0-255); CMYK, palette, grey and alpha modes through PIL's conversion."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if image.mode == "F":
            scaled = values * 255 if values.min() >= 0 and top <= 1 else values
        elif image.mode.startswith("I;16") or top > 255:
            scaled = values / 257 if top <= 65535 else values / top * 255
        else:
            scaled = values
        grey = np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB")).copy()


def read_image(path: str | os.PathLike | bytes, *, name: Optional[str] = None) -> np.ndarray:
    """An image file (or its bytes) as [H, W, 3] uint8 RGB (see to_rgb), EXIF orientation
    applied; `name` is how messages call it (default: the path)."""
    source, name = _source(path, name)
    return to_rgb(_open(source, "image", name))


def is_grey(image: np.ndarray) -> bool:
    """True for an [H, W, 3] image whose three channels are equal everywhere."""
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def read_mask(path: str | os.PathLike | bytes, size: tuple[int, int], dilate: int = 0, *,
              name: Optional[str] = None, invert: bool = False) -> np.ndarray:
    """A hole mask [H, W] bool for an image of `size` (H, W). Hole = white pixels of an RGB mask,
    transparent pixels (alpha 0) of a mask with alpha, pixels >= 128 of a grey mask (or the 1s
    of a 0/1 mask), or any non-zero pixel of a 1-bit, 16-bit or float mask. A mask that differs
    from the image only by scale is resized (nearest); another aspect ratio is refused. `dilate`
    grows the hole by that many pixels. A mask that marks no pixel is refused (a silent copy of
    the photo would look like a failed fill)."""
    from annorm_cli.errors import BadInputError
    source, name = _source(path, name)
    image = _open(source, "mask", name)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"))
        hole = rgba[..., 3] == 0 if (rgba[..., 3] == 0).any() else rgba[..., :3].min(-1) >= 128
    elif image.mode == "L":                     # 0/1 label masks; else >= 128 (JPEG noise in black stays known)
        grey = np.asarray(image)
        hole = grey == 1 if grey.max() <= 1 else grey >= 128
    elif image.mode in ("1", "I", "I;16", "F"):
        hole = np.asarray(image) != 0
    else:
        hole = np.asarray(image.convert("RGB")).min(-1) >= 128
    H, W = size
    if hole.shape != (H, W):
        if abs(hole.shape[1] / hole.shape[0] - W / H) > 0.01 * (W / H):
            raise BadInputError(f"The mask '{name}' is {hole.shape[1]}x{hole.shape[0]}, another aspect ratio than "
                                f"the {W}x{H} image; make a mask of the image's shape.")
        hole = np.asarray(Image.fromarray(hole).resize((W, H), Image.NEAREST))
    if invert:
        hole = ~hole
    if dilate >= max(H, W):
        raise BadInputError(f"--dilate {dilate} would grow the hole over the whole {W}x{H} image; use a smaller value.")
    if dilate > 0:                       # a square max filter, separable: fast for any radius
        import torch.nn.functional as F
        grown = torch.from_numpy(hole.astype(np.float32))[None, None]
        grown = F.max_pool2d(grown, (2 * dilate + 1, 1), stride=1, padding=(dilate, 0))
        grown = F.max_pool2d(grown, (1, 2 * dilate + 1), stride=1, padding=(0, dilate))
        hole = grown[0, 0].numpy() > 0
    if not hole.any():
        raise BadInputError(f"The mask '{name}' marks no pixel as hole (white, transparent, or >= 128 "
                            f"in a grey mask); there is nothing to fill.")
    return hole.astype(bool)
