"""The settings of the trainers, stored in every checkpoint: one source of truth for their
defaults, which the `annorm train` options read (torch-free, so `annorm --help` stays fast)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from annorm_cli.data import CIFAR10, CIFAR10_TEST_STATS, SCENES


@dataclass
class TrainOptions:
    """Optimisation settings of `annorm train class` (stored in every checkpoint)."""
    data: str = str(CIFAR10)
    split: str = "train"
    steps: int = 100_000
    batch_size: int = 64          # global, over all processes
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.999
    d_steps: int = 1
    lr_decay_start: Optional[int] = None   # linear decay to 0 from this step to `steps`
    ema_decay: float = 0.999
    ortho_weight: float = 1e-3
    class_weight: float = 0.0           # auxiliary cross-entropy of D's class projection: real in D, fake in G
    class_weight_g: Optional[float] = None   # G's share of it (None: class_weight); > 0 collapsed classes here
    diffaugment: bool = False
    seed: int = 0
    init_from: Optional[str] = None     # a class training checkpoint a new run starts from, its G widened (nn/widen.py)
    precision: str = "auto"
    sample_every: int = 500
    checkpoint_minutes: float = 5.0
    keep_every: int = 0                 # also keep checkpoint-STEP.pt every N steps (0: never)
    log_every: int = 20
    classifier: str = "cifar10-classifier"   # scores the samples at every sample grid ("" to skip)
    score_per_class: int = 100
    fid_every: int = 0                  # FID of fid_per_class samples per class vs fid_reference (0: off)
    fid_per_class: int = 50
    fid_reference: str = str(CIFAR10_TEST_STATS)
    fast: bool = False                  # fused Adam and G, D compiled for the step (CUDA graphs on CUDA); same losses


@dataclass
class InpaintOptions:
    """Settings of `annorm train inpaint` (stored in every checkpoint)."""
    data: str = str(SCENES)
    steps: int = 100_000
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-4
    lr_d: float = 4e-4
    lr_decay_start: Optional[int] = None   # linear decay of both learning rates to 0 from this step to `steps`
    beta1: float = 0.5
    beta2: float = 0.999
    hole_weight: float = 6.0
    valid_weight: float = 1.0
    reconstruction: str = "l1"          # "l1" | "l2" | "rgb": per-pixel error of the weighted reconstruction loss
    adv_weight: float = 0.01           # hinge loss of the SN-PatchGAN on the hole's cells (0: no discriminator)
    adv_start: int = 20_000
    d_channels: int = 32               # discriminator width (x2, x4 in deeper layers)
    d_layers: int = 6                  # stride-2 layers of the discriminator (cells of 2**d_layers px)
    feature_weight: float = 0.0        # feature matching: L1 between D's features of the fill and of the truth
    rec_weight: float = 1.0            # weight of the reconstruction loss on the refined output (the coarse keeps 1)
    proposal: str = "none"             # "patchmatch": the refinement stage refines PatchMatch's fill of each crop
    correction_blur: float = 0.0       # px: with a proposal, only the low frequencies of the correction count
    ortho_weight: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0
    init_from: Optional[str] = None     # a shipped .safetensors inpainting model a new run starts from
    inference_scale: bool = False       # crops and masks as inference sees them (see inference_scale_crop)
    object_masks: float = 0.0           # share of the masks that are one solid object (masks.object_mask), not strokes
    precision: str = "fp32"
    sample_every: int = 500
    checkpoint_minutes: float = 5.0
    keep_every: int = 0                 # also keep checkpoint-STEP.pt every N steps (0: never)
    log_every: int = 20


def options_from(kind: type, values: dict) -> object:
    """A `kind` (TrainOptions or InpaintOptions) from the command's parameters: every field found in
    `values` is taken (paths as strings), the rest keep their defaults."""
    fields = {f.name for f in dataclasses.fields(kind)}
    return kind(**{name: str(value) if isinstance(value, Path) else value
                   for name, value in values.items() if name in fields})
