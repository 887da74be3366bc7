"""The registry of shipped models and safe weight files: safetensors + a JSON card with the
config and sha256. A file whose hash does not match its card is refused; nothing is unpickled."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from annorm_cli.errors import BadInputError, WeightsError
from annorm_cli.files import atomic_open, write_json


@dataclass(frozen=True)
class ModelEntry:
    """A shipped model: its weights file and JSON card live in the weights folder."""
    name: str
    task: str            # "class-conditional" | "inpaint" | "classifier"
    file: str            # e.g. "cifar10-an.safetensors"; the card is the same stem + ".json"
    description: str

    @property
    def card_file(self) -> str:
        return str(Path(self.file).with_suffix(".json"))


REGISTRY: dict[str, ModelEntry] = {
    "cifar10-an": ModelEntry("cifar10-an", "class-conditional", "cifar10-an.safetensors",
                             "CIFAR-10 32x32 class-conditional GAN with an AN layer at 16x16 (EMA generator)."),
    "scenes-inpaint-an": ModelEntry("scenes-inpaint-an", "inpaint", "scenes-inpaint-an.safetensors",
                                    "Photo inpainting, coarse-to-fine with AN at 1/4 resolution, any size."),
    "cifar10-classifier": ModelEntry("cifar10-classifier", "classifier", "cifar10-classifier.safetensors",
                                     "Small CIFAR-10 ResNet that scores generated samples (class accuracy)."),
}
ARCHITECTURE_TASKS = {"ClassConditionalGenerator": "class-conditional", "InpaintGenerator": "inpaint",
                      "Classifier": "classifier"}
DEFAULT_MODEL = {"class-conditional": "cifar10-an", "inpaint": "scenes-inpaint-an", "classifier": "cifar10-classifier"}


def weights_dir() -> Path:
    """The folder of shipped weights: $ANNORM_WEIGHTS, else `weights/` of the source checkout
    (editable installs), else `<prefix>/share/annorm/weights` where a wheel install puts them."""
    env = os.environ.get("ANNORM_WEIGHTS")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[1] / "weights"
    installed = Path(sys.prefix) / "share" / "annorm" / "weights"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


SAFETENSORS_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                          "BOOL": 1}
MAX_HEADER_BYTES = 100_000_000      # safetensors' own limit


def _check_safetensors_header(path: Path) -> None:
    """Refuse anything that is not a whole, consistent safetensors file before any parser sees it:
    the header must be a JSON object within the file, and every tensor's dtype, shape and byte
    range must agree with each other and lie inside the file's data."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
        header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
        if header_len <= 0 or head[8:9] != b"{" or header_len > MAX_HEADER_BYTES:
            if head[:1] == b"\x80" or head[:2] == b"PK":
                raise WeightsError(f"'{path}' is a pickle / torch.save file; annorm only loads .safetensors weights "
                                   "and never unpickles.")
            raise WeightsError(f"'{path}' is not a safetensors file.")
        if header_len + 8 > size:
            raise WeightsError(f"'{path}' is truncated: its safetensors header runs past the end of the file.")
        handle.seek(8)
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise WeightsError(f"'{path}' is damaged: its safetensors header is not readable JSON.") from None
    if not isinstance(header, dict):
        raise WeightsError(f"'{path}' is damaged: its safetensors header is not a JSON object.")
    data_bytes = size - 8 - header_len
    for name, entry in header.items():
        if name != "__metadata__":
            _check_tensor_entry(path, str(name)[:60], entry, data_bytes)


