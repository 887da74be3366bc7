"""Atomic file writes: a temp file in the target's folder, fsync, then rename. A crash or
Ctrl-C (even kill -9) leaves either the old file or the new one, never a torn one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """`with atomic_open(path) as handle: handle.write(...)`: the file appears, whole, on success."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:                      # name the file the user asked for, not the temporary
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data) -> None:
    """Write `data` as indented JSON, atomically (a crash leaves the old file or the new one)."""
    with atomic_open(path) as handle:
        handle.write((json.dumps(data, indent=2) + "\n").encode())
