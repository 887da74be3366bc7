"""Training the class-conditional AN GAN: hinge loss, two time-scale Adam, EMA generator,
AN orthogonality penalty, optional DiffAugment, resumable and data-parallel under torchrun.

One global step = `d_steps` discriminator updates + one generator update. Every random draw of
step t comes from seeds derived from (seed, t), and the data order from (seed, epoch), so a
resumed run reproduces an uninterrupted one, and N processes reproduce one process holding the
global batch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from annorm_cli.device import autocast
from annorm_cli.images import make_grid, save_png, to_uint8
from annorm_cli.models.class_conditional import ClassConditionalConfig, Discriminator, Generator, \
    standing_statistics
from annorm_cli.errors import BadInputError
from annorm_cli.datasets import LabelledImages, load_labelled_images
from annorm_cli.nn.attentive_norm import orthogonality_penalty
from annorm_cli.nn.widen import load_narrower
from annorm_cli.train import common
from annorm_cli.train.options import TrainOptions


# ----------------------------------------------------------------------------- augmentation
def diff_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """DiffAugment (Zhao et al., 2020) colour + translation (up to 1/8, edges replicated) + cutout (1/2), differentiable,
    applied the same way to real and fake images; randomness from `generator`."""
    B = images.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(images.device)  # noqa: E731
    images = images + (rand(B, 1, 1, 1) - 0.5)
    mean = images.mean(1, keepdim=True)
    images = (images - mean) * (rand(B, 1, 1, 1) * 2) + mean
    mean = images.mean((1, 2, 3), keepdim=True)
    images = (images - mean) * (rand(B, 1, 1, 1) + 0.5) + mean
    H, W = images.shape[2:]
    shift = (rand(2, B) * (H // 4 + 1)).long() - H // 8                       # [2, B] in [-H/8, H/8]
    rows = (torch.arange(H, device=images.device)[None] - shift[0][:, None]).clamp(0, H - 1)  # [B, H]
    cols = (torch.arange(W, device=images.device)[None] - shift[1][:, None]).clamp(0, W - 1)  # [B, W]
    images = images[torch.arange(B)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    centre = (rand(2, B) * torch.tensor([[H], [W]], device=images.device)).long()
    ys = torch.arange(H, device=images.device)[None, :, None]
    xs = torch.arange(W, device=images.device)[None, None, :]
    hole = ((ys - centre[0][:, None, None]).abs() < H // 4) & ((xs - centre[1][:, None, None]).abs() < W // 4)
    return images * (~hole)[:, None].to(images.dtype)


# ----------------------------------------------------------------------------- the run state
RunState = common.GanRun


def build_state(model_config: ClassConditionalConfig, options: TrainOptions, device: torch.device,
                world: common.World, precision: str = "fp32") -> RunState:
    torch.manual_seed(options.seed)
    G, D = Generator(model_config).to(device), Discriminator(model_config).to(device)
    G, D = common.channels_last_on_cpu(device, G, D)
    ema = common.EMA(G, options.ema_decay)
    betas = (options.beta1, options.beta2)
    fused = True if options.fast else None                           # one kernel for all of Adam's tensors
    opt_g = torch.optim.Adam(G.parameters(), options.lr_g, betas=betas, fused=fused)
    opt_d = torch.optim.Adam(D.parameters(), options.lr_d, betas=betas, fused=fused)
    state = RunState("class", common.wrap_ddp(G, world, device), common.wrap_ddp(D, world, device), ema, opt_g, opt_d,
                     model_config, options, precision)
    if options.fast:
        state.fast = compiled_step_modules(state.G, state.D, device)
    return state


COMPILE_BACKEND = "inductor"    # tests use "aot_eager": the same graphs, without the code generation's minutes


def compiled_step_modules(G: torch.nn.Module, D: torch.nn.Module, device: torch.device) -> tuple:
    """G and D compiled for the training step: on CUDA with CUDA graphs (mode reduce-overhead: a
    step of this small GAN is bound by kernel launches, not arithmetic), elsewhere plainly. They
    share their parameters and buffers with G and D, so checkpoints, the EMA and the optimisers
    see one model."""
    mode = "reduce-overhead" if device.type == "cuda" and COMPILE_BACKEND == "inductor" else None
    return tuple(torch.compile(model, backend=COMPILE_BACKEND, mode=mode, dynamic=False) for model in (G, D))


def widened_config(saved: dict, given: ClassConditionalConfig) -> ClassConditionalConfig:
    """The architecture of a run that starts from checkpoint `saved`: the checkpoint's, with the
    generator widths of `given`, none narrower than the checkpoint's."""
    trained = ClassConditionalConfig.from_dict(saved["model_config"])
    if any(new < old for new, old in zip(given.g_channels, trained.g_channels)):
        raise BadInputError(f"--g-channels {','.join(map(str, given.g_channels))} is narrower than the checkpoint's "
                            f"{','.join(map(str, trained.g_channels))}; a run can start only from a narrower or equal G.")
    return dataclasses.replace(trained, g_channels=given.g_channels)


