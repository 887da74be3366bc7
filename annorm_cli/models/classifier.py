"""A small CIFAR-10 classifier, used only to score generated samples (class accuracy)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ClassifierConfig:
    n_classes: int = 10
    widths: tuple[int, int, int] = (32, 64, 128)
    class_names: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClassifierConfig":
        """From a card: every field type- and size-checked first (models/config.py)."""
        from annorm_cli.models.config import config_from_dict
        return config_from_dict(cls, data)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class Classifier(nn.Module):
    """images [B, 3, 32, 32] in [-1, 1] -> logits [B, n_classes]."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w1, w2, w3 = config.widths
        self.stem = nn.Sequential(nn.Conv2d(3, w1, 3, 1, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU())
        self.blocks = nn.Sequential(_Block(w1, w1, 1), _Block(w1, w2, 2), _Block(w2, w3, 2))
        self.head = nn.Linear(w3, config.n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(images))                                      # [B, w3, 8, 8]
        return self.head(h.mean((2, 3)))
