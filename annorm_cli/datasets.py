"""The data annorm trains and evaluates on: labelled image folders (a directory tree or a tar of
one, decoded once into uint8 tensors and cached) and folders of scene photos with the fixed
held-out list. Below train/ and evaluate/, which both read it."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from annorm_cli.errors import BadInputError
from annorm_cli.files import atomic_open

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class LabelledImages:
    images: torch.Tensor        # [N, 3, H, W] uint8
    labels: torch.Tensor        # [N] int64
    class_names: tuple[str, ...]


def cache_dir() -> Path:
    """Where annorm caches decoded data sets and reference statistics (~/.cache/annorm)."""
    root = os.environ.get("ANNORM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "annorm")
    return Path(root)


def data_fingerprint(path: Path) -> str:
    """A short key for the contents of a data set, stable across copies of it.

    The sha256 of a file's bytes (a tar: ~0.1 s for CIFAR-10's 19 MB), or of a folder's relative
    file names and bytes, so a fresh copy of the same data (new mtimes) still hits the cache.
    """
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else ''}\n".encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # PIL raises many types for broken files
        raise BadInputError(f"Could not decode image '{name}' ({exc}); check the data set.") from None


def _iter_tar(path: Path, split: str):
    prefix = split.strip("/") + "/"
    try:
        tar = tarfile.open(path)
    except tarfile.TarError:
        raise BadInputError(f"'{path}' is neither a folder nor a .tar(.gz) of an ImageFolder tree "
                            f"({split}/<class>/<image>).") from None
    with tar:
        for member in tar:
            name = member.name.lstrip("./")
            if member.isfile() and name.startswith(prefix) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                parts = name[len(prefix):].split("/")
                if len(parts) == 2:
                    yield parts[0], name, tar.extractfile(member).read()


def _iter_tree(path: Path, split: str):
    root = path / split if split else path
    for file in sorted(root.glob("*/*")):
        if file.suffix.lower() in IMAGE_SUFFIXES:
            yield file.parent.name, str(file), file.read_bytes()


def _decode_all(path: Path, split: str) -> LabelledImages:
    entries = _iter_tar(path, split) if path.is_file() else _iter_tree(path, split)
    by_class: dict[str, list[tuple[str, np.ndarray]]] = {}
    for class_name, name, data in entries:
        by_class.setdefault(class_name, []).append((name, _decode(data, name)))
    if not by_class:
        raise BadInputError(f"No images found under '{split}/<class>/' in {path}; expected an ImageFolder tree.")
    class_names = tuple(sorted(by_class))
    images, labels = [], []
    for index, class_name in enumerate(class_names):
        for _, array in sorted(by_class[class_name], key=lambda item: item[0]):
            images.append(array)
            labels.append(index)
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise BadInputError(f"Images in {path} have different sizes {sorted(shapes)[:3]}; resize them first.")
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # [N, 3, H, W]
    return LabelledImages(stacked, torch.tensor(labels), class_names)


def load_labelled_images(path: str | os.PathLike, split: str = "train", *, use_cache: bool = True) -> LabelledImages:
    """Read an ImageFolder `split/<class>/<image>` from a directory or a (gzipped) tar.

    Decoded once; the arrays are cached under `cache_dir()` keyed by the data's contents
    (`data_fingerprint`), so later runs, and runs on a fresh copy of the data, start in a second.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"Data set '{path}' does not exist; pass a folder or a .tar(.gz) of an ImageFolder tree.")
    key = hashlib.sha256(f"{data_fingerprint(path)}|{split}".encode()).hexdigest()[:16]
    cached = cache_dir() / "datasets" / f"{key}.npz"
    if use_cache and cached.is_file():
        with np.load(cached) as data:
            names = tuple(str(n) for n in data["class_names"])
            return LabelledImages(torch.from_numpy(data["images"]), torch.from_numpy(data["labels"]), names)
    result = _decode_all(path, split)
    if use_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(cached) as handle:   # unique temp names: several torchrun ranks may race here
            np.savez(handle, images=result.images.numpy(), labels=result.labels.numpy(),
                     class_names=np.array(result.class_names))
    return result


# ----------------------------------------------------------------------------- scene photos
def holdout_list() -> list[str]:
    """The fixed validation photos (relative paths under the scenes folder), kept out of training."""
    text = resources.files("annorm_cli.data").joinpath("scenes_holdout.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_photos(root: str | Path, names: Optional[list[str]] = None, exclude: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """uint8 [3, H, W] tensors by relative path: `names`, or every PNG/JPEG below `root` minus `exclude`."""
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"Photo folder '{root}' does not exist.")
    if names is None:
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        names = [n for n in names if n not in set(exclude)]
    if not names:
        raise BadInputError(f"No photos found in '{root}'.")
    photos = {}
    for name in names:
        with Image.open(root / name) as image:
            photos[name] = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
    return photos
