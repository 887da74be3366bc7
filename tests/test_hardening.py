"""The README's promises for odd input, outputs, interrupts and the Python API (issue 21):
bad input gets exit 2 and one sentence, no traceback, no warning, no file created, changed or
removed; odd but valid images give the right pixels; interrupts leave no temporary files."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from PIL import Image

import annorm_cli
from annorm_cli.cli.app import app
from annorm_cli.cli.errors import run_guarded
from annorm_cli.errors import AnnormError, BadInputError
from annorm_cli.images import read_image, read_mask


def annorm(capsys, *args):
    code = run_guarded(app, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_sentence(code: int, err: str, words: str) -> None:
    assert code == 2, err
    assert err.startswith("annorm: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert words in err, err


def _snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ----------------------------------------------------------------------------- image modes
GRADIENT16 = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)          # 0 .. 64491


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("image, fmt, expected", [
    (Image.fromarray(GRADIENT16), "PNG", np.round(GRADIENT16 / 257)),
    (Image.fromarray(GRADIENT16), "TIFF", np.round(GRADIENT16 / 257)),
    (Image.fromarray((GRADIENT16 / 65535).astype(np.float32)), "TIFF", np.round(GRADIENT16 / 65535 * 255)),
    (Image.fromarray(GRADIENT16.astype(np.int32)), "TIFF", np.round(GRADIENT16 / 257)),
])
def test_high_depth_grey_images_are_scaled_not_clipped(image, fmt, expected):
    rgb = read_image(_encoded(image, fmt))
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_cmyk_and_palette_images_give_their_colours():
    cmyk = read_image(_encoded(Image.new("CMYK", (8, 6), (0, 255, 0, 0)), "TIFF"))
    assert (cmyk == [255, 0, 255]).all()
    palette = Image.new("P", (8, 6))
    palette.putpalette([10, 20, 30] * 256)
    assert (read_image(_encoded(palette, "PNG")) == [10, 20, 30]).all()


def test_inpaint_of_a_16_bit_photo_keeps_its_pixels(tmp_path, capsys):
    Image.fromarray(GRADIENT16).save(tmp_path / "photo.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, _, err = annorm(capsys, "inpaint", tmp_path / "photo.png", tmp_path / "mask.png", "--out", tmp_path / "o.png")
    assert code == 0, err
    with Image.open(tmp_path / "o.png") as image:
        assert image.mode == "L"                                     # a grey photo comes back grey
        out = np.asarray(image)
    known = mask == 0
    assert np.abs(out[known].astype(int) - np.round(GRADIENT16[known] / 257)).max() <= 1


def test_decompression_bomb_is_one_sentence_without_warnings(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (10_000, 9_500)).save(path)               # 95 million pixels in a small file
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # a warning would fail the test
        with pytest.raises(BadInputError, match="million pixels"):
            read_image(path)
    result = subprocess.run([sys.executable, "-m", "annorm_cli", "inpaint", str(path), str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "million pixels" in result.stderr


def test_dilate_over_the_whole_image_is_refused_at_once(tmp_path):
    mask = np.zeros((40, 50), np.uint8)
    mask[5, 5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    with pytest.raises(BadInputError, match="whole"):
        read_mask(tmp_path / "m.png", (40, 50), dilate=100_000)
    grown = read_mask(tmp_path / "m.png", (40, 50), dilate=3)
    assert grown.sum() == 49 and grown[2:9, 2:9].all()       # a 7x7 square around the pixel


# ----------------------------------------------------------------------------- outputs
@pytest.fixture()
def photo_and_mask(tmp_path):
    Image.fromarray(np.full((32, 40, 3), 100, np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((32, 40), np.uint8)
    mask[8:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path / "photo.png", tmp_path / "mask.png"


@pytest.mark.parametrize("target", ["photo.png", "mask.png"])
def test_an_output_is_never_an_input(photo_and_mask, capsys, target):
    photo, mask = photo_and_mask
    before = _snapshot(photo.parent)
    code, _, err = annorm(capsys, "inpaint", photo, mask, "--out", photo.parent / target, "--overwrite")
    _one_sentence(code, err, "one of the inputs")
    assert _snapshot(photo.parent) == before


def test_outputs_that_are_folders_or_files_of_the_wrong_kind(photo_and_mask, tmp_path, capsys):
    photo, mask = photo_and_mask
    (tmp_path / "photo-filled.png").mkdir()                          # where the default output goes
    _one_sentence(*annorm(capsys, "inpaint", photo, mask)[::2], "folder")
    (tmp_path / "into").mkdir()                                       # --out DIR for one photo: written inside
    assert annorm(capsys, "inpaint", photo, mask, "--out", tmp_path / "into")[0] == 0
    assert (tmp_path / "into" / "photo-filled.png").is_file()
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "cat-seed0000.png").mkdir()
    _one_sentence(*annorm(capsys, "generate", "-c", "cat", "--out", tmp_path / "samples", "--overwrite")[::2],
                  "is a folder")
    (tmp_path / "file.txt").write_text("mine")
    _one_sentence(*annorm(capsys, "visualize-layout", "-c", "cat", "--out", tmp_path / "file.txt")[::2], "is a file")
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_read_only_folder_is_one_sentence(photo_and_mask, tmp_path, capsys, monkeypatch):
    """Simulated as the full-disk test is (CI runs as root, which writes into read-only folders)."""
    import errno

    from annorm_cli import files
    photo, mask = photo_and_mask

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))
    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    code, _, err = annorm(capsys, "inpaint", photo, mask, "--out", tmp_path / "o.png")
    _one_sentence(code, err, "Permission denied")
    assert "o.png" in err and not (tmp_path / "o.png").exists()


def test_a_full_disk_is_one_sentence(photo_and_mask, tmp_path, capsys, monkeypatch):
    import errno

    from annorm_cli import files
    photo, mask = photo_and_mask

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "o.png"))
    monkeypatch.setattr(files.os, "fsync", full)
    code, _, err = annorm(capsys, "inpaint", photo, mask, "--out", tmp_path / "o.png")
    _one_sentence(code, err, "No space left on device")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_batch_leaves_no_temporary_file(tmp_path, signum):
    photos, masks, out = tmp_path / "photos", tmp_path / "masks", tmp_path / "filled"
    photos.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    hole = np.zeros((96, 128), np.uint8)
    hole[20:60, 30:90] = 255
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(photos / f"{i:03d}.png")
        Image.fromarray(hole).save(masks / f"{i:03d}.png")
    process = subprocess.Popen([sys.executable, "-m", "annorm_cli", "inpaint", str(photos), str(masks),
                                "--out", str(out), "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and len(list(out.glob("[0-9]*.png"))) >= 3):
        time.sleep(0.01)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert "interrupted" in err and "Traceback" not in err
    written = list(out.iterdir())
    assert 3 <= len(written) < 60
    assert not [p.name for p in written if p.name.startswith(".") or p.suffix == ".tmp"]
    for path in written:                                     # every file that is there is whole
        with Image.open(path) as image:
            image.load()


def test_torn_checkpoint_temporaries_are_removed_when_a_run_starts(tmp_path):
    from annorm_cli.train.common import prepare_run_dir
    (tmp_path / ".checkpoint.pt.x1y2.tmp").write_bytes(b"torn")
    (tmp_path / "checkpoint.pt").write_bytes(b"whole")
    prepare_run_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_new_run_never_replaces_a_run_folder(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"my run")
    for command in (["train", "class"], ["train", "inpaint"], ["train", "classifier"]):
        _one_sentence(*annorm(capsys, *command, "--out", tmp_path)[::2], "--resume")
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"my run"
    (tmp_path / "file").write_text("x")
    _one_sentence(*annorm(capsys, "train", "class", "--out", tmp_path / "file")[::2], "is a file")


@pytest.mark.parametrize("option", ["--lr-g", "--lr-d", "--ema-decay"])
def test_nan_training_numbers_are_refused(tmp_path, capsys, option):
    _one_sentence(*annorm(capsys, "train", "class", "--out", tmp_path / "run", option, "nan")[::2], "finite")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- --from-png
@pytest.mark.parametrize("chunks, words", [
    ({"scale": "abc"}, "malformed"),
    ({"truncation": "abc"}, "malformed"),
    ({"scale": "100000000"}, "--scale must be from 1 to 64"),
    ({"truncation": "nan"}, "from 0.1 to 4"),
    ({"truncation": "1e999"}, "from 0.1 to 4"),
    ({"seed": "99999999999999999999999"}, "below 2**63"),
])
def test_crafted_png_parameters_are_refused(tmp_path, capsys, chunks, words):
    from annorm_cli.images import save_png
    text = {"annorm:class": "cat", "annorm:seed": "1", "annorm:truncation": "none", "annorm:scale": "1"}
    text.update({f"annorm:{k}": v for k, v in chunks.items()})
    save_png(np.zeros((32, 32, 3), np.uint8), tmp_path / "crafted.png", text=text)
    _one_sentence(*annorm(capsys, "generate", "--from-png", tmp_path / "crafted.png", "--out", tmp_path / "o")[::2],
                  words)
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- the Python API
@pytest.mark.parametrize("kwargs, words", [
    ({"seeds": "abc"}, "seeds must be"),
    ({"seeds": None}, "seeds must be"),
    ({"seeds": [2 ** 64]}, "2**63"),
    ({"seeds": [1.5]}, "integer"),
    ({"truncation": float("nan")}, "from 0.1 to 4"),
    ({"truncation": float("inf")}, "from 0.1 to 4"),
    ({"truncation": 1e-9}, "from 0.1 to 4"),
    ({"precision": "fp8"}, "precision"),
    ({"classes": 3.2}, "classes must be a class name or index"),
    ({"classes": [True]}, "classes must be a class name or index"),
    ({"classes": []}, "classes is empty"),
])
def test_api_generate_refuses_bad_arguments_with_annorm_errors(kwargs, words):
    with pytest.raises(AnnormError) as raised:
        annorm_cli.generate(**kwargs)
    assert words in str(raised.value)


def test_api_generate_takes_one_class_name():
    result = annorm_cli.generate("cat", [3, 4])
    assert result.class_names == ["cat", "cat"] and result.images.shape == (2, 32, 32, 3)


def test_api_inpaint_takes_what_a_python_user_passes(tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    hole = np.zeros((40, 48), bool)
    hole[10:25, 12:30] = True
    expected = annorm_cli.inpaint(photo, hole)
    Image.fromarray(photo).save(tmp_path / "p.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "m.png")
    assert np.array_equal(annorm_cli.inpaint(Image.fromarray(photo), Image.fromarray(hole)), expected)
    assert np.array_equal(annorm_cli.inpaint(tmp_path / "p.png", str(tmp_path / "m.png")), expected)
    assert np.array_equal(annorm_cli.inpaint(photo, hole.astype(np.uint8)), expected)
    grey = annorm_cli.inpaint(photo[..., 0], hole)
    assert grey.shape == (40, 48, 3) and np.array_equal(grey[~hole], np.repeat(photo[..., :1], 3, 2)[~hole])


@pytest.mark.parametrize("image, mask, words", [
    ("list", "ok", "uint8 array"),
    ("ok", None, "The mask must be"),
    ("ok", "wrong shape", "but the image is"),
    ("float", "ok", "uint8 array"),
])
def test_api_inpaint_refuses_what_it_cannot_use(image, mask, words):
    photo = np.zeros((16, 20, 3), np.uint8)
    hole = np.zeros((16, 20), bool)
    hole[4:8, 4:8] = True
    image = {"list": photo.tolist(), "ok": photo, "float": photo.astype(float)}[image]
    mask = {"ok": hole, None: None, "wrong shape": hole[:10]}[mask]
    with pytest.raises(AnnormError, match=words.replace("*", r"\*")):
        annorm_cli.inpaint(image, mask)


def test_api_layouts_of_a_photo_need_its_mask():
    with pytest.raises(AnnormError, match="mask"):
        annorm_cli.layouts(image=np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(AnnormError, match="A mask needs its photo"):
        annorm_cli.layouts(mask=np.zeros((16, 16), bool))


@pytest.mark.parametrize("kwargs, words", [
    ({"max_side": 0}, "max_side must be an integer of at least 16"),
    ({"max_side": "x"}, "max_side must be an integer of at least 16"),
    ({"image": np.zeros((0, 0, 3), np.uint8), "mask": np.zeros((0, 0), bool)}, "The image is empty (0x0 pixels)"),
])
def test_api_inpaint_refuses_bad_sizes(kwargs, words):
    photo, hole = np.zeros((16, 20, 3), np.uint8), np.zeros((16, 20), bool)
    hole[4:8, 4:8] = True
    arguments = {"image": photo, "mask": hole, **kwargs}
    with pytest.raises(AnnormError) as raised:
        annorm_cli.inpaint(arguments.pop("image"), arguments.pop("mask"), **arguments)
    assert words in str(raised.value)


# ----------------------------------------------------------------------------- inpaint surface
def test_an_inverted_mask_is_refused_and_invert_mask_fixes_it(photo_and_mask, tmp_path, capsys):
    photo, mask = photo_and_mask
    inverted = tmp_path / "inverted.png"
    Image.fromarray(255 - np.asarray(Image.open(mask))).save(inverted)
    _one_sentence(*annorm(capsys, "inpaint", photo, inverted, "--out", tmp_path / "o.png")[::2], "--invert-mask")
    assert not (tmp_path / "o.png").exists()
    assert annorm(capsys, "inpaint", photo, inverted, "--invert-mask", "--out", tmp_path / "a.png")[0] == 0
    assert annorm(capsys, "inpaint", photo, mask, "--out", tmp_path / "b.png")[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    assert annorm(capsys, "inpaint", photo, inverted, "--large-hole", "--out", tmp_path / "c.png")[0] == 0


def test_folder_masks_match_the_usual_names(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "m").mkdir()
    hole = np.zeros((24, 32), np.uint8)
    hole[5:15, 5:20] = 255
    for name, mask_name in (("a", "a_mask"), ("b", "b-mask"), ("c", "c.mask"), ("d", "d")):
        Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(tmp_path / "p" / f"{name}.png")
        Image.fromarray(hole).save(tmp_path / "m" / f"{mask_name}.png")
    code, _, err = annorm(capsys, "inpaint", tmp_path / "p", tmp_path / "m", "--out", tmp_path / "o", "-q")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.png", "c.png", "d.png"]


def test_out_folder_for_one_photo_and_grey_stays_grey(tmp_path, capsys):
    grey = (np.arange(24 * 32).reshape(24, 32) % 200).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    hole = np.zeros((24, 32), np.uint8)
    hole[5:15, 5:20] = 255
    Image.fromarray(hole).save(tmp_path / "m.png")
    (tmp_path / "out").mkdir()
    assert annorm(capsys, "inpaint", tmp_path / "grey.png", tmp_path / "m.png", "--out", tmp_path / "out")[0] == 0
    with Image.open(tmp_path / "out" / "grey-filled.png") as image:
        assert image.mode == "L"
        filled = np.asarray(image)
    assert np.array_equal(filled[hole == 0], grey[hole == 0])


def test_truncation_statistics_are_kept_per_model_and_follow_its_weights():
    import torch

    from annorm_cli import weights
    from annorm_cli.pipelines import for_truncation
    generator, _ = weights.load(None, None)
    first = for_truncation(generator, 0.7, batches=2, batch=8)
    assert for_truncation(generator, 0.7, batches=2, batch=8) is first           # computed once
    second = for_truncation(generator, 0.5, batches=2, batch=8)
    assert second is not first and for_truncation(generator, 0.5, batches=2, batch=8) is second
    with torch.no_grad():
        next(generator.parameters()).mul_(1.0)                                     # any in-place update
    assert for_truncation(generator, 0.5, batches=2, batch=8) is not second


def test_truncation_statistics_are_stored_on_disk_and_reused_bit_for_bit(tmp_path, monkeypatch):
    import torch

    from annorm_cli import weights
    from annorm_cli.pipelines import generation
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path / "cache"))
    generator, _ = weights.load(None, None)
    computed = generation.for_truncation(generator, 0.6, batches=2, batch=8)
    stored = generation.standing_file(generator, 0.6, 2, 8)
    assert stored.is_file() and list(stored.parent.iterdir()) == [stored]          # whole file, no temporaries
    fresh, _ = weights.load(None, None)                                            # a new run: memory cache empty
    import annorm_cli.models.class_conditional as models
    monkeypatch.setattr(models, "standing_statistics", lambda *a, **k: pytest.fail("recomputed"))
    loaded = generation.for_truncation(fresh, 0.6, batches=2, batch=8)
    for (name, a), (_, b) in zip(computed.named_buffers(), loaded.named_buffers()):
        assert torch.equal(a, b), name
    z, labels = torch.randn(2, generator.config.z_dim), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.equal(computed(z, labels), loaded(z, labels))
    assert generation.standing_file(generator, 0.5, 2, 8) != stored                # another truncation, another file


def test_a_damaged_truncation_cache_is_recomputed_not_trusted(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    from annorm_cli import weights
    from annorm_cli.pipelines import generation
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path / "cache"))
    generator, _ = weights.load(None, None)
    reference = generation.for_truncation(generator, 0.6, batches=2, batch=8)
    stored = generation.standing_file(generator, 0.6, 2, 8)
    name = next(n for n, _ in reference.named_buffers())
    for damage in ({name: torch.zeros(3)}, {name: torch.full_like(dict(reference.named_buffers())[name], float("nan"))}):
        save_file(damage, str(stored))
        fresh, _ = weights.load(None, None)
        again = generation.for_truncation(fresh, 0.6, batches=2, batch=8)
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(reference.named_buffers(), again.named_buffers()))
    stored.write_bytes(b"not a safetensors file")
    fresh, _ = weights.load(None, None)
    again = generation.for_truncation(fresh, 0.6, batches=2, batch=8)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(reference.named_buffers(), again.named_buffers()))


# ----------------------------------------------------------------------------- malformed weights and checkpoints
@pytest.fixture()
def shipped_copy(tmp_path):
    """The shipped generator's weights and card, copied."""
    import shutil

    from annorm_cli import weights
    path, card = weights.resolve("cifar10-an")
    shutil.copy(path, tmp_path / "g.safetensors")
    shutil.copy(card, tmp_path / "g.json")
    return tmp_path / "g.safetensors"


