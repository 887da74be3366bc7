"""Training the AN inpainting network on scene photos: random crops with rescaling and flips,
free-form masks, L1 (or L2, or RGB error length) on hole and valid pixels (coarse and refined), hinge adversarial loss
from an SN-PatchGAN (from `adv_start` on), AN orthogonality penalty, EMA generator.
Resumable and data-parallel like the class-conditional trainer (same machinery in common.py)."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from annorm_cli.datasets import holdout_list, load_photos
from annorm_cli.device import autocast
from annorm_cli.errors import BadInputError
from annorm_cli.images import save_png, to_uint8
from annorm_cli.masks import object_mask, random_mask
from annorm_cli.models.inpainting import InpaintConfig, InpaintGenerator, PatchDiscriminator, load_narrower
from annorm_cli.nn.attentive_norm import orthogonality_penalty
from annorm_cli.pipelines.inpainting import low_pass_in_hole, patchmatch_proposals
from annorm_cli.train import common
from annorm_cli.train.options import InpaintOptions


def build_state(config: InpaintConfig, options: InpaintOptions, device: torch.device,
                world: common.World) -> common.GanRun:
    torch.manual_seed(options.seed)
    G = InpaintGenerator(config).to(device)
    D = PatchDiscriminator(options.d_channels, options.d_layers).to(device)
    G, D = common.channels_last_on_cpu(device, G, D)
    ema = common.EMA(G, options.ema_decay)
    opt_g = torch.optim.Adam(G.parameters(), options.lr, betas=(options.beta1, options.beta2))
    opt_d = torch.optim.Adam(D.parameters(), options.lr_d, betas=(options.beta1, options.beta2))
    return common.GanRun("inpaint", common.wrap_ddp(G, world, device), common.wrap_ddp(D, world, device), ema,
                         opt_g, opt_d, config, options, options.precision)


def start_from_weights(state: common.GanRun, path: str) -> None:
    """Copy a trained model's weights into a new run's generator and its EMA copy, so the run
    starts as that model. The new network may add the zero-started skip convolutions and a wider
    1/4 stage (see load_narrower); anything else must match."""
    from annorm_cli import weights
    trained, card = weights.load(weights=path, task="inpaint")
    comparable = lambda config: dataclasses.replace(config, skips=False, quarter_channels=None)  # noqa: E731
    target = state.model_config
    if (comparable(trained.config) != comparable(target) or trained.config.quarter > target.quarter
            or trained.config.skips > target.skips):
        raise BadInputError(f"'{path}' does not match the network being trained (it differs in more than "
                            "the skip connections and a wider 1/4 stage).")
    for model in (common.unwrap(state.G), state.ema.model):
        missing = load_narrower(model, trained.state_dict())
        assert all(".skip_" in key for key in missing), missing
    state.earlier_stages = training_stages(card)


def training_stages(card: dict) -> list[dict]:
    """The runs that made a shipped model, oldest first: its card's `stages`, or for a card
    written before stages were recorded, one stage of its `steps` and `train_wall_time_s`."""
    if "stages" in card:
        return [dict(stage) for stage in card["stages"]]
    return [{"steps": card.get("steps", 0), "train_wall_time_s": card.get("train_wall_time_s", 0), "init_from": None}]


def random_crop(photo: torch.Tensor, crop: int, rng: torch.Generator) -> torch.Tensor:
    """Rescale by a random factor (down to where the short side equals the crop), crop, maybe flip.
    photo uint8 [3, H, W] -> float [3, crop, crop] in [-1, 1]."""
    short = min(photo.shape[1:])
    low = min(1.0, crop / short)
    factor = low + (1.0 - low) * torch.rand((), generator=rng).item()
    image = photo[None].float() / 127.5 - 1
    if factor < 1.0:
        size = [max(crop, round(s * factor)) for s in photo.shape[1:]]
        image = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    if min(image.shape[2:]) < crop:
        raise BadInputError(f"A training photo is smaller ({image.shape[2]}x{image.shape[3]}) than the crop size {crop}.")
    return crop_and_flip([image[0]], crop, rng)[0]


def crop_and_flip(planes: list[torch.Tensor], crop: int, rng: torch.Generator) -> list[torch.Tensor]:
    """The same random crop x crop window of each [C, H, W] tensor, all mirrored or none."""
    H, W = planes[0].shape[1:]
    top = int(torch.randint(0, H - crop + 1, (), generator=rng))
    left = int(torch.randint(0, W - crop + 1, (), generator=rng))
    planes = [p[:, top:top + crop, left:left + crop] for p in planes]
    return [p.flip(2) for p in planes] if torch.rand((), generator=rng).item() < 0.5 else planes


TRAINING_OBJECT_RATIO = (0.05, 0.30)   # wider than the objects bucket's 10-25%, so that bucket is not the only size


def training_mask(height: int, width: int, seed: int, object_share: float) -> np.ndarray:
    """A stroke mask (random_mask), or with probability `object_share` (decided by the seed) one
    solid object of 5-30% (object_mask), the holes users draw to remove something."""
    if object_share > 0 and np.random.default_rng(seed).uniform() < object_share:
        return object_mask(height, width, seed, TRAINING_OBJECT_RATIO)
    return random_mask(height, width, seed)


def inference_scale_crop(photo: torch.Tensor, side: int, crop: int, rng: torch.Generator,
                         mask_seed: int, object_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A crop as inference sees the photo: its long side scaled to `side` x U(0.75, 1) (the
    network's work_side), a hole mask drawn on the whole scaled photo (so holes have the size they
    have at inference), then the same crop of both, maybe flipped.
    photo uint8 [3, H, W] -> (float [3, crop, crop] in [-1, 1], float mask [1, crop, crop])."""
    H, W = photo.shape[1:]
    factor = side * (0.75 + 0.25 * torch.rand((), generator=rng).item()) / max(H, W)
    factor = min(1.0, max(factor, crop / min(H, W)))
    image = photo[None].float() / 127.5 - 1
    if factor < 1.0:
        size = [max(crop, round(s * factor)) for s in (H, W)]
        image = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    h, w = image.shape[2:]
    if min(h, w) < crop:
        raise BadInputError(f"A training photo is smaller ({H}x{W}) than the crop size {crop}.")
    mask = torch.from_numpy(training_mask(h, w, mask_seed, object_share))[None].float()   # [1, h, w]
    image, mask = crop_and_flip([image[0], mask], crop, rng)
    return image, mask


