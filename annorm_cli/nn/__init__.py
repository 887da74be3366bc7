"""Neural-network layers: Attentive Normalization (fast + reference) and the SA-GAN baseline."""
from annorm_cli.nn.attentive_norm import (AttentiveNorm2d, attentive_norm_layers, orthogonality_penalty,
                                          recording_layouts)
from annorm_cli.nn.self_attention import SelfAttention2d

__all__ = ["AttentiveNorm2d", "SelfAttention2d", "attentive_norm_layers", "orthogonality_penalty",
           "recording_layouts"]
