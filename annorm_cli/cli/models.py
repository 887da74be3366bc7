"""`annorm models`: the shipped models of the registry, with their card's metrics."""
from __future__ import annotations

import typer


def _metric_text(name: str, value) -> str:
    if isinstance(value, dict) and "value" in value:
        return f"{name} {value['value']:.2f}"
    if isinstance(value, dict) and "buckets" in value:   # inpainting: PSNR in the hole per bucket
        psnr = "/".join(f"{b['annorm']['psnr']:.1f}" for b in value["buckets"].values())
        return f"hole PSNR {psnr} dB ({'/'.join(value['buckets'])})"
    return f"{name} {value}"


def models_command(verify: bool = typer.Option(True, "--verify/--no-verify", help="Check every file's sha256.")) -> None:
    """List the shipped models: name, task, classes, resolution, size, metrics, sha256 status."""
    from rich.console import Console
    from rich.table import Table

    from annorm_cli import weights

    table = Table(title=f"Shipped models (weights folder: {weights.weights_dir()})")
    for column in ("name", "task", "classes", "resolution", "size", "metrics", "sha256"):
        table.add_column(column)
    for entry in weights.REGISTRY.values():
        path, card_path = weights.weights_dir() / entry.file, weights.weights_dir() / entry.card_file
        if not path.is_file() or not card_path.is_file():
            table.add_row(entry.name, entry.task, "", "", "", "", "missing")
            continue
        card = weights.read_card(card_path)
        status = ("ok" if weights.sha256_of(path) == card["sha256"] else "MISMATCH") if verify else "not checked"
        metrics = ", ".join(_metric_text(k, v) for k, v in card.get("metrics", {}).items())
        resolution = card["config"].get("resolution", "any")
        table.add_row(entry.name, entry.task, str(len(card.get("classes", [])) or "-"), f"{resolution}",
                      f"{path.stat().st_size / 2 ** 20:.1f} MiB", metrics or "-", status)
    Console().print(table)
