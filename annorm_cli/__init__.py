"""annorm: conditional image generation with Attentive Normalization (Wang et al., CVPR 2020)."""
__version__ = "0.1.0"
