"""Hand-written autograd for AN's fast path: fewer passes over [B, C, P] than autograd's
generic graph (no zero-filled slice gradients, no concatenations), same math.

Shapes: value V [B, C, P], layout S [B, n, P], per-entity statistics [B, n, C].
"""
from __future__ import annotations

from typing import Optional

import torch


class FusedProjection(torch.autograd.Function):
    """y = W x + b for stacked 1x1 projections, returned as separate tensors of `sizes` rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sizes: tuple[int, ...]):
        # x [B, C, P], weight [K, C], bias [K] -> K rows split by `sizes`
        ctx.save_for_backward(x, weight)
        ctx.sizes = sizes
        projected = torch.baddbmm(bias[None, :, None], weight.expand(x.shape[0], -1, -1), x)  # [B, K, P]
        return tuple(projected.split(sizes, dim=1))

    @staticmethod
    def backward(ctx, *grads):
        x, weight = ctx.saved_tensors
        B, _, P = x.shape
        parts = [g if g is not None else x.new_zeros(B, size, P) for g, size in zip(grads, ctx.sizes)]
        grad_y = torch.cat(parts, dim=1)                                              # [B, K, P]
        grad_x = torch.bmm(weight.t().expand(B, -1, -1), grad_y) if ctx.needs_input_grad[0] else None
        grad_w = torch.einsum("bkp,bcp->kc", grad_y, x) if ctx.needs_input_grad[1] else None
        grad_b = grad_y.sum((0, 2)) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class RegionalNorm(torch.autograd.Function):
    """Xhat = sum_i S_i (V - mu_i) / sqrt(var_i + eps) [* a_i + b_i], with the S-weighted moments
    from four n x P x C products forward and eight backward."""

    @staticmethod
    def forward(ctx, value, layout, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float):
        mass = layout.sum(-1, keepdim=True) + eps                                    # [B, n, 1]
        mean = torch.bmm(layout, value.transpose(1, 2)) / mass                        # [B, n, C]
        second = torch.bmm(layout, (value * value).transpose(1, 2)) / mass            # [B, n, C]
        inv = torch.rsqrt((second - mean * mean).clamp_min(0) + eps)                  # [B, n, C]
        scale = inv if weight is None else inv * weight.t()
        shift = mean * scale if bias is None else mean * scale - bias.t()             # [B, n, C]
        spread = torch.bmm(scale.transpose(1, 2), layout)                             # [B, C, P]
        out = torch.bmm(shift.transpose(1, 2), layout).neg_().addcmul_(value, spread)  # V*spread - shift^T S
        ctx.save_for_backward(value, layout, weight, mass, mean, second, inv, scale, shift, spread)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        value, layout, weight, mass, mean, second, inv, scale, shift, spread = ctx.saved_tensors
        grad_times_value = grad * value                                               # [B, C, P]
        # out = V * (scale^T S) - shift^T S
        grad_scale = torch.bmm(layout, grad_times_value.transpose(1, 2))              # [B, n, C]
        grad_shift = -torch.bmm(layout, grad.transpose(1, 2))                         # [B, n, C]
        grad_layout = torch.bmm(scale, grad_times_value).baddbmm_(shift, grad, alpha=-1)  # [B, n, P]
        del grad_times_value
        # shift = mean * scale (- b), scale = inv (* a)
        grad_mean = grad_shift * scale
        grad_scale = grad_scale + grad_shift * mean
        grad_weight = grad_bias = None
        if weight is not None:
            if ctx.needs_input_grad[2]:
                grad_weight = (grad_scale * inv).sum(0).t()
            grad_inv = grad_scale * weight.t()
        else:
            grad_inv = grad_scale
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = -grad_shift.sum(0).t()
        # inv = (max(0, second - mean^2) + eps)^(-1/2)
        grad_var = grad_inv * (-0.5) * inv ** 3 * (second - mean * mean >= 0)
        grad_mean = grad_mean - 2 * mean * grad_var
        grad_second = grad_var
        # mean = S V^T / mass, second = S (V*V)^T / mass, mass = S 1 + eps
        grad_mass = -(grad_mean * mean + grad_second * second).sum(-1, keepdim=True) / mass  # [B, n, 1]
        grad_r1, grad_r2 = grad_mean / mass, grad_second / mass                       # [B, n, C]
        squared = value * value
        grad_layout.baddbmm_(grad_r1, value).baddbmm_(grad_r2, squared).add_(grad_mass)
        del squared
        grad_value = torch.bmm(grad_r2.transpose(1, 2), layout).mul_(2 * value)       # [B, C, P]
        grad_value.baddbmm_(grad_r1.transpose(1, 2), layout).addcmul_(grad, spread)
        return grad_value, grad_layout, grad_weight, grad_bias, None
