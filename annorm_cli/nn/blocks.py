"""Building blocks of the SA-GAN / BigGAN family: conditional batch norm, residual up and down
blocks, and the attention stage that holds AN, self-attention or nothing."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from annorm_cli.errors import BadInputError
from annorm_cli.nn.attentive_norm import AttentiveNorm2d
from annorm_cli.nn.self_attention import SelfAttention2d

ATTENTION_KINDS = ("an", "sa", "none")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class CrossReplicaBatchNorm2d(nn.Module):
    """Batch norm without affine whose training statistics span every data-parallel process.

    torch's SyncBatchNorm refuses CPU tensors; this one all-reduces (sum, sum of squares,
    count) with a differentiable all_reduce, so a run on N processes normalizes exactly as a
    single process holding the whole global batch would. Statistics are kept in float32.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.cross_replica = True   # off while recomputing standing statistics on one process
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)
        x32 = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        moments = torch.cat([x32.sum((0, 2, 3)), x32.square().sum((0, 2, 3)), count])  # [2C + 1]
        if self.cross_replica and _distributed():
            import torch.distributed.nn.functional as dist_fn
            moments = dist_fn.all_reduce(moments)
        C = x.shape[1]
        total = moments[-1]
        mean = moments[:C] / total
        var = (moments[C:2 * C] / total - mean.square()).clamp_min(0)
        self._update_running(mean.detach(), var.detach() * total / (total - 1).clamp_min(1))   # no .item(): no sync, no graph break
        scale = torch.rsqrt(var + self.eps)
        return ((x32 - mean[:, None, None]) * scale[:, None, None]).to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        if self.momentum is None:  # standing statistics: a plain average, see reset_standing()
            self.num_batches += 1
            weight = 1.0 / self.num_batches
        else:
            weight = self.momentum
        self.running_mean.lerp_(mean, weight)
        self.running_var.lerp_(var, weight)

    def start_standing_stats(self) -> None:
        """Switch to a cumulative average so the next forward passes recompute the running stats."""
        self.momentum, self.num_batches, self.cross_replica = None, 0, False
        self.running_mean.zero_()
        self.running_var.fill_(1.0)

    def stop_standing_stats(self, momentum: float = 0.1) -> None:
        self.momentum, self.cross_replica = momentum, True


class ConditionalBatchNorm2d(nn.Module):
    """BN whose gain and bias come from the class: y = (1 + g[c]) * BN(x) + b[c]."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.norm = CrossReplicaBatchNorm2d(channels)
        self.gain = nn.Embedding(n_classes, channels)
        self.bias = nn.Embedding(n_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """labels: class indices [B], or class weights [B, n_classes] (mixing classes)."""
        if labels.ndim == 2:
            gain, bias = 1 + labels @ self.gain.weight, labels @ self.bias.weight       # [B, C]
        else:
            gain, bias = 1 + self.gain(labels), self.bias(labels)
        gain, bias = gain[:, :, None, None], bias[:, :, None, None]         # [B, C, 1, 1]
        return self.norm(x) * gain + bias


class UpBlock(nn.Module):
    """Pre-activation residual block that doubles the resolution (SN-GAN / BigGAN generator)."""

    def __init__(self, in_channels: int, out_channels: int, n_classes: int) -> None:
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_channels, n_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalBatchNorm2d(out_channels, n_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(x, labels))
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")             # [B, Cin, 2H, 2W]
        h = self.conv2(F.relu(self.norm2(self.conv1(h), labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """Residual block with spectral norm that halves the resolution (SN-GAN discriminator).

    The first block of a discriminator (`first=True`) sees raw pixels: no activation before its
    first convolution, and its shortcut pools before the 1x1 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, *, first: bool = False, down: bool = True) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = spectral_norm(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.learned_shortcut = first or down or in_channels != out_channels
        if self.learned_shortcut:
            self.shortcut = spectral_norm(nn.Conv2d(in_channels, out_channels, 1))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if not self.learned_shortcut:
            return h + x
        skip = self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))
        return h + skip


def make_attention(kind: str, channels: int, *, n_entities: int = 16, temperature: float = 10.0) -> nn.Module:
    """The attention layer for `kind`: "an" (AttentiveNorm2d), "sa" (SelfAttention2d) or "none"."""
    if kind == "an":
        return AttentiveNorm2d(channels, n_entities=n_entities, temperature=temperature)
    if kind == "sa":
        return SelfAttention2d(channels)
    if kind == "none":
        return nn.Identity()
    raise BadInputError(f"Unknown attention '{kind}'; choose one of {', '.join(ATTENTION_KINDS)}.")


def switch_off_attention(model: nn.Module) -> int:
    """Set the output scale gamma of every AN and SA layer in `model` to 0, so each returns its
    input (an ablation of a trained network). Returns how many layers were switched off."""
    layers = [m for m in model.modules() if isinstance(m, (AttentiveNorm2d, SelfAttention2d))]
    with torch.no_grad():
        for layer in layers:
            layer.gamma.zero_()
    return len(layers)


class AttentionStage(nn.Module):
    """conv 3x3 -> attention (AN / SA / identity) -> ReLU: the same stage for every choice, so
    the three generators differ only in the attention layer."""

    def __init__(self, kind: str, channels: int, *, n_entities: int = 16, temperature: float = 10.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.attention = make_attention(kind, channels, n_entities=n_entities, temperature=temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.attention(self.conv(x)))
