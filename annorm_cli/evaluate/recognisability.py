"""Per-class recognisability of generated samples: what a classifier says each class's samples are."""
from __future__ import annotations

from typing import Optional

import torch


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """counts[true, predicted] [n_classes, n_classes] (int64) of label / prediction pairs [N]."""
    return torch.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).view(n_classes, n_classes)


def per_class_report(counts: torch.Tensor, class_names: list[str]) -> list[dict]:
    """For every class: the share of its samples classified as it, and the class most often taken instead
    (the first such class on a tie; its share is 0 when nothing was mistaken)."""
    report = []
    for c, name in enumerate(class_names):
        row = counts[c].double()
        others = row.clone()
        others[c] = -1
        confused = int(others.argmax())
        total = max(1.0, float(row.sum()))
        report.append({"class": name, "samples": int(row.sum()), "accuracy": float(row[c]) / total,
                       "mistaken_for": class_names[confused], "mistaken_share": float(row[confused]) / total})
    return report


def class_samples(generator: torch.nn.Module, per_class: int, *, seed_offset: int = 0,
                  truncation: Optional[float] = None, device: torch.device = torch.device("cpu"),
                  progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` samples of every class, seeds seed_offset ... seed_offset + per_class - 1 (the same
    for every class): images [n_classes * per_class, H, W, 3] uint8 and their classes [n_classes * per_class].
    `progress(n)` is called as images are made."""
    from annorm_cli.pipelines import generate_images
    classes = torch.arange(generator.config.n_classes).repeat_interleave(per_class)
    seeds = [seed_offset + s for s in range(per_class)] * generator.config.n_classes
    images = generate_images(generator, classes.tolist(), seeds, truncation=truncation, device=device,
                             progress=progress)
    return torch.from_numpy(images), classes


def spread(images: torch.Tensor, labels: torch.Tensor, n_classes: int) -> list[float]:
    """Per class: the standard deviation of each pixel value across that class's images, averaged
    over pixels (0-255 scale). Images that all look alike (mode collapse) score near 0."""
    return [images[labels == c].float().std(0).mean().item() for c in range(n_classes)]


CHECKERBOARD_THRESHOLD = 0.3   # of the 2x2 response on the [-1, 1] scale; 2.2% of the CIFAR-10 test images exceed it


def checkerboard_peaks(images: torch.Tensor) -> torch.Tensor:
    """Per image, the strongest response to the 2x2 checkerboard filter [[1, -1], [-1, 1]] / 4 on
    the [-1, 1] scale (0: smooth, 1: a black and white pixel checkerboard): uint8 images
    [N, H, W, 3] or [N, 3, H, W] -> [N]. Catches the pixel-scale checkerboard patches a GAN can
    paint, which FID on 500 samples, class accuracy and spread do not see."""
    if images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    x = images.float() / 127.5 - 1                                                  # [N, 3, H, W]
    response = (x[:, :, :-1, :-1] - x[:, :, :-1, 1:] - x[:, :, 1:, :-1] + x[:, :, 1:, 1:]).abs() / 4
    return response.amax((1, 2, 3))


def checkerboard_share(images: torch.Tensor) -> float:
    """The share of images with a checkerboard peak above CHECKERBOARD_THRESHOLD (see checkerboard_peaks)."""
    return (checkerboard_peaks(images) > CHECKERBOARD_THRESHOLD).float().mean().item()


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Predicted labels [N] of uint8 images [N, 3, 32, 32] (or [N, 32, 32, 3] numpy-order)."""
    if images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images[start:start + batch].float() / 127.5 - 1).argmax(1)
                          for start in range(0, len(images), batch)])


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of uint8 images against labels."""
    return (predict(model, images, batch) == labels).float().mean().item() if len(images) else 0.0


def class_accuracy(scorer: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Overall and per-class accuracy of `scorer` on uint8 images [N, 3, H, W] with labels [N]."""
    counts = confusion_matrix(predict(scorer, images), labels, int(labels.max()) + 1)   # [true, predicted]
    return {"class_accuracy": float(counts.diag().sum() / counts.sum()),
            "class_accuracy_per_class": (counts.diag() / counts.sum(1)).tolist()}


BROKEN_SHARE = 0.5      # a seed is broken when the classifier rejects its samples in more than this share of classes


def broken_seeds(predicted: torch.Tensor, labels: torch.Tensor, seeds: list[int]) -> dict:
    """Latents that fail in every class: samples laid out as class_samples makes them (each class's
    samples for the same seeds, in the same order), predicted [N] and labels [N]. A seed is broken
    when the classifier rejects its samples in more than half of the classes; with class accuracy
    near 90% and independent failures that almost never happens by chance (for 10 classes at 10%
    rejection each, P(6 or more) ~ 1.5e-4), so the share counts latents the generator cannot use.
    -> {"broken_seed_share", "broken_seeds" (ascending), "rejected_classes_per_seed" [per seed]}."""
    n_classes = int(labels.max()) + 1
    rejected = (predicted != labels).view(n_classes, len(seeds)).float().mean(0)      # [seeds]
    broken = [seed for seed, share in zip(seeds, rejected.tolist()) if share > BROKEN_SHARE]
    return {"broken_seed_share": len(broken) / len(seeds), "broken_seeds": broken,
            "rejected_classes_per_seed": [round(v * n_classes) for v in rejected.tolist()]}


def recognisability_report(scorer: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                           class_names: list[str]) -> list[dict]:
    """per_class_report of `scorer` on images [N, ...] uint8 with labels [N], each row with the
    class's pixel spread (see spread) and checkerboard share (see checkerboard_share) added: the
    table `annorm evaluate accuracy` prints."""
    n = len(class_names)
    rows = per_class_report(confusion_matrix(predict(scorer, images), labels, n), class_names)
    for c, (row, value) in enumerate(zip(rows, spread(images, labels, n))):
        row["spread"] = value
        row["checkerboard"] = checkerboard_share(images[labels == c])
    return rows
