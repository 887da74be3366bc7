"""Tensors in, images out: the Python API behind the CLI.

    >>> import annorm_cli
    >>> images = annorm_cli.generate(classes=["cat"], seeds=[0, 1, 2])   # [3, 32, 32, 3] uint8
"""
from annorm_cli.pipelines.generation import (SAMPLE_PREFIX, STANDING_SEEDS, Generated, check_precision,
                                             check_seed, check_truncation, class_index, for_truncation, generate,
                                             generate_images, interpolate, latent, sample_text, slerp)
from annorm_cli.pipelines.inpainting import (DEEPEST_HOLE, TEXTURE_MARGIN, as_hole, as_photo,
                                             downscale_known, hole_region, inpaint, inpaint_array, inpaint_text,
                                             match_surroundings, network_fill, network_scale, pull_push,
                                             texture_fill)
from annorm_cli.pipelines.layouts import (Layouts, generator_layouts, inpainting_layouts,
                                          layouts)

__all__ = [
    "SAMPLE_PREFIX",
    "STANDING_SEEDS",
    "Generated",
    "check_precision",
    "check_seed",
    "check_truncation",
    "class_index",
    "for_truncation",
    "generate",
    "generate_images",
    "interpolate",
    "latent",
    "sample_text",
    "slerp",
    "DEEPEST_HOLE",
    "TEXTURE_MARGIN",
    "as_hole",
    "as_photo",
    "downscale_known",
    "hole_region",
    "inpaint",
    "inpaint_array",
    "inpaint_text",
    "match_surroundings",
    "network_fill",
    "network_scale",
    "pull_push",
    "texture_fill",
    "Layouts",
    "generator_layouts",
    "inpainting_layouts",
    "layouts",
]
