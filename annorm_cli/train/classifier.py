"""Training the small CIFAR-10 classifier that scores generated samples: SGD with momentum,
cosine learning rate, random crops (pad 4) and flips; resumable via the shared loop."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from annorm_cli.data import CIFAR10
from annorm_cli.datasets import LabelledImages, load_labelled_images
from annorm_cli.evaluate.recognisability import accuracy
from annorm_cli.models.classifier import Classifier, ClassifierConfig
from annorm_cli.train import common


@dataclass
class ClassifierOptions:
    data: str = str(CIFAR10)
    steps: int = 8000
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    log_every: int = 50
    checkpoint_minutes: float = 5.0


@dataclass
class ClassifierRun:
    model: Classifier
    optimizer: torch.optim.Optimizer
    options: ClassifierOptions
    step: int = 0
    wall_time: float = 0.0

    def checkpoint(self) -> dict:
        return {"format": "annorm-train-v1", "task": "classifier", "step": self.step, "wall_time": self.wall_time,
                "precision": "fp32", "model_config": self.model.config.to_dict(),
                "options": dataclasses.asdict(self.options), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def save(self, run_dir: Path, world: common.World, name: str) -> None:
        common.atomic_save(self.checkpoint(), Path(run_dir) / name)

    def restore(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step, self.wall_time = int(saved["step"]), float(saved["wall_time"])


def augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random crop with 4 px reflection padding and horizontal flip, per image."""
    B, _, H, W = images.shape
    padded = F.pad(images, (4, 4, 4, 4), mode="reflect")
    offsets = torch.randint(0, 9, (B, 2), generator=rng)
    crops = torch.stack([padded[i, :, y:y + H, x:x + W] for i, (y, x) in enumerate(offsets.tolist())])
    flip = torch.rand(B, generator=rng) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(3), crops)


def train_step(run: ClassifierRun, data: LabelledImages) -> dict:
    options, t = run.options, run.step
    rng = common.step_generator(options.seed, t)
    indices = common.epoch_batches(len(data.labels), options.batch_size, options.seed, t)
    images = augment(data.images[indices].float() / 127.5 - 1, rng)
    for group in run.optimizer.param_groups:      # cosine decay to 0 at `steps`
        group["lr"] = options.lr * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * t / options.steps)).item())
    run.model.train()
    loss = F.cross_entropy(run.model(images), data.labels[indices])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.step = t + 1
    return {"loss": loss.item()}


def train(options: ClassifierOptions, run_dir: Path, *, resume: Optional[dict] = None,
          on_event: Callable[[str, dict], None] = lambda kind, info: None) -> ClassifierRun:
    if resume is not None:
        options = common.resumed_options(resume, options)
    data = load_labelled_images(options.data, "train")
    torch.manual_seed(options.seed)
    model = Classifier(ClassifierConfig(n_classes=len(data.class_names), class_names=data.class_names))
    optimizer = torch.optim.SGD(model.parameters(), options.lr, momentum=0.9, weight_decay=options.weight_decay,
                                nesterov=True)
    run = ClassifierRun(model, optimizer, options)
    if resume is not None:
        run.restore(resume)
    run_dir = Path(run_dir)
    common.prepare_run_dir(run_dir)
    on_event("start", {"step": run.step, "steps": options.steps, "precision": "fp32", "world": 1,
                       "images": len(data.labels)})
    common.run_loop(run, lambda: train_step(run, data), options=options, images_per_step=options.batch_size,
                    run_dir=run_dir, world=common.World(), on_event=on_event)
    return run


def export_classifier(saved: dict, path: Path, card: dict, test: Optional[LabelledImages] = None) -> dict:
    """Write the classifier as safetensors + card, with its accuracy on `test` if given."""
    from annorm_cli import weights
    model = Classifier(ClassifierConfig.from_dict(saved["model_config"]))
    model.load_state_dict(saved["model"])
    info = {"task": "classifier", "steps": saved["step"], "train_wall_time_s": round(saved["wall_time"]),
            "classes": list(model.config.class_names), **card}
    if test is not None:
        info["metrics"] = {"test_accuracy": {"value": accuracy(model, test.images, test.labels),
                                             "protocol": f"top-1 on the {len(test.labels)} test/ images"}}
    return weights.save(model, "Classifier", model.config.to_dict(), path, info)
