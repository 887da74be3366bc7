"""Where a class-conditional training step spends its time (`annorm bench train-step`): the
shares of convolutions, batch norm, spectral norm, AN, the optimizer and the rest, from
torch.profiler's self time per operator, and img/s of eager vs torch.compile'd models."""
from __future__ import annotations

import dataclasses
import time

import torch

from annorm_cli.datasets import LabelledImages
from annorm_cli.models import ClassConditionalConfig
from annorm_cli.train import class_conditional as trainer
from annorm_cli.train import common

CATEGORIES = (   # (name, substrings of operator names), first match wins
    ("convolution", ("conv",)),
    ("batch norm", ("batch_norm",)),
    ("spectral norm (power iteration)", ("aten::mv", "vector_norm", "aten::dot", "addmv")),
    ("AN (bmm, softmax, top-k)", ("bmm", "softmax", "topk", "einsum", "gather", "scatter")),
    ("optimizer and EMA", ("_foreach", "adam", "addcdiv", "lerp")),
    ("matmul (linear layers)", ("mm", "addmm", "linear")),
)


def _category(op_name: str) -> str:
    for name, keys in CATEGORIES:
        if any(key in op_name for key in keys):
            return name
    return "elementwise and the rest"


def synthetic_data(config: ClassConditionalConfig, images: int = 512) -> LabelledImages:
    """Random uint8 images standing in for CIFAR-10 (the step's cost does not depend on pixels)."""
    generator = torch.Generator().manual_seed(0)
    return LabelledImages(torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=generator),
                          torch.arange(images) % config.n_classes, tuple(str(i) for i in range(config.n_classes)))


def _state(config: ClassConditionalConfig, options: trainer.TrainOptions, compiled: bool) -> trainer.RunState:
    world = common.World()
    state = trainer.build_state(config, options, torch.device("cpu"), world)
    if compiled:
        state.G = torch.compile(state.G)
    return state


def time_steps(config: ClassConditionalConfig, options: trainer.TrainOptions, *, steps: int, warmup: int,
               compiled: bool = False) -> dict:
    """{"first_step_s", "step_s" (median of `steps` after `warmup`), "img_per_s"} for one process;
    img/s as the trainer logs it (batch size x D steps per step)."""
    data = synthetic_data(config)
    state = _state(config, options, compiled)
    world = common.World()
    started = time.perf_counter()
    trainer.train_step(state, data, torch.device("cpu"), world)
    first = time.perf_counter() - started
    for _ in range(warmup - 1):
        trainer.train_step(state, data, torch.device("cpu"), world)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        trainer.train_step(state, data, torch.device("cpu"), world)
        times.append(time.perf_counter() - started)
    step = sorted(times)[len(times) // 2]
    return {"first_step_s": first, "step_s": step, "img_per_s": options.batch_size * options.d_steps / step}


def profile_shares(config: ClassConditionalConfig, options: trainer.TrainOptions, *, steps: int = 3,
                   warmup: int = 2) -> list[tuple[str, float]]:
    """[(category, ms per step)] by self CPU time, largest first."""
    from torch.profiler import ProfilerActivity, profile
    data = synthetic_data(config)
    state = _state(config, options, compiled=False)
    world = common.World()
    for _ in range(warmup):
        trainer.train_step(state, data, torch.device("cpu"), world)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            trainer.train_step(state, data, torch.device("cpu"), world)
    totals: dict[str, float] = {}
    for event in profiler.key_averages():
        totals[_category(event.key)] = totals.get(_category(event.key), 0.0) + event.self_cpu_time_total / 1000
    return sorted(((name, ms / steps) for name, ms in totals.items()), key=lambda row: -row[1])


def parameter_counts(config: ClassConditionalConfig) -> tuple[int, int]:
    """(G's, D's) number of parameters at this config."""
    from annorm_cli.models.class_conditional import Discriminator, Generator
    return tuple(sum(p.numel() for p in net(config).parameters()) for net in (Generator, Discriminator))


def options_for(batch_size: int = 64, d_steps: int = 1, diffaugment: bool = True) -> trainer.TrainOptions:
    """The shipped run's training options at this batch size and D steps, no monitors."""
    return dataclasses.replace(trainer.TrainOptions(), batch_size=batch_size, d_steps=d_steps,
                               diffaugment=diffaugment, classifier="", fid_every=0)
