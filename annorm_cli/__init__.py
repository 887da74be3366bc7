"""annorm: conditional image generation with Attentive Normalization (Wang et al., CVPR 2020).

Python API (imported lazily, so `import annorm_cli` stays light):
    annorm_cli.generate(classes, seeds, ...)  -> Generated (images [N, 32, 32, 3] uint8, classes, seeds)
    annorm_cli.inpaint(image, mask, ...)      -> [H, W, 3] uint8, pixels outside the hole unchanged
    annorm_cli.layouts(class_name=..., seed=...) or layouts(image=..., mask=...) -> Layouts
Layers: annorm_cli.nn.AttentiveNorm2d, annorm_cli.nn.SelfAttention2d.
"""
__version__ = "0.1.0"

__all__ = ["generate", "inpaint", "layouts", "__version__"]


def __getattr__(name: str):
    if name in ("generate", "inpaint", "layouts"):
        from annorm_cli import pipelines
        return getattr(pipelines, name)
    raise AttributeError(f"module 'annorm_cli' has no attribute {name!r}")