@pytest.mark.parametrize("card, words", [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"[1, 2]", "JSON object"),
    (b"3", "JSON object"),
    (b"null", "JSON object"),
    ({"config": None}, "config"),
    ({"sha256": 5}, "sha256"),
    ({"config": {"g_channels": "wide"}}, "g_channels"),
    ({"config": {"g_channels": [10 ** 9, 8, 8, 8]}}, "g_channels"),
    ({"config": {"z_dim": 1.5}}, "z_dim"),
    ({"config": {"colour": "blue"}}, "unknown fields"),
    ({"task": 7}, "task"),
])
def test_malformed_cards_are_one_sentence(shipped_copy, capsys, tmp_path, card, words):
    import json
    card_path = shipped_copy.with_suffix(".json")
    if isinstance(card, bytes):
        card_path.write_bytes(card)
    else:
        data = json.loads(card_path.read_text())
        for key, value in card.items():
            if key == "config" and isinstance(value, dict):
                data["config"].update(value)
            else:
                data[key] = value
        card_path.write_text(json.dumps(data))
    code, _, err = annorm(capsys, "generate", "--weights", shipped_copy, "--out", tmp_path / "o")
    _one_sentence(code, err, words)
    assert not (tmp_path / "o").exists()


def test_damaged_or_foreign_checkpoints_are_one_sentence(tmp_path, capsys):
    import torch

    from annorm_cli import weights
    _one_sentence(*annorm(capsys, "train", "inpaint", "--out", tmp_path / "r",
                          "--resume", weights.weights_dir() / "cifar10-an.train.pt")[::2], "annorm train class")
    torch.save({"format": "annorm-train-v1", "task": "class", "step": "many", "options": {}}, tmp_path / "bad.pt")
    _one_sentence(*annorm(capsys, "train", "class", "--out", tmp_path / "r2", "--resume", tmp_path / "bad.pt")[::2],
                  "damaged")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_a_resume_reads_the_runs_own_data_unless_data_is_typed():
    from annorm_cli.train.class_conditional import TrainOptions
    from annorm_cli.train.common import resumed_options
    saved = {"step": 5, "options": {**TrainOptions(data="/runs/own-data.tar").__dict__, "lr_g": 3e-4}}
    given = TrainOptions(data="default.tar", steps=9)
    assert resumed_options(saved, given).data == "/runs/own-data.tar"
    assert resumed_options(saved, given).lr_g == 3e-4 and resumed_options(saved, given).steps == 9
    assert resumed_options(saved, given, frozenset({"data"})).data == "default.tar"


