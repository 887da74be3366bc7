"""Per-class recognisability of generated samples: what a classifier says each class's samples are."""
from __future__ import annotations

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