def start_from_checkpoint(state: RunState, saved: dict) -> None:
    """Start a new run where checkpoint `saved` stopped, with a wider generator: G and its EMA
    widened so they compute what the checkpoint's did (nn/widen.py), D and its optimizer as saved,
    the step count and wall time going on (so the data order, the EMA and the learning-rate
    schedule continue). G's optimizer starts afresh: saved moments have no entries for the new
    weights, and zeros there would make their first Adam steps huge."""
    if saved["step"] >= state.options.steps:
        raise BadInputError(f"The checkpoint is at step {saved['step']:,}; --steps ({state.options.steps:,}) "
                            "counts from the start of its run, so type a larger one.")
    try:
        for model, key in ((common.unwrap(state.G), "G"), (state.ema.model, "G_ema")):
            missing = load_narrower(model, saved[key])
            if missing:
                raise BadInputError(f"The checkpoint's generator lacks {', '.join(missing[:3])}; "
                                    "it is not this architecture.")
        common.unwrap(state.D).load_state_dict(saved["D"])
        state.opt_d.load_state_dict(saved["opt_d"])
        state.wall_time = float(saved["wall_time"])
    except BadInputError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as exc:
        raise BadInputError(f"The checkpoint to start from is damaged or of another architecture "
                            f"({type(exc).__name__}).") from None
    state.step = int(saved["step"])
    state.precision = saved.get("precision", "fp32") if state.options.precision == "auto" else state.options.precision
    state.earlier_stages = list(saved.get("earlier_stages", []))


# ----------------------------------------------------------------------------- one step
def _real_batch(data: LabelledImages, options: TrainOptions, batch_index: int, rng: torch.Generator,
                device: torch.device, part: slice):
    indices = common.epoch_batches(len(data.labels), options.batch_size, options.seed, batch_index)
    images = data.images[indices].float() / 127.5 - 1                    # [B, 3, H, W] in [-1, 1]
    flip = torch.rand(len(indices), generator=rng) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return images[part].to(device), data.labels[indices][part].to(device)


def _noise(config: ClassConditionalConfig, batch: int, rng: torch.Generator, device: torch.device, part: slice):
    z = torch.randn(batch, config.z_dim, generator=rng)
    labels = torch.randint(0, config.n_classes, (batch,), generator=rng)
    return z[part].to(device), labels[part].to(device)


def _augment(images: torch.Tensor, options: TrainOptions, rng: torch.Generator, part: slice) -> torch.Tensor:
    if not options.diffaugment:
        return images
    # drawn for the global batch and sliced, so N processes augment as one would
    full = torch.zeros(options.batch_size, *images.shape[1:], device=images.device)
    full[part] = images
    return diff_augment(full, rng)[part]


