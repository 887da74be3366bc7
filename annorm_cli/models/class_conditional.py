"""Class-conditional generator (SA-GAN / BigGAN family, 32x32) and projection discriminator.

z [B, z_dim] -> 4x4 -> 8x8 -> 16x16 (attention stage) -> 32x32 -> RGB in [-1, 1].
The config dataclass is stored with the weights and is the only way a model is rebuilt.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from annorm_cli.errors import BadInputError
from annorm_cli.nn.blocks import ATTENTION_KINDS, AttentionStage, CrossReplicaBatchNorm2d, DownBlock, UpBlock, \
    make_attention


@dataclass(frozen=True)
class ClassConditionalConfig:
    """Architecture of a class-conditional generator / discriminator pair.

    g_channels: generator widths at 4, 8, 16 and 32 pixels (tapered: wide at low resolution).
    d_channels: discriminator widths after its blocks at 16, 8, 4 and 4 pixels.
    attention: "an" | "sa" | "none", placed at 16x16 in both networks.
    """
    n_classes: int = 10
    z_dim: int = 128
    resolution: int = 32
    g_channels: tuple[int, int, int, int] = (256, 128, 64, 32)      # the shipped cifar10-an
    d_channels: tuple[int, int, int, int] = (64, 128, 128, 128)
    attention: str = "an"
    n_entities: int = 16
    temperature: float = 10.0
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_KINDS:
            raise BadInputError(f"Unknown attention '{self.attention}'; choose one of {', '.join(ATTENTION_KINDS)}.")
        if self.resolution != 32:
            raise BadInputError("The class-conditional architecture is defined for 32x32 images only.")
        if self.class_names and len(self.class_names) != self.n_classes:
            raise BadInputError(f"The config names {len(self.class_names)} classes but n_classes is {self.n_classes}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClassConditionalConfig":
        """From a card: every field type- and size-checked first (models/config.py)."""
        from annorm_cli.models.config import config_from_dict
        return config_from_dict(cls, data)


class Generator(nn.Module):
    """(z [B, z_dim], labels [B]) -> images [B, 3, 32, 32] in [-1, 1]."""

    def __init__(self, config: ClassConditionalConfig) -> None:
        super().__init__()
        self.config = config
        c4, c8, c16, c32 = config.g_channels
        self.stem = nn.Linear(config.z_dim, c4 * 4 * 4)
        self.block8 = UpBlock(c4, c8, config.n_classes)
        self.block16 = UpBlock(c8, c16, config.n_classes)
        self.attention = AttentionStage(config.attention, c16, n_entities=config.n_entities,
                                        temperature=config.temperature)
        self.block32 = UpBlock(c16, c32, config.n_classes)
        self.out_norm = CrossReplicaBatchNorm2d(c32)
        self.to_rgb = nn.Conv2d(c32, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """labels: class indices [B] or class weights [B, n_classes] (to blend classes)."""
        cfg = self.config
        if z.ndim != 2 or z.shape[1] != cfg.z_dim or labels.shape[:1] != z.shape[:1] or \
                (labels.ndim == 2 and labels.shape[1] != cfg.n_classes) or labels.ndim > 2:
            raise BadInputError(f"Generator expects z [B, {cfg.z_dim}] and labels [B], "
                                f"got {list(z.shape)} and {list(labels.shape)}.")
        h = self.stem(z).view(z.shape[0], -1, 4, 4)                        # [B, c4, 4, 4]
        h = self.block16(self.block8(h, labels), labels)                   # [B, c16, 16, 16]
        h = self.block32(self.attention(h), labels)                        # [B, c32, 32, 32]
        return torch.tanh(self.to_rgb(F.relu(self.out_norm(h))))           # [B, 3, 32, 32]


class Discriminator(nn.Module):
    """Projection discriminator with spectral norm: (images, labels) -> logits [B]."""

    def __init__(self, config: ClassConditionalConfig) -> None:
        super().__init__()
        d16, d8, d4, d4b = config.d_channels
        self.block16 = DownBlock(3, d16, first=True)                         # 32 -> 16
        self.attention = make_attention(config.attention, d16, n_entities=config.n_entities,
                                        temperature=config.temperature)
        self.block8 = DownBlock(d16, d8)
        self.block4 = DownBlock(d8, d4)
        self.block4b = DownBlock(d4, d4b, down=False)
        self.linear = spectral_norm(nn.Linear(d4b, 1))
        self.embed = spectral_norm(nn.Embedding(config.n_classes, d4b))

    def forward(self, images: torch.Tensor, labels: torch.Tensor, class_scores: bool = False):
        """-> logits [B]; with `class_scores`, also the projection onto every class's embedding
        [B, n_classes] (logits of D as a classifier, for the auxiliary class loss)."""
        h = self.attention(self.block16(images))                           # [B, d16, 16, 16]
        h = self.block4b(self.block4(self.block8(h)))                      # [B, d4b, 4, 4]
        h = F.relu(h).sum((2, 3))                                          # [B, d4b]
        embeddings = self.embed.weight                                     # [n_classes, d4b], spectrally normed
        logits = self.linear(h).squeeze(1) + (embeddings[labels] * h).sum(1)
        return (logits, h @ embeddings.T) if class_scores else logits


def standing_statistics(generator: Generator, labels_and_noise, seed: int = 0) -> None:
    """Recompute every batch-norm running statistic of `generator` as the plain average over
    the given (z, labels) batches, in training mode; the generator is left in eval mode.
    Training mode makes AN sample its positions at random: from torch's generator seeded with
    `seed` inside a fork (the caller's random state is untouched), so the statistics, and the
    samples drawn with them, are the same on every run."""
    norms = [m for m in generator.modules() if isinstance(m, CrossReplicaBatchNorm2d)]
    for norm in norms:
        norm.start_standing_stats()
    generator.train()
    device = next(generator.parameters()).device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for z, labels in labels_and_noise:
            generator(z, labels)
    for norm in norms:
        norm.stop_standing_stats()
    generator.eval()
