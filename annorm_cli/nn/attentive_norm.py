"""Attentive Normalization (Wang et al., CVPR 2020), as ../shared/design/attentive-normalization.md defines it.

A feature map is a mixture of `n` semantic entities. The layer predicts a soft layout S that
assigns every position to the entities, normalizes the features inside each soft region with
the S-weighted mean and variance, and adds the result back through a gate `gamma` (0 at init):

    L = W^T X (+ alpha * self-sampling term, training only)    # [B, n, P]
    S = softmax(L / tau over entities)                          # [B, n, P]
    V = v(X)                                                    # [B, C, P]
    Xhat_p = sum_i S_ip (V_p - mu_i) / sqrt(var_i + eps)        # [B, C, P]
    Y = X + gamma * Xhat

Two implementations share one state dict: "fast" (batched matrix products, O(B*P*(C+n))
memory, never builds [B, P, C, n]) and "reference" (the plain materializing form, the test
oracle). The layout statistics are computed in float32 even under autocast.

Reading the layout: set `layer.record_layout = True` (or use `recording_layouts(model)`);
each forward then keeps `last_layout` [B, n, H, W] and `last_logits` [B, n, H, W] (detached,
float32) without changing the output.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from annorm_cli.errors import BadInputError
from annorm_cli.nn._an_kernels import FusedProjection, RegionalNorm

IMPLS = ("fast", "reference")


class AttentiveNorm2d(nn.Module):
    """Attentive Normalization over a [B, C, H, W] feature map.

    Example:
        >>> layer = AttentiveNorm2d(32, n_entities=16)
        >>> y = layer(torch.randn(2, 32, 16, 16))   # identity at init (gamma = 0)
    """

    def __init__(self, channels: int, *, n_entities: int = 16, temperature: float = 10.0,
                 impl: str = "fast", eps: float = 1e-5, affine: bool = False,
                 self_sampling: bool = True) -> None:
        super().__init__()
        if channels < 1 or n_entities < 1:
            raise BadInputError("AttentiveNorm2d needs at least one channel and one entity.")
        if impl not in IMPLS:
            raise BadInputError(f"Unknown AttentiveNorm2d impl '{impl}'; choose one of {', '.join(IMPLS)}.")
        if temperature <= 0:
            raise BadInputError("AttentiveNorm2d's temperature must be positive.")
        self.channels, self.n_entities = channels, n_entities
        self.temperature, self.eps, self.impl = float(temperature), float(eps), impl
        self.affine, self.self_sampling = affine, self_sampling
        reduced = max(1, channels // 8)
        self.entity_filters = nn.Parameter(torch.randn(channels, n_entities))  # W [C, n]
        self.query = nn.Conv2d(channels, reduced, 1)
        self.key = nn.Conv2d(channels, reduced, 1)
        self.alpha = nn.Parameter(torch.full((n_entities,), 0.1))
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))
        if affine:
            self.entity_weight = nn.Parameter(torch.ones(channels, n_entities))  # a [C, n]
            self.entity_bias = nn.Parameter(torch.zeros(channels, n_entities))   # b [C, n]
        self.record_layout = False
        self.last_layout: Optional[torch.Tensor] = None
        self.last_logits: Optional[torch.Tensor] = None

    def extra_repr(self) -> str:
        return (f"{self.channels}, n_entities={self.n_entities}, temperature={self.temperature}, "
                f"impl={self.impl!r}, affine={self.affine}")

    # ---------------------------------------------------------------- public API
    def forward(self, x: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, C, H, W] -> [B, C, H, W]. `positions` ([n] flat indices) fixes the
        self-sampling positions (training mode only); by default they are drawn fresh."""
        self._check_input(x)
        B, C, H, W = x.shape
        if self.training and self.self_sampling and positions is None:
            positions = torch.randint(0, H * W, (self.n_entities,), device=x.device)
        use_sampling = self.training and self.self_sampling
        with torch.autocast(device_type=x.device.type, enabled=False):
            # statistics in float32 at least (float64 stays float64)
            xs = x.flatten(2).to(torch.promote_types(x.dtype, torch.float32))  # [B, C, P]
            if self.impl == "fast":
                logits, value = self._project_fast(xs, positions if use_sampling else None)
                layout = torch.softmax(logits / self.temperature, dim=1)   # [B, n, P]
                xhat = self._normalize_fast(value, layout)
            else:
                logits, value = self._project_reference(xs, positions if use_sampling else None)
                layout = torch.softmax(logits / self.temperature, dim=1)
                xhat = self._normalize_reference(value, layout)
            out = self.gamma.to(xhat.dtype) * xhat                                       # [B, C, P]
        if self.record_layout:
            self.last_layout = layout.detach().view(B, self.n_entities, H, W)
            self.last_logits = logits.detach().view(B, self.n_entities, H, W)
        return x + out.view(B, C, H, W).to(x.dtype)

    def orthogonality_penalty(self) -> torch.Tensor:
        """||W_n^T W_n - I||_F^2 with W_n the entity filters scaled to unit length: pushes entities apart."""
        w = F.normalize(self.entity_filters, dim=0)                        # [C, n]
        gram = w.t() @ w                                                   # [n, n]
        return (gram - torch.eye(self.n_entities, device=w.device, dtype=w.dtype)).pow(2).sum()

    # ---------------------------------------------------------------- internals
    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise BadInputError(
                f"AttentiveNorm2d expects input of shape [B, {self.channels}, H, W], got {list(x.shape)}.")

    def _sampling_mix(self, query: torch.Tensor, key: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """alpha_i * <q_p, k_{s_i}>: query, key [B, c, P] -> [B, n, P]."""
        sampled = key[:, :, positions]                                     # [B, c, n]
        affinity = sampled.transpose(1, 2) @ query                         # [B, n, P]
        return self.alpha.to(affinity.dtype).clamp(0, 1)[:, None] * affinity

    def _project_fast(self, x: torch.Tensor, positions: Optional[torch.Tensor]):
        """One fused 1x1 projection of x [B, C, P] into logits [B, n, P] and value [B, C, P]."""
        n = self.n_entities
        weights = [self.entity_filters.t(), self.value.weight.flatten(1)]
        biases = [self.value.bias.new_zeros(n), self.value.bias]
        if positions is not None:
            weights += [self.query.weight.flatten(1), self.key.weight.flatten(1)]
            biases += [self.query.bias, self.key.bias]
        weight = torch.cat(weights).to(x.dtype)                            # [n + C (+ 2c), C]
        bias = torch.cat(biases).to(x.dtype)
        sizes = tuple(w.shape[0] for w in weights)
        logits, value, *query_key = FusedProjection.apply(x, weight, bias, sizes)
        if positions is not None:
            logits = logits + self._sampling_mix(*query_key, positions)
        return logits, value

    def _normalize_fast(self, value: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
        """value [B, C, P], layout [B, n, P] -> Xhat [B, C, P] by n x P x C products (_an_kernels)."""
        weight = self.entity_weight.to(value.dtype) if self.affine else None
        bias = self.entity_bias.to(value.dtype) if self.affine else None
        return RegionalNorm.apply(value, layout, weight, bias, self.eps)

    def _project_reference(self, x: torch.Tensor, positions: Optional[torch.Tensor]):
        B, C, P = x.shape
        x4 = x.view(B, C, P, 1)
        cast = lambda t: t.to(x.dtype)  # noqa: E731  (parameters follow the statistics' dtype)
        logits = torch.einsum("ci,bcp->bip", cast(self.entity_filters), x)  # [B, n, P]
        value = F.conv2d(x4, cast(self.value.weight), cast(self.value.bias)).view(B, C, P)
        if positions is not None:
            query = F.conv2d(x4, cast(self.query.weight), cast(self.query.bias)).flatten(2)
            key = F.conv2d(x4, cast(self.key.weight), cast(self.key.bias)).flatten(2)
            logits = logits + self._sampling_mix(query, key, positions)
        return logits, value

    def _normalize_reference(self, value: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
        """The plain form: materializes [B, P, C, n]."""
        v = value.transpose(1, 2)[..., None]                               # [B, P, C, 1]
        s = layout.transpose(1, 2)[:, :, None, :]                          # [B, P, 1, n]
        mass = s.sum(1) + self.eps                                         # [B, 1, n]
        mean = (s * v).sum(1) / mass                                       # [B, C, n]
        var = ((s * v * v).sum(1) / mass - mean * mean).clamp_min(0)       # [B, C, n]
        normed = (v - mean[:, None]) / torch.sqrt(var + self.eps)[:, None]  # [B, P, C, n]
        if self.affine:
            normed = normed * self.entity_weight.to(v.dtype) + self.entity_bias.to(v.dtype)
        return (s * normed).sum(-1).transpose(1, 2)                        # [B, C, P]


def attentive_norm_layers(model: nn.Module) -> dict[str, AttentiveNorm2d]:
    """Every AN layer of a model by its module name, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AttentiveNorm2d)}


def orthogonality_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of the orthogonality penalties of every AN layer in `model` (0 if it has none)."""
    terms = [layer.orthogonality_penalty() for layer in attentive_norm_layers(model).values()]
    return torch.stack(terms).sum() if terms else torch.zeros(())


@contextlib.contextmanager
def recording_layouts(model: nn.Module) -> Iterator[dict[str, AttentiveNorm2d]]:
    """Within the block every AN layer of `model` keeps its last layout and logits.

    Example:
        >>> with recording_layouts(generator) as layers:
        ...     generator(z, y)
        >>> {name: layer.last_layout.shape for name, layer in layers.items()}
    """
    layers = attentive_norm_layers(model)
    previous = {name: layer.record_layout for name, layer in layers.items()}
    for layer in layers.values():
        layer.record_layout = True
    try:
        yield layers
    finally:
        for name, layer in layers.items():
            layer.record_layout = previous[name]
