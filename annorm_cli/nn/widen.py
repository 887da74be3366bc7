"""Net2Net-style widening: load a trained network into a wider copy of itself that computes the
same function, so a wider model starts where the narrower one stopped instead of from scratch."""
from __future__ import annotations

import torch
from torch import nn

from annorm_cli.errors import BadInputError
from annorm_cli.nn.attentive_norm import AttentiveNorm2d
from annorm_cli.nn.self_attention import SelfAttention2d


def _zeroed_new_rows(model: nn.Module) -> set[str]:
    """Parameters whose new rows (output dims) must start at 0: AN's entity filters W [C, n]
    (new channels take no part in the layout) and the attention keys (new key dims add no affinity)."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, AttentiveNorm2d):
            names.add(f"{prefix}.entity_filters")
        if isinstance(module, (AttentiveNorm2d, SelfAttention2d)):
            names.update({f"{prefix}.key.weight", f"{prefix}.key.bias"})
    return {name.lstrip(".") for name in names}


def _zeroed_new_inputs(model: nn.Module) -> set[str]:
    """Weights whose new input columns must start at 0: every convolution and linear layer."""
    return {f"{prefix}.weight".lstrip(".") for prefix, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))}


def load_narrower(model: nn.Module, trained: dict[str, torch.Tensor]) -> list[str]:
    """Copy a trained state dict into `model`, whose layers may be wider, so that `model` computes
    the same function: each trained tensor fills the leading slice of its wider counterpart; the
    new input columns of every convolution and linear layer, AN's entity filters' new rows and the
    attention keys' new rows are 0 (new channels are read by nothing and leave the layouts as they
    were), while the new channels' own weights keep their random start so they can learn (their
    zero outgoing weights get gradients at once). Returns the names `trained` lacks (left at their start).

    Example:
        >>> missing = load_narrower(Generator(wide_config), narrow_generator.state_dict())
    """
    state = model.state_dict()
    new_rows, new_inputs = _zeroed_new_rows(model), _zeroed_new_inputs(model)
    for name, old in trained.items():
        if name not in state:
            raise BadInputError(f"The network has no '{name}' to load (the trained one has layers this one lacks).")
        new = state[name]
        if new.ndim != old.ndim or any(a < b for a, b in zip(new.shape, old.shape)):
            raise BadInputError(f"Cannot widen '{name}' from {list(old.shape)} to {list(new.shape)}.")
        new = new.clone()
        if name in new_inputs and new.ndim >= 2:
            new[:, old.shape[1]:] = 0                                       # [out, in, ...]: new inputs
        if name in new_rows:
            new[old.shape[0]:] = 0
        new[tuple(slice(0, size) for size in old.shape)] = old
        state[name] = new
    model.load_state_dict(state)
    return [name for name in state if name not in trained]
