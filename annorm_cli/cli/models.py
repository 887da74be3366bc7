"""`annorm models`: the shipped models of the registry, with their card's metrics."""
from __future__ import annotations

import typer


METRIC_LABELS = {"fid_10000": "FID", "intra_fid": "intra-FID", "class_accuracy": "class acc.",
                 "test_accuracy": "test acc."}


def _metric_text(name: str, value) -> str:
    """One metric of a card as a short line, e.g. 'FID 32.74' or 'class acc. 67.6%'."""
    label = METRIC_LABELS.get(name, name)
    if isinstance(value, dict) and "value" in value:
        number = value["value"]
        return f"{label} {number:.1%}" if "accuracy" in name else f"{label} {number:.2f}"
    if isinstance(value, dict) and "buckets" in value:   # inpainting: PSNR (and KID) per bucket
        return "; ".join(f"{bucket} {_bucket_text(scores.get('annorm', {}))}" for bucket, scores in value["buckets"].items())
    return f"{label} {value}"


def _bucket_text(scores: dict) -> str:
    """'PSNR 18.10 dB' or 'PSNR 18.10 dB, KID 24.1' (KID x 1000 of the hole crops) of one bucket."""
    text = f"PSNR {scores['psnr']:.2f} dB" if "psnr" in scores else "-"
    return text + (f", KID {scores['kid']:.1f}" if "kid" in scores else "")


def _what(task: str, card: dict) -> str:
    """The task, with the classes and resolution where the model has them."""
    parts = [task]
    if card.get("classes"):
        parts.append(f"{len(card['classes'])} classes ({', '.join(card['classes'])})")
    resolution = card["config"].get("resolution")
    parts.append(f"{resolution}x{resolution} px" if resolution else "any size")
    return ", ".join(parts)


def models_command(verify: bool = typer.Option(True, "--verify/--no-verify", help="Check every file's sha256.")) -> None:
    """List the shipped models: name, task (classes, resolution), size, sha256 status, metrics."""
    from rich.console import Console
    from rich.table import Table

    from annorm_cli import weights

    table = Table(title=f"Shipped models (weights folder: {weights.weights_dir()})")
    table.add_column("name", no_wrap=True)                       # what users type: never cut
    table.add_column("what", overflow="fold", min_width=18)     # "class-conditional," whole
    table.add_column("size", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("metrics", overflow="fold")                # wraps at spaces, never cuts a number
    for entry in weights.REGISTRY.values():
        path, card_path = weights.weights_dir() / entry.file, weights.weights_dir() / entry.card_file
        if not path.is_file() or not card_path.is_file():
            table.add_row(entry.name, entry.task, "", "missing", "")
            continue
        card = weights.read_card(card_path)
        status = ("ok" if weights.sha256_of(path) == card["sha256"] else "MISMATCH") if verify else "not checked"
        metrics = "\n".join(_metric_text(k, v) for k, v in card.get("metrics", {}).items())
        table.add_row(entry.name, _what(entry.task, card), f"{path.stat().st_size / 2 ** 20:.1f} MiB", status,
                      metrics or "-")
    Console().print(table)