def train_step(state: RunState, data: LabelledImages, device: torch.device, world: common.World) -> dict:
    """One global step (d_steps D updates, one G update); returns the losses (this process's share)."""
    options, config, t = state.options, state.model_config, state.step
    part = common.local_slice(world, options.batch_size)
    torch.manual_seed(common.step_seed(options.seed, t, stream=1))   # AN self-sampling positions
    rng = common.step_generator(options.seed, t)
    common.set_learning_rates(state, options.lr_g, options.lr_d, options.lr_decay_start)
    G, D = state.fast or (state.G, state.D)
    for k in range(options.d_steps):
        real, real_labels = _real_batch(data, options, t * options.d_steps + k, rng, device, part)
        z, fake_labels = _noise(config, options.batch_size, rng, device, part)
        with autocast(device, state.precision):
            with torch.no_grad():
                fake = common.unwrap(state.G)(z, fake_labels)
            images = torch.cat([_augment(real, options, rng, part), _augment(fake, options, rng, part)])
            logits, class_scores = D(images, torch.cat([real_labels, fake_labels]), class_scores=True)  # one pass
            real_logits, fake_logits = logits.float().chunk(2)                 # [b] each
            loss_d = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
            if options.class_weight:
                real_scores = class_scores.float()[:len(real_labels)]          # [b, n_classes]
                loss_d = loss_d + options.class_weight * F.cross_entropy(real_scores, real_labels)
        penalty_d = orthogonality_penalty(common.unwrap(state.D)) * options.ortho_weight
        state.opt_d.zero_grad(set_to_none=True)
        (loss_d.float() + penalty_d).backward()
        state.opt_d.step()
    z, fake_labels = _noise(config, options.batch_size, rng, device, part)
    # D's weights need no gradient in G's step; the compiled D keeps them (a flag flip would
    # recompile it) and its unused gradients are cleared before D's next update
    D_local = D if state.fast else common.unwrap(D).requires_grad_(False)
    with autocast(device, state.precision):
        fake = G(z, fake_labels)
        logits, class_scores = D_local(_augment(fake, options, rng, part), fake_labels, class_scores=True)
        loss_g = -logits.mean()
        weight_g = options.class_weight if options.class_weight_g is None else options.class_weight_g
        if weight_g:
            loss_g = loss_g + weight_g * F.cross_entropy(class_scores.float(), fake_labels)
    penalty_g = orthogonality_penalty(common.unwrap(state.G)) * options.ortho_weight
    state.opt_g.zero_grad(set_to_none=True)
    (loss_g.float() + penalty_g).backward()
    state.opt_g.step()
    common.unwrap(state.D).requires_grad_(True)
    state.ema.update(common.unwrap(state.G), t)
    state.step = t + 1
    # tensors, read (a device sync) only when the loop logs them
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "ortho": (penalty_g + penalty_d).detach()}


# ----------------------------------------------------------------------------- sampling
def sampling_copy(state: RunState, *, batches: int = 16, batch: int = 64) -> Generator:
    """The EMA generator with standing batch-norm statistics (recomputed over `batches` random
    batches from a fixed seed), in eval mode: what ships and what the sample grids show."""
    import copy
    generator = copy.deepcopy(state.ema.model)
    rng = torch.Generator().manual_seed(12345)
    device = next(generator.parameters()).device
    config = state.model_config
    draws = [(torch.randn(batch, config.z_dim, generator=rng).to(device),
              torch.randint(0, config.n_classes, (batch,), generator=rng).to(device)) for _ in range(batches)]
    standing_statistics(generator, draws)
    return generator


def sample_sheet(generator: Generator, config: ClassConditionalConfig, *, per_class: int = 10):
    """One row per class, `per_class` fixed seeds per row: [rows, cols] grid as uint8."""
    rng = torch.Generator().manual_seed(2020)
    device = next(generator.parameters()).device
    z = torch.randn(per_class, config.z_dim, generator=rng).repeat(config.n_classes, 1)
    labels = torch.arange(config.n_classes).repeat_interleave(per_class)
    with torch.no_grad():
        images = generator(z.to(device), labels.to(device))
    return make_grid(to_uint8(images), per_class)


def load_scorer(name: str, class_names: tuple[str, ...]) -> tuple[Optional[torch.nn.Module], str]:
    """The classifier that scores samples during training, and why there is none when it is None:
    a registry name or .safetensors file whose classes are the data's."""
    from annorm_cli import weights
    from annorm_cli.errors import WeightsError
    if not name:
        return None, "no classifier given"
    try:
        scorer, _ = weights.load_classifier(name)
    except WeightsError as exc:
        return None, str(exc)
    if tuple(scorer.config.class_names) != tuple(class_names):
        return None, f"classifier '{name}' knows other classes than the data's"
    return scorer, ""


