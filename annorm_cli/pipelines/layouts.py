"""What the AN layers saw, recorded while a sample is generated or a photo inpainted."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from annorm_cli.errors import BadInputError
from annorm_cli.pipelines.generation import check_seed, class_index, generate_images
from annorm_cli.pipelines.inpainting import as_hole, as_photo, inpaint_array


@dataclass
class Layouts:
    """What the AN layers saw: the image [H, W, 3] uint8 and, per AN layer name, the soft layout
    [n, h, w] (sums to 1 over entities) and the logits [n, h, w], as float32 numpy arrays; for an
    inpainted photo also its hole [H, W] bool."""
    image: np.ndarray
    layouts: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]
    hole: Optional[np.ndarray] = None


def _recorded(model: torch.nn.Module, run) -> tuple[np.ndarray, dict, dict]:
    from annorm_cli.nn import recording_layouts
    with recording_layouts(model) as layers:
        image = run()
    if not layers:
        raise BadInputError("This model has no AN layers (it was trained with attention 'sa' or 'none').")
    return (image, {n: l.last_layout[0].cpu().numpy() for n, l in layers.items()},
            {n: l.last_logits[0].cpu().numpy() for n, l in layers.items()})


def generator_layouts(generator: torch.nn.Module, class_index_: int, seed: int, *,
                      truncation: Optional[float] = None) -> Layouts:
    """Generate one image and record the layouts of every AN layer of the generator."""
    run = lambda: generate_images(generator, [class_index_], [seed], truncation=truncation)[0]  # noqa: E731
    return Layouts(*_recorded(generator, run))


def inpainting_layouts(network: torch.nn.Module, image: np.ndarray, mask: np.ndarray, *,
                       max_side: Optional[int] = None) -> Layouts:
    """Inpaint one photo and record the layouts of every AN layer (on the region the network saw)."""
    run = lambda: inpaint_array(network, image, mask, max_side=max_side, whole_image=True)  # noqa: E731
    return Layouts(*_recorded(network, run), hole=mask.astype(bool))


def layouts(*, class_name: Optional[str] = None, seed: int = 0, image: Optional[np.ndarray] = None,
            mask: Optional[np.ndarray] = None, model: Optional[str] = None, weights: Optional[str] = None) -> Layouts:
    """Layouts for a generated image (class_name + seed) or an inpainted photo (image + mask).

    >>> result = annorm_cli.layouts(class_name="cat", seed=0)
    >>> {name: s.shape for name, s in result.layouts.items()}   # {'attention.attention': (16, 16, 16)}
    """
    from annorm_cli import weights as weight_files
    if image is None and mask is not None:
        raise BadInputError("A mask needs its photo: layouts(image=..., mask=...).")
    if image is not None:
        if mask is None:
            raise BadInputError("A photo's layouts need its mask too: layouts(image=..., mask=...).")
        photo = as_photo(image)
        network, _ = weight_files.load(model, weights, task="inpaint")
        return inpainting_layouts(network, photo, as_hole(mask, photo.shape[:2]))
    generator, _ = weight_files.load(model, weights)
    return generator_layouts(generator, class_index(class_name or 0, generator.config.class_names), check_seed(seed))


