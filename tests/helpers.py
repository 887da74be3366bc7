"""Tiny data and models for fast tests."""
from pathlib import Path

import numpy as np
from PIL import Image

from annorm_cli.models import ClassConditionalConfig
from annorm_cli.models.inpainting import InpaintConfig

TINY = ClassConditionalConfig(n_classes=2, z_dim=8, g_channels=(16, 8, 8, 8), d_channels=(8, 8, 8, 8),
                              n_entities=4)
TINY_INPAINT = InpaintConfig(channels=4, n_entities=4, dilations=(2, 4), attention_blocks=1)


def tiny_image_folder(root: Path, per_class: int = 16, classes=("cat", "dog")) -> Path:
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) // (index + 1)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root