def score_samples(generator: Generator, scorer: torch.nn.Module, per_class: int) -> dict:
    """Class accuracy of `per_class` samples of every class (seeds 0 ... per_class - 1), overall and
    per class, as `annorm evaluate accuracy --per-class N` measures an exported model; and their
    spread within each class (pixel std across samples: falls towards 0 when a class collapses);
    and the share of samples with a pixel checkerboard patch (real test images: 2.2%); and the
    share of seeds whose samples fail in most classes (recognisability.broken_seeds)."""
    from annorm_cli.evaluate.recognisability import (broken_seeds, checkerboard_share, class_accuracy, class_samples,
                                                     predict, spread)
    images, classes = class_samples(generator, per_class, device=next(generator.parameters()).device)
    scores = class_accuracy(scorer, images.permute(0, 3, 1, 2), classes)
    spreads = spread(images, classes, generator.config.n_classes)
    broken = broken_seeds(predict(scorer, images), classes, list(range(per_class)))
    return {"class_accuracy": scores["class_accuracy"],
            "class_accuracy_per_class": [round(v, 4) for v in scores["class_accuracy_per_class"]],
            "class_spread": sum(spreads) / len(spreads), "class_spread_per_class": [round(v, 2) for v in spreads],
            "checkerboard_share": checkerboard_share(images), "broken_seed_share": broken["broken_seed_share"]}


def load_fid_monitor(options: TrainOptions) -> tuple[Optional[tuple], str]:
    """(Inception network, reference (mu, sigma)) for the FID the trainer logs every `fid_every`
    steps, or None and why not: off, the FID network not installed, or no reference statistics."""
    from annorm_cli.errors import AnnormError
    from annorm_cli.evaluate import fid
    if options.fid_every <= 0:
        return None, "off"
    if not Path(options.fid_reference).is_file():
        return None, f"no reference statistics at {options.fid_reference}"
    try:
        return (fid.load_inception(), fid.load_reference(options.fid_reference)), ""
    except AnnormError as exc:
        return None, str(exc)


def fid_of_samples(generator: Generator, monitor: tuple, per_class: int) -> dict:
    """FID of `per_class` samples of every class (seeds 0 ... per_class - 1) against the reference, as
    `annorm evaluate fid --per-class N --classifier ""` measures an exported model. Few samples bias FID
    upward but rank models alike: a trend monitor, not the protocol (measured on three cifar10-an
    checkpoints, 500 / 2,000 samples: 88.4 / 51.1, 90.3 / 52.9, 100.1 / 63.1; 10k of the first: 41.1)."""
    from annorm_cli.evaluate import fid
    from annorm_cli.evaluate.recognisability import class_samples
    network, reference = monitor
    images, labels = class_samples(generator, per_class, device=next(generator.parameters()).device)
    features = fid.inception_features(images.permute(0, 3, 1, 2), network)        # [N, 2048]
    return {f"fid_{len(images)}": fid.fid_scores(features, labels.numpy(), reference)["fid"]}


# ----------------------------------------------------------------------------- the loop
def choose_precision(state: RunState, data: LabelledImages, device: torch.device,
                     world: common.World) -> tuple[str, dict[str, float]]:
    """Time a few steps in fp32 and bf16 on throw-away copies of the models; keep the faster
    (under torchrun every process takes rank 0's choice)."""
    import copy

    def one(precision: str) -> None:
        probe = copy.copy(state)
        probe.G, probe.D = copy.deepcopy(common.unwrap(state.G)), copy.deepcopy(common.unwrap(state.D))
        probe.ema = copy.deepcopy(state.ema)
        probe.opt_g = torch.optim.Adam(probe.G.parameters(), 1e-12)
        probe.opt_d = torch.optim.Adam(probe.D.parameters(), 1e-12)
        probe.precision = precision
        train_step(probe, data, device, world)

    chosen, timings = common.probe_precision(one, repeats=2)
    if world.size > 1:
        import torch.distributed as dist
        shared = [chosen]
        dist.broadcast_object_list(shared, src=0)
        chosen = shared[0]
    return chosen, timings