def _check_tensor_entry(path: Path, name: str, entry, data_bytes: int) -> None:
    """One tensor of a safetensors header: a known dtype, a shape of non-negative integers and a
    byte range [begin, end) inside the data whose length is the shape's."""
    ok = isinstance(entry, dict) and entry.get("dtype") in SAFETENSORS_ITEM_BYTES
    shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if ok else (None, None)
    integers = lambda v, n=None: isinstance(v, list) and (n is None or len(v) == n) and all(  # noqa: E731
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
    if not (ok and integers(shape) and integers(offsets, 2) and len(shape) <= 8):
        raise WeightsError(f"'{path}' is damaged: the tensor '{name}' has no valid dtype, shape and offsets.")
    begin, end = offsets
    expected = SAFETENSORS_ITEM_BYTES[entry["dtype"]]
    for dim in shape:
        expected *= dim
    if end > data_bytes or begin > end:
        raise WeightsError(f"'{path}' is truncated or damaged: the tensor '{name}' lies beyond the end of the file.")
    if end - begin != expected:
        raise WeightsError(f"'{path}' is damaged: the tensor '{name}' claims {expected:,} bytes but holds {end - begin:,}.")


def resolve(model: Optional[str] = None, weights: Optional[str | os.PathLike] = None,
            task: str = "class-conditional") -> tuple[Path, Path]:
    """The (weights file, card file) for a registry name or an explicit .safetensors path."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"Weights file '{path}' does not exist.")
        card = path.with_suffix(".json")
        if not card.is_file():
            raise WeightsError(f"'{path}' has no JSON card beside it ('{card.name}' with its config and sha256).")
        return path, card
    name = model or DEFAULT_MODEL[task]
    if name not in REGISTRY:
        raise WeightsError(f"Unknown model '{name}'; `annorm models` lists the shipped ones: {', '.join(REGISTRY)}.")
    entry = REGISTRY[name]
    if entry.task != task:
        raise WeightsError(f"Model '{name}' is for the task {entry.task}, not {task}.")
    path = weights_dir() / entry.file
    if not path.is_file():
        raise WeightsError(f"The weights of '{name}' are not at '{path}'; set ANNORM_WEIGHTS to the weights folder.")
    return path, weights_dir() / entry.card_file


def read_card(card_path: Path) -> dict:
    """The JSON card, its keys checked (sha256: 64 hex digits, architecture: a name, config: an
    object) before anything is built from it."""
    try:
        card = json.loads(Path(card_path).read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:          # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else type(exc).__name__
        raise WeightsError(f"The model card '{card_path}' is not readable JSON ({reason}).") from None
    if not isinstance(card, dict):
        raise WeightsError(f"The model card '{card_path}' must be a JSON object, not {type(card).__name__}.")
    for key in ("sha256", "architecture", "config"):
        if key not in card:
            raise WeightsError(f"The model card '{card_path}' lacks '{key}'.")
    sha = card["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise WeightsError(f"The model card '{card_path}' has no valid sha256 (64 hex digits).")
    if not isinstance(card["architecture"], str) or not isinstance(card["config"], dict):
        raise WeightsError(f"The model card '{card_path}' needs 'architecture' as a name and 'config' as an object.")
    if "task" in card and not isinstance(card["task"], str):
        raise WeightsError(f"The model card '{card_path}' has a 'task' that is not a name.")
    return card


def load_state(path: Path, card: dict) -> dict[str, torch.Tensor]:
    """Verify the file against the card's sha256 and read its tensors (float32)."""
    _check_safetensors_header(path)
    actual = sha256_of(path)
    if actual != card["sha256"]:
        raise WeightsError(f"'{path}' does not match the sha256 in its card (file {actual[:12]}..., card "
                           f"{card['sha256'][:12]}...); re-fetch the weights.")
    from safetensors.torch import load_file
    try:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    except Exception as exc:                         # safetensors' own checks, beyond the header's above
        raise WeightsError(f"'{path}' is not a readable safetensors file ({type(exc).__name__}).") from None


def build_model(card: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Rebuild a shipped model from its card's config (the only way) and load its weights."""
    try:
        return _built(card, state)
    except BadInputError as exc:                  # a config field of the wrong type or size
        raise WeightsError(str(exc)) from None


def _built(card: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    if card["architecture"] == "ClassConditionalGenerator":
        from annorm_cli.models.class_conditional import ClassConditionalConfig, Generator
        model = Generator(ClassConditionalConfig.from_dict(card["config"]))
    elif card["architecture"] == "Classifier":
        from annorm_cli.models.classifier import Classifier, ClassifierConfig
        model = Classifier(ClassifierConfig.from_dict(card["config"]))
    elif card["architecture"] == "InpaintGenerator":
        from annorm_cli.models.inpainting import InpaintConfig, InpaintGenerator
        model = InpaintGenerator(InpaintConfig.from_dict(card["config"]))
    else:
        raise WeightsError(f"Unknown architecture '{card['architecture']}' in the model card; upgrade annorm.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"The weights do not fit the architecture in their card ({str(exc)[:120]}).") from None
    return model.eval().requires_grad_(False)


def load(model: Optional[str] = None, weights: Optional[str | os.PathLike] = None,
         task: str = "class-conditional") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on CPU, card) for a registry name or a .safetensors file with its card."""
    path, card_path = resolve(model, weights, task)
    card = read_card(card_path)
    holds = card.get("task", ARCHITECTURE_TASKS.get(card["architecture"], task))
    if holds != task or ARCHITECTURE_TASKS.get(card["architecture"], task) != task:
        raise WeightsError(f"'{path}' holds a model for the task "
                           f"{ARCHITECTURE_TASKS.get(card['architecture'], holds)}, not {task}.")
    return build_model(card, load_state(path, card)), card


def load_classifier(name_or_file: str) -> tuple[torch.nn.Module, dict]:
    """(classifier, card) for a registry name or a .safetensors file (told apart by the suffix)."""
    is_file = name_or_file.endswith(".safetensors")
    return load(None if is_file else name_or_file, name_or_file if is_file else None, task="classifier")


def save(model: torch.nn.Module, architecture: str, config: dict, path: Path, card: dict) -> dict:
    """Write `model`'s weights as safetensors and its card (config, sha256 + `card`) beside it."""
    from safetensors.torch import save
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(tensors)
    with atomic_open(path) as handle:
        handle.write(blob)
    full = {"architecture": architecture, "config": config, **card,
            "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    write_json(path.with_suffix(".json"), full)
    return full


def record_metrics(card_path: Path, metrics: dict) -> None:
    """Merge measured metrics into a model card (the weights and their sha256 are untouched)."""
    card = read_card(card_path)
    card.setdefault("metrics", {}).update(metrics)
    write_json(card_path, card)