PROPOSALS = ("none", "patchmatch")


def make_batch(photos: list[torch.Tensor], options: InpaintOptions, step: int,
               work_side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of step `step`: crops [B, 3, c, c] and masks [B, 1, c, c], from (seed, step)."""
    rng = common.step_generator(options.seed, step)
    picks = torch.randint(0, len(photos), (options.batch_size,), generator=rng)
    mask_seeds = [common.step_seed(options.seed, step, 10 + i) % 2 ** 32 for i in range(options.batch_size)]
    if options.inference_scale:
        pairs = [inference_scale_crop(photos[int(p)], work_side, options.crop, rng, seed, options.object_masks)
                 for p, seed in zip(picks, mask_seeds)]
        return torch.stack([image for image, _ in pairs]), torch.stack([mask for _, mask in pairs])
    images = torch.stack([random_crop(photos[int(i)], options.crop, rng) for i in picks])
    masks = np.stack([training_mask(options.crop, options.crop, seed, options.object_masks) for seed in mask_seeds])
    return images, torch.from_numpy(masks)[:, None].float()


RECONSTRUCTION_LOSSES = ("l1", "l2", "rgb")


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, options: InpaintOptions):
    """Weighted mean (hole_weight in the hole, valid_weight outside) of each pixel's error:
    l1: |output - target| per channel, so the fill tends to each channel's own median of what the
        hole may hold; where two colours are equally likely (white / blue stripes) the channels
        can pick different ones and make a colour that is neither (magenta);
    l2: its square, the mean, which is what PSNR rewards (blurrier, no false colours);
    rgb: the length of the pixel's RGB error vector, robust like l1 but one median of the
        colour as a whole, which lies between the likely colours."""
    weight = options.hole_weight * mask + options.valid_weight * (1 - mask)            # [B, 1, H, W]
    difference = output - target                                                      # [B, 3, H, W]
    if options.reconstruction == "rgb":
        return ((difference.square().sum(1, keepdim=True) + 1e-6).sqrt() * weight).mean()
    error = difference.abs() if options.reconstruction == "l1" else difference.square()
    return (error * weight).mean()


def hole_share(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The share of each cell of a [.., size] map that is hole: masks [B, 1, H, W] -> [B, 1, *size]."""
    return F.adaptive_avg_pool2d(masks, size)


def hole_mean(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of values [B, C, h, w] over the hole: each cell weighted by its hole share, so cells
    of known pixels (equal in the fill and the truth) neither train D nor pull G."""
    weight = hole_share(masks, values.shape[2:])
    return (values * weight).sum() / (weight.sum() * values.shape[1]).clamp_min(1e-6)


def discriminator_loss(D: torch.nn.Module, images: torch.Tensor, completed: torch.Tensor,
                       masks: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the SN-PatchGAN on the hole's cells: real photos above 1, fills below -1."""
    logits = D(torch.cat([images, completed.detach()]), torch.cat([masks, masks]))[-1].float()
    real, fake = logits.chunk(2)
    return hole_mean(F.relu(1 - real), masks) + hole_mean(F.relu(1 + fake), masks)


def generator_adversarial(D: torch.nn.Module, images: torch.Tensor, completed: torch.Tensor,
                          masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge generator loss on the hole's cells, feature matching: the L1 distance between D's
    features of the fill and of the truth, per layer below the logits, over the hole's cells)."""
    fake = D(completed, masks)
    with torch.no_grad():
        real = D(images, masks)
    adversarial = -hole_mean(fake[-1].float(), masks)
    matching = sum((hole_mean((f.float() - r.float()).abs(), masks) for f, r in zip(fake[:-1], real[:-1])),
                   torch.zeros((), device=completed.device))
    return adversarial, matching / max(1, len(fake) - 1)


def train_step(state: common.GanRun, photos: list[torch.Tensor], device: torch.device, world: common.World) -> dict:
    options, t = state.options, state.step
    part = common.local_slice(world, options.batch_size)
    torch.manual_seed(common.step_seed(options.seed, t, stream=1))
    images, masks = make_batch(photos, options, t, state.model_config.work_side)
    proposals = patchmatch_proposals(images, masks, common.step_seed(options.seed, t, stream=2) % 2 ** 31) \
        if options.proposal == "patchmatch" else None
    images, masks = images[part].to(device), masks[part].to(device)
    proposals = proposals[part].to(device) if proposals is not None else None
    common.set_learning_rates(state, options.lr, options.lr_d, options.lr_decay_start)
    adversarial = options.adv_weight > 0 and t >= options.adv_start
    losses = {}
    with autocast(device, state.precision):
        coarse, refined = fill(state.G, images, masks, proposals, options.correction_blur)
        completed = refined * masks + images * (1 - masks)
    if adversarial:
        with autocast(device, state.precision):
            loss_d = discriminator_loss(state.D, images, completed, masks)
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        state.opt_d.step()
        losses["loss_d"] = loss_d.item()
    loss_rec = reconstruction_loss(refined.float(), images, masks, options)
    loss = options.rec_weight * loss_rec
    if proposals is None:                                      # a proposal is given, not learnt
        loss = loss + reconstruction_loss(coarse.float(), images, masks, options)
    loss = loss + orthogonality_penalty(common.unwrap(state.G)) * options.ortho_weight
    if adversarial:
        D_local = common.unwrap(state.D).requires_grad_(False)
        with autocast(device, state.precision):
            loss_adv, loss_fm = generator_adversarial(D_local, images, completed, masks)
        loss = loss + options.adv_weight * loss_adv + options.feature_weight * loss_fm
        losses.update(loss_adv=loss_adv.item(), loss_fm=loss_fm.item())
    state.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_g.step()
    if adversarial:
        common.unwrap(state.D).requires_grad_(True)
    state.ema.update(common.unwrap(state.G), t)
    state.step = t + 1
    return {"loss_rec": loss_rec.item(), **losses}


def fill(G: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, proposals: Optional[torch.Tensor],
         correction_blur: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(coarse, refined) of the generator; with proposals and a correction_blur, refined is the
    proposal plus the low frequencies (low_pass_in_hole) of the network's correction of it, so
    PatchMatch's texture stays and the network can only move its colours and shading."""
    coarse, refined = G(images, masks, proposals)
    if proposals is not None and correction_blur > 0:
        refined = proposals + low_pass_in_hole(refined - proposals, masks, correction_blur)
    return coarse, refined


def sample_strip(generator: InpaintGenerator, photos: list[torch.Tensor], crop: int, proposal: str = "none",
                 correction_blur: float = 0.0) -> np.ndarray:
    """Rows of (input with hole, mask, output, truth) for fixed centre crops of held-out photos
    (with a PatchMatch proposal, the output is the network's refinement of it)."""
    from annorm_cli.images import make_grid
    images = torch.stack([(p[:, :crop, :crop].float() / 127.5 - 1) for p in photos])      # [rows, 3, c, c]
    masks = torch.from_numpy(np.stack([random_mask(crop, crop, 1000 + i, (0.2, 0.4))
                                       for i in range(len(photos))]))[:, None].float()
    proposals = patchmatch_proposals(images, masks, 0) if proposal == "patchmatch" else None
    with torch.no_grad():
        _, refined = fill(generator.eval(), images, masks, proposals, correction_blur)
    completed = refined * masks + images * (1 - masks)
    columns = [images * (1 - masks) + masks, masks.expand(-1, 3, -1, -1) * 2 - 1, completed, images]
    tiles = torch.stack(columns, 1).flatten(0, 1)                                 # [rows*4, 3, c, c]
    return make_grid(to_uint8(tiles), 4)


def train(options: InpaintOptions, config: InpaintConfig, run_dir: Path, *, device: torch.device,
          resume: Optional[dict] = None, overrides: frozenset[str] = frozenset(),
          on_event: Callable[[str, dict], None] = lambda kind, info: None) -> common.GanRun:
    world = common.init_distributed(device)
    if resume is not None:
        options = common.resumed_options(resume, options, overrides)
    if options.correction_blur > 0 and options.proposal != "patchmatch":
        raise BadInputError("--correction-blur smooths the correction of a proposal: it needs --proposal patchmatch.")
    held_out = [name for name in holdout_list() if (Path(options.data) / name).is_file()]
    photos = list(load_photos(options.data, exclude=tuple(held_out)).values())
    preview = list(load_photos(options.data, held_out[:4]).values()) if held_out else photos[:4]
    if resume is not None:
        config = InpaintConfig.from_dict(resume["model_config"])
    state = build_state(config, options, device, world)
    if resume is not None:
        state.restore(resume)
    elif options.init_from:
        start_from_weights(state, options.init_from)
    run_dir = Path(run_dir)
    if world.is_main:
        common.prepare_run_dir(run_dir)
    on_event("start", {"step": state.step, "steps": options.steps, "precision": state.precision,
                       "world": world.size, "images": len(photos)})

    def sample() -> dict:
        strip = sample_strip(copy.deepcopy(state.ema.model).cpu(), preview, options.crop, options.proposal,
                             options.correction_blur)
        return {"path": str(save_png(strip, run_dir / f"samples-{state.step:07d}.png"))}

    common.run_loop(state, lambda: train_step(state, photos, device, world), options=options,
                    images_per_step=options.batch_size, run_dir=run_dir, world=world, on_event=on_event,
                    sample_fn=sample)
    return state


def export_generator(saved: dict, path: Path, card: dict) -> dict:
    """Write a checkpoint's EMA generator as shipped weights + card. `steps` is this run's step
    (what --resume continues); `stages` lists every run the model was grown through, and
    `total_steps` / `train_wall_time_s` add them up."""
    from annorm_cli import weights
    common.saved_options(saved, InpaintOptions)
    config = InpaintConfig.from_dict(saved["model_config"])
    generator = InpaintGenerator(config)
    generator.load_state_dict(saved["G_ema"])
    stages = [*saved.get("earlier_stages", []), {"steps": saved["step"], "train_wall_time_s": round(saved["wall_time"]),
                                                 "init_from": saved["options"].get("init_from")}]
    info = {"task": "inpaint", "steps": saved["step"], "total_steps": sum(stage["steps"] for stage in stages),
            "train_wall_time_s": sum(stage["train_wall_time_s"] for stage in stages), "stages": stages,
            "train_options": saved["options"], "holdout": holdout_list(), **card}
    return weights.save(generator, "InpaintGenerator", config.to_dict(), path, info)