def train(options: TrainOptions, model_config: ClassConditionalConfig, run_dir: Path, *,
          device: torch.device, resume: Optional[dict] = None, overrides: frozenset[str] = frozenset(),
          on_event: Callable[[str, dict], None] = lambda kind, info: None) -> RunState:
    """Train (or continue) a run in `run_dir`. Events for the caller's progress display:
    ("start", {...}), ("log", {...}), ("checkpoint", {...}), ("samples", {...}), ("stop", {...})."""
    world = common.init_distributed(device)
    start = None
    if resume is not None:
        options = common.resumed_options(resume, options, overrides)
        model_config = ClassConditionalConfig.from_dict(resume["model_config"])
    elif options.init_from:
        start = common.load_checkpoint(options.init_from, task="class")
        model_config = widened_config(start, model_config)
    data = load_labelled_images(options.data, options.split)
    if tuple(data.images.shape[2:]) != (model_config.resolution, model_config.resolution):
        raise BadInputError(f"The images in '{options.data}' are {data.images.shape[3]}x{data.images.shape[2]}; "
                            f"this architecture trains on {model_config.resolution}x{model_config.resolution}.")
    if resume is not None and len(data.class_names) != model_config.n_classes:
        raise BadInputError(f"'{options.data}' has {len(data.class_names)} classes but the resumed run was trained "
                            f"on {model_config.n_classes}; resume it with its own data.")
    model_config = dataclasses.replace(model_config, class_names=data.class_names,
                                       n_classes=len(data.class_names))
    state = build_state(model_config, options, device, world)
    if resume is not None:
        state.restore(resume)
    elif start is not None:
        start_from_checkpoint(state, start)
    elif options.precision == "auto":
        state.precision, timings = choose_precision(state, data, device, world)
        on_event("precision", {"chosen": state.precision, "seconds_per_step": timings})
    else:
        state.precision = options.precision
    run_dir = Path(run_dir)
    if world.is_main:
        common.prepare_run_dir(run_dir)
    # only rank 0 writes and scores sample grids
    scorer, no_scorer = load_scorer(options.classifier if world.is_main else "", model_config.class_names)
    fid_monitor, no_fid = load_fid_monitor(options) if world.is_main else (None, "not rank 0")
    on_event("start", {"step": state.step, "steps": options.steps, "precision": state.precision,
                       "world": world.size, "images": len(data.labels),
                       "init_from": options.init_from if start is not None else None,
                       "scorer": options.classifier if scorer is not None else f"none ({no_scorer})",
                       "fid": f"every {options.fid_every} steps" if fid_monitor is not None else f"none ({no_fid})"})

    def samples() -> dict:
        generator = sampling_copy(state)
        info = {"path": str(save_png(sample_sheet(generator, model_config), run_dir / f"samples-{state.step:07d}.png"))}
        if scorer is not None:
            info.update(score_samples(generator, scorer, options.score_per_class))
        if fid_monitor is not None and state.step % options.fid_every == 0:
            info.update(fid_of_samples(generator, fid_monitor, options.fid_per_class))
        return info

    common.run_loop(state, lambda: train_step(state, data, device, world), options=options,
                    images_per_step=options.batch_size * options.d_steps, run_dir=run_dir, world=world,
                    on_event=on_event, sample_fn=samples)
    return state


def export_generator(saved: dict, path: Path, card: dict) -> dict:
    """Write the EMA generator of a checkpoint (with standing batch-norm statistics) as shipped
    weights: safetensors + JSON card (config, sha256, steps, wall time + `card`)."""
    from annorm_cli import weights
    model_config = ClassConditionalConfig.from_dict(saved["model_config"])
    options = common.saved_options(saved, TrainOptions)
    state = build_state(model_config, options, torch.device("cpu"), common.World())
    state.restore(saved)
    generator = sampling_copy(state)
    info = {"task": "class-conditional", "classes": list(model_config.class_names), "steps": state.step,
            "train_wall_time_s": round(state.wall_time), "train_options": saved["options"],
            "train_precision": saved["precision"], **card}
    return weights.save(generator, "ClassConditionalGenerator", model_config.to_dict(), path, info)
