"""Coarse-to-fine inpainting network with AN at 1/4 resolution in the refinement stage, and an
SN-PatchGAN discriminator (training only).

Input: the image with the hole blanked (in [-1, 1], hole = 0) and the mask (1 = hole).
Coarse stage: encoder to 1/4, dilated convolutions, decoder -> a first guess. Refinement:
the composite of guess and known pixels goes through a second encoder to 1/4, where
conv -> AN -> ELU blocks model long-range context, then dilated convolutions and a decoder.
Convolutions are plain (conv -> ELU) or gated (DeepFill v2: ELU(features) * sigmoid(gate), a
learned soft mask per channel and pixel, at twice the FLOPs of each layer).
With `skips`, each decoder also adds its encoder's full- and half-resolution features (U-Net
style, through 1x1 convolutions that start at zero, so a model without skips is the starting
point of one with them) and no longer has to rebuild the hole's surroundings from 1/4 scale.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from annorm_cli.errors import BadInputError
from annorm_cli.nn import widen
from annorm_cli.nn.blocks import ATTENTION_KINDS, make_attention

MULTIPLE = 4   # inputs are padded to a multiple of this (two stride-2 stages)
CONVOLUTION_KINDS = ("plain", "gated")


@dataclass(frozen=True)
class InpaintConfig:
    """channels: width at full resolution (x2 at 1/2). quarter_channels: width at 1/4, where AN and
    the dilated convolutions work (None: 4 x channels). attention: "an" | "sa" | "none".
    work_side: the long side (px) of the region the network fills at inference; larger hole regions
    are downscaled to it. Set to the scale the network was trained at (random 128 crops of photos
    rescaled to 0.5-1x, masks scaled to the crop), so that holes look as large to the network as
    in training."""
    channels: int = 16
    attention: str = "an"
    n_entities: int = 16
    temperature: float = 10.0
    dilations: tuple[int, ...] = (2, 4, 8, 16)
    attention_blocks: int = 2
    work_side: int = 256
    skips: bool = False
    quarter_channels: Optional[int] = None
    convolution: str = "plain"

    @property
    def quarter(self) -> int:
        return self.quarter_channels or 4 * self.channels

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_KINDS:
            raise BadInputError(f"Unknown attention '{self.attention}'; choose one of {', '.join(ATTENTION_KINDS)}.")
        if self.convolution not in CONVOLUTION_KINDS:
            raise BadInputError(f"Unknown convolution '{self.convolution}'; choose one of {', '.join(CONVOLUTION_KINDS)}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "InpaintConfig":
        """From a card: every field type- and size-checked first (models/config.py)."""
        from annorm_cli.models.config import config_from_dict
        return config_from_dict(cls, data)


def conv2d(cin: int, cout: int, k: int, stride: int, dilation: int) -> nn.Conv2d:
    """A k x k convolution padded to keep the size (divided by the stride)."""
    return nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation)


class GatedConv(nn.Module):
    """DeepFill v2's gated convolution: one convolution makes features and gates,
    output = ELU(features) * sigmoid(gates) [B, cout, H', W']."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv = conv2d(cin, 2 * cout, k, stride, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, gates = self.conv(x).chunk(2, 1)
        return F.elu(features) * torch.sigmoid(gates)


def conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, kind: str = "plain") -> nn.Module:
    """conv -> ELU ("plain") or a gated convolution ("gated")."""
    if kind == "gated":
        return GatedConv(cin, cout, k, stride, dilation)
    return nn.Sequential(conv2d(cin, cout, k, stride, dilation), nn.ELU())


class Encoder(nn.Sequential):
    def __init__(self, cin: int, c: int, q: int, kind: str = "plain") -> None:
        super().__init__(conv(cin, c, 5, kind=kind), conv(c, 2 * c, 3, 2, kind=kind), conv(2 * c, 2 * c, kind=kind),
                         conv(2 * c, q, 3, 2, kind=kind))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B, cin, H, W] -> (features [B, q, H/4, W/4], (full [B, c, H, W], half [B, 2c, H/2, W/2]))."""
        full = self[0](x)
        half = self[2](self[1](full))
        return self[3](half), (full, half)


def zero_conv1x1(cin: int, cout: int) -> nn.Conv2d:
    layer = nn.Conv2d(cin, cout, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Decoder(nn.Module):
    def __init__(self, c: int, q: int, skips: bool = False, kind: str = "plain") -> None:
        super().__init__()
        self.up1 = nn.Sequential(conv(q, 2 * c, kind=kind), conv(2 * c, 2 * c, kind=kind))
        self.up2 = nn.Sequential(conv(2 * c, c, kind=kind), conv(c, c // 2 or 1, kind=kind))
        self.to_rgb = nn.Conv2d(c // 2 or 1, 3, 3, padding=1)
        self.skip_half = zero_conv1x1(2 * c, q) if skips else None
        self.skip_full = zero_conv1x1(c, 2 * c) if skips else None

    def forward(self, h: torch.Tensor, encoded: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """h [B, q, H/4, W/4] + the encoder's (full, half) features -> RGB [B, 3, H, W] in [-1, 1]."""
        full, half = encoded
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")                  # [B, q, H/2, W/2]
        if self.skip_half is not None:
            h = h + self.skip_half(half)
        h = F.interpolate(self.up1(h), scale_factor=2.0, mode="nearest")        # [B, 2c, H, W]
        if self.skip_full is not None:
            h = h + self.skip_full(full)
        return torch.tanh(self.to_rgb(self.up2(h)))