def test_a_resume_keeps_the_end_of_a_decaying_learning_rate_unless_steps_is_typed():
    from annorm_cli.train.class_conditional import TrainOptions
    from annorm_cli.train.common import learning_rate_scale, resumed_options
    saved = {"step": 9500, "options": {**TrainOptions(steps=10000, lr_decay_start=8000).__dict__}}
    given = TrainOptions()                                  # a resume that typed neither
    resumed = resumed_options(saved, given)
    assert resumed.steps == 10000 and resumed.lr_decay_start == 8000
    assert learning_rate_scale(9500, resumed.lr_decay_start, resumed.steps) == 0.25
    assert resumed_options(saved, TrainOptions(steps=12000), frozenset({"steps"})).steps == 12000
    finished = {**saved, "step": 10000}
    with pytest.raises(BadInputError, match=r"^The checkpoint is at step 10,000, the end of a run of --steps 10,000; "
                                            r"type a larger --steps to go on \(and --lr-decay-start"):
        resumed_options(finished, given)
    assert resumed_options(finished, TrainOptions(steps=12000), frozenset({"steps"})).steps == 12000
    never = {"step": 9500, "options": {**TrainOptions(steps=10000, lr_decay_start=10000).__dict__}}
    assert resumed_options(never, TrainOptions(steps=20000)).steps == 20000     # its lr never decays: a run control


