"""Small helpers shared by the CLI commands: parsing seeds and counts."""
from __future__ import annotations

from annorm_cli.cli.errors import fail


def parse_seeds(text: str, num: int | None) -> list[int]:
    """"7" (then `num` consecutive seeds from 7), "0-29" (inclusive), or "1,5,9"."""
    text = text.strip()
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        elif "-" in text.lstrip("-"):
            first, last = text.split("-", 1) if not text.startswith("-") else (None, None)
            first, last = int(first), int(last)
            if last < first:
                raise fail(f"The seed range '{text}' runs backwards; write it low-high, like 0-29.")
            seeds = list(range(first, last + 1))
        else:
            start = int(text)
            seeds = list(range(start, start + (num or 1)))
    except (TypeError, ValueError):
        raise fail(f"Malformed --seed '{text}'; use one integer, a range like 0-29, or a list like 1,5,9.")
    if any(s < 0 for s in seeds):
        raise fail("Seeds must be non-negative integers.")
    if not seeds:
        raise fail("--seed gave no seeds.")
    return seeds