class AttentionBlock(nn.Module):
    """conv -> AN (or SA / nothing) -> ELU, as in the authors' refinement stage."""

    def __init__(self, config: InpaintConfig, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.attention = make_attention(config.attention, channels, n_entities=config.n_entities,
                                        temperature=config.temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.attention(self.conv(x)))


class InpaintGenerator(nn.Module):
    """(image [B, 3, H, W] in [-1, 1], mask [B, 1, H, W] with 1 = hole) -> (coarse, refined),
    H and W multiples of 4 (pipelines pad). Pixels outside the hole are not composited here."""

    def __init__(self, config: InpaintConfig) -> None:
        super().__init__()
        self.config = config
        c, q, kind = config.channels, config.quarter, config.convolution
        self.coarse_encoder = Encoder(5, c, q, kind)
        self.coarse_middle = nn.Sequential(*[conv(q, q, dilation=d, kind=kind) for d in config.dilations])
        self.coarse_decoder = Decoder(c, q, config.skips, kind)
        self.refine_encoder = Encoder(5, c, q, kind)
        self.refine_attention = nn.Sequential(*[AttentionBlock(config, q) for _ in range(config.attention_blocks)])
        self.refine_middle = nn.Sequential(*[conv(q, q, dilation=d, kind=kind) for d in config.dilations[:2]])
        self.refine_decoder = Decoder(c, q, config.skips, kind)

    def forward(self, image: torch.Tensor, mask: torch.Tensor,
                proposal: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """With `proposal` [B, 3, H, W] (another method's fill, e.g. PatchMatch's) the refinement
        stage refines it in place of the coarse stage's guess, which is then not computed: the
        returned `coarse` is the proposal."""
        if image.ndim != 4 or image.shape[1] != 3 or mask.shape != (image.shape[0], 1, *image.shape[2:]):
            raise BadInputError(f"InpaintGenerator expects image [B, 3, H, W] and mask [B, 1, H, W], "
                                f"got {list(image.shape)} and {list(mask.shape)}.")
        if image.shape[2] % MULTIPLE or image.shape[3] % MULTIPLE:
            raise BadInputError(f"InpaintGenerator needs sizes that are multiples of {MULTIPLE}; pad the input.")
        if proposal is not None and proposal.shape != image.shape:
            raise BadInputError(f"The proposal must be shaped like the image {list(image.shape)}, got {list(proposal.shape)}.")
        known = image * (1 - mask)
        ones = torch.ones_like(mask)
        if proposal is None:
            h, encoded = self.coarse_encoder(torch.cat([known, mask, ones], 1))      # h [B, q, H/4, W/4]
            coarse = self.coarse_decoder(self.coarse_middle(h), encoded)
        else:
            coarse = proposal
        merged = known + coarse * mask
        h, encoded = self.refine_encoder(torch.cat([merged, mask, ones], 1))
        h = self.refine_middle(self.refine_attention(h))
        return coarse, self.refine_decoder(h, encoded)


def load_narrower(model: InpaintGenerator, trained: dict[str, torch.Tensor]) -> list[str]:
    """nn.widen.load_narrower for an inpainting generator whose 1/4 stage may be wider (and which
    may add the zero-started skips). Gated convolutions stack features and gates in one weight,
    so those are not widened."""
    if model.config.convolution == "gated":
        state = model.state_dict()
        if any(name in state and state[name].shape != old.shape for name, old in trained.items()):
            raise BadInputError("A network with gated convolutions cannot be widened.")
    return widen.load_narrower(model, trained)


class PatchDiscriminator(nn.Module):
    """SN-PatchGAN (DeepFill v2): `layers` stride-2 5x5 spectral-norm convolutions over (image, mask)
    -> a map of 4 x channels logits per cell of 2**layers px (receptive field 1 + 4 (2**layers - 1) px:
    61 / 125 / 253 px for 4 / 5 / 6 layers)."""

    def __init__(self, channels: int = 32, layers: int = 6) -> None:
        super().__init__()
        widths = [4, channels, 2 * channels] + [4 * channels] * (layers - 2)
        self.layers = nn.ModuleList(spectral_norm(nn.Conv2d(a, b, 5, 2, padding=2)) for a, b in zip(widths, widths[1:]))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output (after its leaky ReLU); the last is the logit map [B, 4c, H/2**layers, W/2**layers]."""
        h, out = torch.cat([image, mask], 1), []
        for index, layer in enumerate(self.layers):
            h = layer(h)
            if index < len(self.layers) - 1:
                h = F.leaky_relu(h, 0.2)
            out.append(h)
        return out
