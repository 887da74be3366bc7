"""SA-GAN self-attention (Zhang et al., 2019): the baseline AN is compared against."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from annorm_cli.errors import BadInputError


class SelfAttention2d(nn.Module):
    """y = x + gamma * softmax(q^T k) v over all H*W positions; gamma starts at 0.

    Query and key have C/8 channels (at least 1), the value C. Cost is O((H*W)^2 * C).

    Example:
        >>> SelfAttention2d(64)(torch.randn(1, 64, 16, 16)).shape
        torch.Size([1, 64, 16, 16])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = max(1, channels // 8)
        self.channels = channels
        self.query = nn.Conv2d(channels, reduced, 1)
        self.key = nn.Conv2d(channels, reduced, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise BadInputError(
                f"SelfAttention2d expects input of shape [B, {self.channels}, H, W], got {list(x.shape)}.")
        B, C, H, W = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)                  # [B, P, c]
        key = self.key(x).flatten(2).transpose(1, 2)                      # [B, P, c]
        value = self.value(x).flatten(2).transpose(1, 2)                  # [B, P, C]
        # SA-GAN applies no 1/sqrt(c) scaling; the fused kernel computes softmax(q k^T) v.
        attended = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # [B, P, C]
        return x + self.gamma * attended.transpose(1, 2).reshape(B, C, H, W)