def test_export_never_replaces_a_card_without_overwrite(tmp_path, capsys):
    from annorm_cli import weights
    (tmp_path / "m.json").write_text('{"mine": true}')
    code, _, err = annorm(capsys, "train", "export", weights.weights_dir() / "cifar10-an.train.pt",
                          "--out", tmp_path / "m.safetensors")
    _one_sentence(code, err, "m.json' already exists")
    assert (tmp_path / "m.json").read_text() == '{"mine": true}' and not (tmp_path / "m.safetensors").exists()


def test_training_data_of_the_wrong_kind_is_one_sentence(tmp_path, capsys):
    from annorm_cli import weights
    from helpers import tiny_image_folder
    (tmp_path / "one.png").write_bytes(_encoded(Image.new("RGB", (32, 32)), "PNG"))
    _one_sentence(*annorm(capsys, "train", "class", "--out", tmp_path / "r1", "--data", tmp_path / "one.png")[::2],
                  "neither a folder nor a .tar")
    two_classes = tiny_image_folder(tmp_path / "two", per_class=40)
    _one_sentence(*annorm(capsys, "train", "class", "--out", tmp_path / "r2", "--data", two_classes, "--fid-every", "0",
                          "--classifier", "", "--steps", "20000",
                          "--resume", weights.weights_dir() / "cifar10-an.train.pt")[::2],
                  "has 2 classes but the resumed run was trained on 10")
    large = tmp_path / "large" / "train" / "a"
    large.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (48, 48)).save(large / f"{i}.png")
    _one_sentence(*annorm(capsys, "train", "class", "--out", tmp_path / "r3", "--data", tmp_path / "large",
                          "--fid-every", "0", "--classifier", "")[::2], "are 48x48")
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))


