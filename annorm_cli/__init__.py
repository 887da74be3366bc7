"""annorm: conditional image generation with Attentive Normalization (Wang et al., CVPR 2020).

Python API: `annorm_cli.generate(...)`; layers in `annorm_cli.nn`.
"""
__version__ = "0.1.0"


def generate(*args, **kwargs):
    """See annorm_cli.pipelines.generate (imported lazily so `import annorm_cli` stays light)."""
    from annorm_cli.pipelines import generate as _generate
    return _generate(*args, **kwargs)


def inpaint(*args, **kwargs):
    """See annorm_cli.pipelines.inpaint."""
    from annorm_cli.pipelines import inpaint as _inpaint
    return _inpaint(*args, **kwargs)
