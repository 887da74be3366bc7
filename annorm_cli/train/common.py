"""Trainer machinery shared by every annorm model: distributed setup, per-step seeding,
precision probe, EMA, atomic checkpoints, signal handling."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import signal
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from annorm_cli.errors import BadInputError, Interrupted
from annorm_cli.files import atomic_open

CHECKPOINT_NAME = "checkpoint.pt"


# ----------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> World:
    """Join the process group that torchrun describes (env WORLD_SIZE > 1); otherwise a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def finish_distributed(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_slice(world: World, global_batch: int) -> slice:
    """This process's contiguous share of a global batch (the batch must divide evenly)."""
    if global_batch % world.size:
        raise BadInputError(f"The batch size {global_batch} must be divisible by the {world.size} processes.")
    share = global_batch // world.size
    return slice(world.rank * share, (world.rank + 1) * share)


def wrap_ddp(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    if world.size == 1:
        return model
    ids = [device.index or 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- seeding
def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A seed for (run seed, step, stream): every random draw of a step derives from it, so a
    resumed run draws exactly what an uninterrupted one would, and no RNG state is saved."""
    return (seed * 1_000_003 + step * 7_919 + stream * 104_729) % (2 ** 63 - 1)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, stream))


def epoch_batches(n_items: int, batch: int, seed: int, batch_index: int) -> torch.Tensor:
    """Indices of global batch number `batch_index` in an endless sequence of seeded epochs."""
    per_epoch = n_items // batch
    if per_epoch == 0:
        raise BadInputError(f"The data set has {n_items} items, fewer than one batch of {batch}.")
    epoch, position = divmod(batch_index, per_epoch)
    order = torch.randperm(n_items, generator=step_generator(seed, epoch, stream=99))
    return order[position * batch:(position + 1) * batch]


RUN_CONTROLS = ("steps", "sample_every", "checkpoint_minutes", "keep_every", "log_every", "classifier", "score_per_class",
                "fid_every", "fid_per_class", "fid_reference")


def saved_options(saved: dict, kind: type):
    """The checkpoint's options as a `kind` (TrainOptions, InpaintOptions, ClassifierOptions), every
    name known and every value of its field's type (None where the default is None) before
    anything uses them; names a newer annorm added and this one lacks are one sentence."""
    options = saved["options"]
    if not isinstance(options, dict):
        raise BadInputError("The checkpoint is damaged: its options are not a mapping.")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(str(name)[:40] for name in options if name not in fields)
    if unknown:
        raise BadInputError(f"The checkpoint holds training options this annorm does not know ({', '.join(unknown[:5])}); "
                            "it was written by another version of annorm.")
    for name, value in options.items():
        default = fields[name].default
        kinds = (int, float) if isinstance(default, float) else (type(default),) if default is not None else None
        if value is None or kinds is None and isinstance(value, (int, float, str)):
            continue
        if kinds is None or not isinstance(value, kinds) or isinstance(value, bool) != isinstance(default, bool):
            raise BadInputError(f"The checkpoint is damaged: its option '{name}' is {type(value).__name__}, "
                                f"not {type(default).__name__}.")
    return kind(**options)


def resumed_options(saved: dict, given, overrides: frozenset[str] = frozenset()):
    """The options of a resumed run: everything that shapes the optimisation comes from the
    checkpoint (so the run continues as it would have), except the fields named in `overrides`
    (what the user typed on the resume command; the data too: a resume without --data reads the
    run's own); how far to train and how often to log, sample and checkpoint come from `given`,
    except `steps` of a run whose learning rate decays towards it: there it is part of the
    schedule, and a resume that did not type --steps would otherwise restart the decay."""
    restored = saved_options(saved, type(given))
    keep = (set(RUN_CONTROLS) | set(overrides)) & {f.name for f in dataclasses.fields(given)}
    decay_start = getattr(restored, "lr_decay_start", None)
    decays = decay_start is not None and decay_start < restored.steps
    if decays and "steps" not in overrides:
        keep.discard("steps")
    options = dataclasses.replace(restored, **{k: getattr(given, k) for k in keep})
    if saved["step"] >= options.steps:
        raise BadInputError(f"The checkpoint is at step {saved['step']:,}, the end of a run of --steps "
                            f"{options.steps:,}; type a larger --steps to go on"
                            + (" (and --lr-decay-start: this run's learning rate has decayed to 0)." if decays else "."))
    return options


# ----------------------------------------------------------------------------- learning rate
def learning_rate_scale(step: int, decay_start: Optional[int], steps: int) -> float:
    """1 until `decay_start` (None: never decay), then linearly down to 0 at `steps`."""
    if decay_start is None or step < decay_start:
        return 1.0
    return max(0.0, 1.0 - (step - decay_start) / max(1, steps - decay_start))


def set_learning_rates(state: "GanRun", lr_g: float, lr_d: float, decay_start: Optional[int]) -> None:
    """Set both optimisers' lr for the state's step (linear decay from `decay_start` to the
    options' `steps`). Trainers call it every step, because a restored optimizer state carries
    the lr it was saved with, which would silently win over a --lr typed on a resume command."""
    scale = learning_rate_scale(state.step, decay_start, state.options.steps)
    for optimizer, lr in ((state.opt_g, lr_g), (state.opt_d, lr_d)):
        for group in optimizer.param_groups:
            group["lr"] = lr * scale


def channels_last_on_cpu(device: torch.device, *models: nn.Module) -> tuple[nn.Module, ...]:
    """The models with channels_last weights on CPU (measured here: class-conditional D+G step 1.7 s
    vs 2.0 s; inpainting G fwd+bwd, batch 8 of 128 px, 1.22 s vs 1.60 s), unchanged elsewhere."""
    if device.type != "cpu":
        return models
    return tuple(model.to(memory_format=torch.channels_last) for model in models)


# ----------------------------------------------------------------------------- precision
def probe_precision(step: Callable[[str], None], *, repeats: int = 2) -> tuple[str, dict[str, float]]:
    """Time `step(precision)` for fp32 and bf16 (one warm-up, then `repeats`) and return the faster.

    bf16 autocast is 10x slower than float32 on CPUs without bf16 units and 2.8x faster on
    CPUs with AMX, so it is measured, never assumed. A candidate whose warm-up step already
    takes more than three fp32 steps is dropped without further timing."""
    timings: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        step(precision)
        warm_up = time.perf_counter() - start
        if timings and warm_up > 3 * min(timings.values()):
            timings[precision] = warm_up
            continue
        start = time.perf_counter()
        for _ in range(repeats):
            step(precision)
        timings[precision] = (time.perf_counter() - start) / repeats
    return min(timings, key=timings.get), timings


# ----------------------------------------------------------------------------- run state
@dataclass
class GanRun:
    """What a GAN trainer carries from step to step; `checkpoint()` / `restore()` define the
    checkpoint format. G and D may be DDP-wrapped; `ema.model` is the averaged generator.
    `earlier_stages` are the runs the model was grown from (--init-from), oldest first, each
    {"steps", "train_wall_time_s", "init_from"}: exported cards add them up."""
    task: str
    G: nn.Module
    D: nn.Module
    ema: "EMA"
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    model_config: object        # a config dataclass with to_dict()
    options: object             # the trainer's options dataclass
    precision: str = "fp32"
    step: int = 0
    wall_time: float = 0.0
    earlier_stages: list = dataclasses.field(default_factory=list)
    fast: Optional[tuple] = None  # (G, D) compiled for the training step (--fast); not saved: rebuilt on resume

    def checkpoint(self) -> dict:
        return {"format": "annorm-train-v1", "task": self.task, "step": self.step, "wall_time": self.wall_time,
                "precision": self.precision, "model_config": self.model_config.to_dict(),
                "options": dataclasses.asdict(self.options), "earlier_stages": self.earlier_stages,
                "G": unwrap(self.G).state_dict(), "G_ema": self.ema.model.state_dict(),
                "D": unwrap(self.D).state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def restore(self, saved: dict) -> None:
        unwrap(self.G).load_state_dict(saved["G"])
        self.ema.model.load_state_dict(saved["G_ema"])
        unwrap(self.D).load_state_dict(saved["D"])
        self.opt_g.load_state_dict(saved["opt_g"])
        self.opt_d.load_state_dict(saved["opt_d"])
        self.step, self.wall_time = int(saved["step"]), float(saved["wall_time"])
        self.precision = saved["precision"]
        self.earlier_stages = list(saved.get("earlier_stages", []))

    def save(self, run_dir: Path, world: World, name: str) -> None:
        if world.is_main:
            atomic_save(self.checkpoint(), Path(run_dir) / name)


# ----------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a model's weights with a warm-up: the decay at update t is
    min(decay, (1 + t) / (10 + t)), so the average follows the early, fast-moving weights.
    Buffers (batch-norm statistics, spectral-norm vectors) are copied."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """One _foreach kernel per kind instead of one per tensor (the same bits as lerp_ each)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - decay)
        buffers = list(self.model.buffers())
        if buffers:                                    # (an inpainting generator has none)
            torch._foreach_copy_(buffers, list(model.buffers()))


# ----------------------------------------------------------------------------- files
def prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder and remove the temporary files a killed process (kill -9) left
    there mid-write (atomic_open's `.NAME.*.tmp`); whole files are never touched."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for torn in run_dir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            torn.unlink()


def atomic_save(obj, path: Path) -> None:
    """torch.save, atomically (annorm_cli.files.atomic_open)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:
        torch.save(obj, handle)


CHECKPOINT_FIELDS = {"task": str, "step": int, "options": dict}


def load_checkpoint(path: str | os.PathLike, task: Optional[str] = None) -> dict:
    """Load a training checkpoint (a run folder or a .pt file) without unpickling code, its
    fields' types checked, and of `task` (the `annorm train` command: "class", "inpaint",
    "classifier") if given."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise BadInputError(f"No checkpoint at '{path}'; pass a run folder or a checkpoint file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInputError(f"'{path}' is not a readable annorm checkpoint ({type(exc).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != "annorm-train-v1":
        raise BadInputError(f"'{path}' is not an annorm training checkpoint.")
    for name, kind in CHECKPOINT_FIELDS.items():
        if not isinstance(state.get(name), kind) or isinstance(state.get(name), bool):
            raise BadInputError(f"'{path}' is a damaged checkpoint: '{name}' is missing or not a {kind.__name__}.")
    if task is not None and state["task"] != task:
        raise BadInputError(f"'{path}' is a checkpoint of `annorm train {state['task']}`, not of "
                            f"`annorm train {task}`; resume each run with its own command.")
    return state


class StopFlag:
    """Turns SIGINT / SIGTERM into a flag the loop checks between steps, so the loop can write
    a final checkpoint instead of dying mid-step."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopFlag"]:
        def handler(signum, frame):
            if self.requested:        # second Ctrl-C: give up at once
                raise Interrupted(signum)
            self.requested, self.signum = True, signum
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def run_loop(state, step_fn: Callable[[], dict], *, options, images_per_step: int, run_dir: Path, world: World,
             on_event: Callable[[str, dict], None], sample_fn: Optional[Callable[[], dict]] = None) -> None:
    """The loop every trainer shares, top to bottom: step until `options.steps` or Ctrl-C /
    SIGTERM; every `options.log_every` steps a log line (log.jsonl and an event); every
    `options.sample_every` steps `sample_fn()` (what it wrote, {"path": ...} and any scores,
    logged with the step); every `options.keep_every` steps a kept checkpoint-STEP.pt (to export
    the one whose samples scored best); checkpoint.pt every `options.checkpoint_minutes` and at
    the end. `state` has .step, .wall_time and .save(run_dir, world, name) (atomic). Raises
    Interrupted after the final checkpoint when a signal stopped it."""
    steps, log_every = options.steps, options.log_every
    sample_every = getattr(options, "sample_every", 0) if sample_fn is not None else 0
    keep_every = getattr(options, "keep_every", 0)
    stop = StopFlag()
    last_checkpoint = time.monotonic()
    window_start, window_steps = time.monotonic(), 0
    with stop.installed():
        while state.step < steps and not stop.requested:
            started = time.monotonic()
            losses = step_fn()
            state.wall_time += time.monotonic() - started
            window_steps += 1
            if state.step % log_every == 0 or state.step == steps:
                elapsed = time.monotonic() - window_start
                info = {"step": state.step, **{name: float(value) for name, value in losses.items()},
                        "img_per_s": window_steps * images_per_step / max(elapsed, 1e-9),
                        "eta_s": (steps - state.step) * elapsed / max(window_steps, 1)}
                window_start, window_steps = time.monotonic(), 0
                if world.is_main:
                    with open(Path(run_dir) / "log.jsonl", "a") as log:
                        log.write(json.dumps(info) + "\n")
                on_event("log", info)
            if world.is_main and sample_every and state.step % sample_every == 0:
                info = {"step": state.step, **sample_fn()}
                with open(Path(run_dir) / "log.jsonl", "a") as log:
                    log.write(json.dumps(info) + "\n")
                on_event("samples", info)
            if keep_every and state.step % keep_every == 0:
                kept = f"checkpoint-{state.step:07d}.pt"
                state.save(run_dir, world, kept)
                on_event("checkpoint", {"step": state.step, "kept": kept})
            if time.monotonic() - last_checkpoint > options.checkpoint_minutes * 60:
                state.save(run_dir, world, CHECKPOINT_NAME)
                last_checkpoint = time.monotonic()
                on_event("checkpoint", {"step": state.step})
    state.save(run_dir, world, CHECKPOINT_NAME)
    on_event("stop", {"step": state.step, "interrupted": stop.requested})
    finish_distributed(world)
    if stop.requested:
        raise Interrupted(stop.signum)              # the checkpoint is written; the CLI exits 128 + signum