def test_readable_pictures_a_wrapped_one_class_grid_and_labelled_compare(photo_and_mask, tmp_path, capsys):
    assert annorm(capsys, "generate", "-c", "cat", "-n", "16", "--out", tmp_path / "g", "-q")[0] == 0
    with Image.open(tmp_path / "g" / "grid-cat-seed0000-0015.png") as grid:
        assert grid.size == (8 * 34 + 2, 2 * 34 + 2)                   # rows of 8, not a strip of 16
    photo, mask = photo_and_mask
    assert annorm(capsys, "inpaint", photo, mask, "--out", tmp_path / "f.png", "--compare")[0] == 0
    with Image.open(tmp_path / "f-compare.png") as strip:
        band = np.asarray(strip.convert("L"))[:16]
        assert strip.size == (2 * 42 + 2, 34 + 2 + 16) and (band < 128).any()   # a white band with dark text


@pytest.mark.parametrize("args, words", [
    (["visualize-layout", "--class", "cat", "--scale", "100000"], "--scale must be from 1 to 64"),
    (["train", "class", "--threads", "0", "--steps", "1"], "--threads must be a positive integer"),
    (["bench", "layer", "--threads", "-2"], "--threads must be a positive integer"),
    (["evaluate", "fid", "--truncation", "0"], "--truncation must be a number from 0.1 to 4, got 0.0."),
    (["bench", "train-step", "--g-channels", "256,128,64"], "--g-channels takes four positive widths separated by "
                                                             "commas, like 256,128,64,32"),
    (["models", "--bogus"], "No such option: --bogus. See 'annorm models --help'"),
])
def test_more_bad_numbers_are_one_sentence_before_any_work(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    code, _, err = annorm(capsys, *args, *(["--out", str(tmp_path / "out")] if args[0] in ("visualize-layout", "train")
                                           else []))
    _one_sentence(code, err, words)
    assert list(tmp_path.iterdir()) == []


def test_visualize_layout_refuses_pictures_above_the_pixel_limit_before_inpainting(tmp_path, capsys, monkeypatch):
    from annorm_cli import pipelines
    monkeypatch.setattr(pipelines, "inpainting_layouts", lambda *a, **k: pytest.fail("worked before checking"))
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(tmp_path / "p.png")
    hole = np.zeros((400, 600), np.uint8)
    hole[100:200, 100:200] = 255
    Image.fromarray(hole).save(tmp_path / "m.png")
    code, _, err = annorm(capsys, "visualize-layout", "--image", tmp_path / "p.png", "--mask", tmp_path / "m.png",
                          "--scale", "20", "--out", tmp_path / "out")
    _one_sentence(code, err, "--scale 20 would make 12000x8000 px pictures, above the limit of 50,000,000 pixels")
    assert not (tmp_path / "out").exists()


def test_a_write_into_a_missing_folder_names_the_file_not_its_temporary(tmp_path):
    from annorm_cli.files import atomic_open
    target = tmp_path / "missing" / "o.png"
    with pytest.raises(OSError) as caught:
        with atomic_open(target):
            pass
    assert caught.value.filename == str(target)


def test_the_truncation_cache_keeps_the_most_recently_used_files(tmp_path, monkeypatch):
    import os

    from annorm_cli import weights
    from annorm_cli.pipelines import generation
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "standing"
    folder.mkdir(parents=True)
    old = [folder / f"{i:032x}.safetensors" for i in range(generation.STANDING_FILES_KEPT)]
    for age, path in enumerate(old):                       # old[0] is the least recently used
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    generator, _ = weights.load(None, None)
    generation.for_truncation(generator, 0.7, batches=2, batch=8)
    stored = generation.standing_file(generator, 0.7, 2, 8)
    kept = set(folder.iterdir())
    assert len(kept) == generation.STANDING_FILES_KEPT and stored in kept
    assert old[0] not in kept and old[1] in kept           # only the least recently used went
    os.utime(stored, (1_000, 1_000))
    fresh, _ = weights.load(None, None)
    generation.for_truncation(fresh, 0.7, batches=2, batch=8)   # read from disk: marked as used
    assert stored.stat().st_mtime > 2_000_000
    os.utime(old[1], (1_000, 1_000))                       # now the oldest
    generation.prune_cache(folder, keep=3)
    assert set(folder.iterdir()) == {stored, old[-1], old[-2]}


def _safetensors(header: dict, data: bytes) -> bytes:
    import json
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


@pytest.mark.parametrize("blob, words", [
    (_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)[:20],
     "header runs past the end of the file"),
    ((10 ** 6).to_bytes(8, "little") + b'{"w": 1}', "header runs past the end of the file"),
    (_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), "beyond the end"),
    (_safetensors({"w": {"dtype": "F32", "shape": [10 ** 9, 10 ** 9], "data_offsets": [0, 8]}}, b"\0" * 8),
     "claims 4,000,000,000,000,000,000 bytes"),
    (_safetensors({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8), "no valid dtype"),
    (_safetensors({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "no valid dtype"),
    (b"\x05\0\0\0\0\0\0\0{oops", "not readable JSON"),
    (_safetensors([1, 2], b""), "not a safetensors file"),
])
def test_damaged_safetensors_files_are_one_sentence_even_when_the_card_matches_them(shipped_copy, capsys, tmp_path,
                                                                                  blob, words):
    import hashlib
    import json
    shipped_copy.write_bytes(blob)
    card_path = shipped_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(blob).hexdigest()
    card_path.write_text(json.dumps(card))
    for command in (["generate", "--weights", shipped_copy, "--out", tmp_path / "o"],
                    ["visualize-layout", "--weights", shipped_copy, "--class", "cat", "--out", tmp_path / "o.png"]):
        _one_sentence(*annorm(capsys, *command)[::2], words)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.png").exists()
    with pytest.raises(AnnormError, match=words.replace("(", r"\(")):
        annorm_cli.generate("cat", weights=shipped_copy)


def test_a_card_without_a_task_is_judged_by_its_architecture(tmp_path, capsys):
    import json
    import shutil

    from annorm_cli import weights
    for name, command in (("scenes-inpaint-an", ["generate", "--class", "cat"]),
                          ("scenes-inpaint-an", ["visualize-layout", "--class", "cat"]),
                          ("cifar10-an", ["inpaint", tmp_path / "p.png", tmp_path / "m.png"])):
        path, card = weights.resolve(name, task=weights.REGISTRY[name].task)
        shutil.copy(path, tmp_path / "w.safetensors")
        data = json.loads(card.read_text())
        data.pop("task")
        (tmp_path / "w.json").write_text(json.dumps(data))
        Image.new("RGB", (32, 32)).save(tmp_path / "p.png")
        Image.new("L", (32, 32), 255).crop((0, 0, 32, 32)).save(tmp_path / "m.png")
        out = tmp_path / ("o.png" if command[0] != "generate" else "o")
        code, _, err = annorm(capsys, *command, "--weights", tmp_path / "w.safetensors", "--out", out)
        _one_sentence(code, err, "holds a model for the task")
        assert not out.exists()


BIG = str(2 ** 63)
HUGE = "9" * 30


@pytest.mark.parametrize("args, words", [
    (["visualize-layout", "--class", "cat", "--seed", BIG], "--seed must be an integer from 0 to 2**63 - 1"),
    (["visualize-layout", "--class", "cat", "--seed", HUGE], "--seed must be an integer from 0 to 2**63 - 1"),
    (["visualize-layout", "--class", "cat", "--seed", "-1"], "--seed must be an integer from 0 to 2**63 - 1"),
    (["inpaint", "p.png", "m.png", "--seed", HUGE], "--seed must be an integer from 0 to 2**63 - 1"),
    (["generate", "--class", "cat", "--seed", HUGE], "below 2**63"),
    (["evaluate", "accuracy", "--seed-offset", str(2 ** 63 - 5), "--per-class", "10"], "its last seed is"),
    (["evaluate", "fid", "--seed-offset", HUGE], "--seed-offset must be an integer from 0 to 2**63 - 1"),
    (["train", "inpaint", "--seed", BIG], "--seed must be"),
    (["train", "class", "--seed", HUGE], "--seed must be"),
    (["train", "classifier", "--seed", BIG], "--seed must be"),
])
def test_seeds_beyond_64_bits_are_one_sentence_in_every_command(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (32, 32)).save("p.png")
    Image.new("L", (32, 32)).save("m.png")
    out = ["--out", str(tmp_path / "out")] if args[0] != "evaluate" else []
    code, _, err = annorm(capsys, *args, *out)
    _one_sentence(code, err, words)
    assert sorted(os.listdir(tmp_path)) == ["m.png", "p.png"]


@pytest.mark.parametrize("change, words", [
    ({"colour": "blue"}, "training options this annorm does not know (colour)"),
    ({"steps": "many"}, "its option 'steps' is str, not int"),
    ({"lr": True}, "its option 'lr' is bool, not float"),
])
@pytest.mark.parametrize("command", ["resume", "export"])
def test_a_checkpoint_whose_options_this_annorm_does_not_know_is_one_sentence(tmp_path, capsys, change, words,
                                                                             command):
    import torch

    from annorm_cli.train import inpainting as trainer
    from annorm_cli.train.common import load_checkpoint
    from helpers import TINY_INPAINT, tiny_image_folder
    data = tiny_image_folder(tmp_path / "photos", per_class=3)
    options = trainer.InpaintOptions(data=str(data), steps=1, batch_size=2, crop=16, sample_every=5)
    trainer.train(options, TINY_INPAINT, tmp_path / "run", device=torch.device("cpu"))
    saved = load_checkpoint(tmp_path / "run")
    saved["options"].update(change)
    torch.save(saved, tmp_path / "odd.pt")
    before = sorted(os.listdir(tmp_path))
    if command == "resume":
        args = ["train", "inpaint", "--out", tmp_path / "r", "--resume", tmp_path / "odd.pt", "--steps", "3"]
    else:
        args = ["train", "export", tmp_path / "odd.pt", "--out", tmp_path / "w.safetensors"]
    _one_sentence(*annorm(capsys, *args)[::2], words)
    assert sorted(os.listdir(tmp_path)) == before
