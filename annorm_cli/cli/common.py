"""Small helpers shared by the CLI commands: parsing seeds and counts, progress."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional

from annorm_cli.cli.errors import fail


@contextlib.contextmanager
def progress(description: str, total: Optional[int], *, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields advance(n). A live bar on a terminal; elsewhere (a log file, nohup) one line on
    stderr per tenth of the work (per 1,000 items if the total is unknown), so long jobs show
    where they are."""
    if quiet:
        yield lambda n: None
        return
    if sys.stderr.isatty():
        from rich.progress import Progress
        with Progress(transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)
        return
    step = max(1, total // 10) if total else 1000
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        if done // step > before // step or done == total:
            print(f"{description}: {done}" + (f"/{total}" if total else ""), file=sys.stderr, flush=True)
    yield advance


@contextlib.contextmanager
def working(description: str, *, quiet: bool = False) -> Iterator[None]:
    """For a step of seconds without a count: a spinner on a terminal, erased when the step ends
    (so an error after it is still the only line left); nothing elsewhere."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    with Console(stderr=True).status(description):
        yield


def check_outputs(task: str, model: Optional[str], weights, overwrite: bool, **outputs) -> None:
    """Check result files (option name -> path or None) before any work is done: refuse the
    model's own weights or card (`--weights W.safetensors --json W.json` would replace the card
    with a results table), an existing file unless `overwrite`, and a folder that does not exist."""
    from pathlib import Path

    from annorm_cli import weights as weight_files
    from annorm_cli.errors import WeightsError
    try:
        protected = {path.resolve() for path in weight_files.resolve(model, weights, task=task)}
    except WeightsError:
        protected = set()                       # loading the model says what is wrong with it
    for option, path in outputs.items():
        if path is None:
            continue
        path, flag = Path(path), "--" + option.replace("_", "-")
        if path.resolve() in protected:
            raise fail(f"{flag} '{path}' is the model's own file; write the results elsewhere.")
        if path.is_dir():
            raise fail(f"{flag} '{path}' is a folder; give a file name.")
        if path.exists() and not overwrite:
            raise fail(f"{flag} '{path}' already exists; pass --overwrite to replace it.")
        if not path.parent.is_dir():
            raise fail(f"{flag} '{path}': the folder '{path.parent}' does not exist.")


def check_finite(**values: Optional[float]) -> None:
    """Refuse nan and infinity in float options (None passes); keyword names are the options without '--'."""
    import math
    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise fail(f"--{name.replace('_', '-')} must be a finite number, got {value}.")


def set_threads(threads: Optional[int]) -> None:
    """Use `threads` CPU threads (None: torch's choice); refuse zero or fewer."""
    if threads is None:
        return
    if threads < 1:
        raise fail(f"--threads must be a positive integer, got {threads}.")
    import torch
    torch.set_num_threads(threads)


def check_max_side(max_side: Optional[int]) -> None:
    from annorm_cli.pipelines.inpainting import MIN_MAX_SIDE
    if max_side is not None and max_side < MIN_MAX_SIDE:
        raise fail(f"--max-side must be at least {MIN_MAX_SIDE}, got {max_side}.")


MAX_SEED = 2 ** 63                 # seeds are 64-bit signed integers, as torch's generators take them
MAX_SEEDS = 100_000                # per command


def check_seed_option(seed: int, option: str = "--seed", count: int = 1) -> int:
    """Refuse a seed option (or the last of `count` seeds from it) outside 0 ... 2**63 - 1."""
    if not 0 <= seed or seed + max(count, 1) - 1 >= MAX_SEED:
        last = "" if count <= 1 else f" (its last seed is {seed + count - 1})"
        raise fail(f"{option} must be an integer from 0 to 2**63 - 1{last}, got {str(seed)[:40]}.")
    return seed


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
            seeds = range(first, last + 1)
        else:
            start = int(text)
            seeds = range(start, start + (num or 1))
    except (TypeError, ValueError):
        raise fail(f"Malformed --seed '{text}'; use one integer, a range like 0-29, or a list like 1,5,9.")
    count = seeds.stop - seeds.start if isinstance(seeds, range) else len(seeds)
    if count > MAX_SEEDS:
        raise fail(f"--seed '{text}' gives {count:,} seeds; ask for at most {MAX_SEEDS:,} per command.")
    seeds = list(seeds)
    if any(s < 0 for s in seeds):
        raise fail("Seeds must be non-negative integers.")
    if any(s >= MAX_SEED for s in seeds):
        raise fail(f"Seeds must be below 2**63 (64-bit signed integers); '{text}' gives larger ones.")
    if not seeds:
        raise fail("--seed gave no seeds.")
    return seeds


def check_truncation(truncation: Optional[float]) -> None:
    """--truncation: absent, or within the range every entry point shares (pipelines.check_truncation)."""
    from annorm_cli.pipelines.generation import TRUNCATION_RANGE
    low, high = TRUNCATION_RANGE
    if truncation is not None and not low <= truncation <= high:
        raise fail(f"--truncation must be a number from {low:g} to {high:g}, got {truncation}.")


def parse_widths(text: str, option: str) -> tuple[int, ...]:
    """'256,128,64,32' -> (256, 128, 64, 32): the four widths of a class-conditional network."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 1:
        raise fail(f"{option} takes four positive widths separated by commas, like 256,128,64,32.")
    return values
