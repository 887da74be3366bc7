import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from annorm_cli import __version__, weights
from annorm_cli.cli.app import app
from annorm_cli.cli.errors import run_guarded
from annorm_cli.models import Generator
from helpers import TINY


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A tiny random generator with a non-zero AN gate, saved as safetensors + card."""
    torch.manual_seed(0)
    config = type(TINY)(**{**TINY.to_dict(), "class_names": ("cat", "dog"), "g_channels": (16, 8, 8, 8)})
    model = Generator(config).eval()
    model.attention.attention.gamma.data.fill_(0.5)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    weights.save(model, "ClassConditionalGenerator", config.to_dict(), path, {"classes": ["cat", "dog"]})
    return path


def annorm(capsys, *args):
    code = run_guarded(app, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_and_version_through_typer_runner():
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "generate" in result.output and "train" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"annorm {__version__}"


def test_help_is_fast_because_torch_is_not_imported():
    import subprocess
    import sys
    code = "import sys, annorm_cli.cli.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_generate_writes_images_grid_and_metadata(tiny_weights, tmp_path, capsys):
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "-c", "1", "--seed", "3-5",
                          "--out", tmp_path, "--scale", "2", "--quiet")
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cat-seed0003.png", "cat-seed0004.png", "cat-seed0005.png", "dog-seed0003.png",
                     "dog-seed0004.png", "dog-seed0005.png", "grid-all-seed0003-0005.png"]
    with Image.open(tmp_path / "dog-seed0004.png") as image:
        assert image.size == (64, 64)
        assert image.text["annorm:class"] == "dog" and image.text["annorm:seed"] == "4"
        assert image.text["annorm:sha256"] == json.loads(tiny_weights.with_suffix(".json").read_text())["sha256"]


def test_seed_alone_equals_seed_inside_any_batch(tiny_weights, tmp_path, capsys):
    for batch, out in ((1, "a"), (5, "b")):
        assert annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "--seed", "0-6",
                      "--batch-size", batch, "--out", tmp_path / out, "--no-grid", "-q")[0] == 0
    assert annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "--seed", "2", "--out",
                  tmp_path / "c", "-q")[0] == 0
    pixels = lambda p: np.asarray(Image.open(p))  # noqa: E731
    for seed in range(7):
        assert (pixels(tmp_path / "a" / f"cat-seed{seed:04d}.png") == pixels(tmp_path / "b" / f"cat-seed{seed:04d}.png")).all()
    assert (pixels(tmp_path / "c" / "cat-seed0002.png") == pixels(tmp_path / "a" / "cat-seed0002.png")).all()
    assert pixels(tmp_path / "a" / "cat-seed0001.png").std() > 0
    assert not (pixels(tmp_path / "a" / "cat-seed0001.png") == pixels(tmp_path / "a" / "cat-seed0002.png")).all()


def test_from_png_reproduces_exactly(tiny_weights, tmp_path, capsys):
    assert annorm(capsys, "generate", "--weights", tiny_weights, "-c", "dog", "--seed", "7", "--truncation", "0.8",
                  "--out", tmp_path / "a", "-q")[0] == 0
    source = tmp_path / "a" / "dog-seed0007.png"
    assert annorm(capsys, "generate", "--weights", tiny_weights, "--from-png", source, "--out", tmp_path / "b",
                  "-q")[0] == 0
    again = tmp_path / "b" / "dog-seed0007.png"
    assert (np.asarray(Image.open(source)) == np.asarray(Image.open(again))).all()
    assert Image.open(again).text["annorm:truncation"] == "0.8"


def test_from_png_regenerates_at_the_precision_the_png_records(tiny_weights, tmp_path, capsys):
    assert annorm(capsys, "generate", "--weights", tiny_weights, "-c", "dog", "--seed", "3", "--precision", "bf16",
                  "--out", tmp_path / "a", "-q")[0] == 0
    source = tmp_path / "a" / "dog-seed0003.png"
    assert Image.open(source).text["annorm:precision"] == "bf16"
    assert annorm(capsys, "generate", "--weights", tiny_weights, "--from-png", source, "--out", tmp_path / "b",
                  "-q")[0] == 0
    again = tmp_path / "b" / "dog-seed0003.png"
    assert Image.open(again).text["annorm:precision"] == "bf16"
    assert (np.asarray(Image.open(source)) == np.asarray(Image.open(again))).all()


@pytest.mark.parametrize("args, message", [
    (["-c", "cta"], "Unknown class 'cta'.*Did you mean 'cat'"),
    (["-c", "7"], "out of range"),
    (["--num", "0"], "--num must be a positive integer"),
    (["--num", "-3"], "--num must be a positive integer"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--seed", "9-2"], "runs backwards"),
    (["--seed", "a-b"], "Malformed --seed"),
    (["--seed", "1,x"], "Malformed --seed"),
    (["--truncation", "-1"], "--truncation must be a number from 0.1 to 4, got -1.0."),
    (["--truncation", "nan"], "--truncation must be a number from 0.1 to 4, got nan."),
    (["--truncation", "inf"], "--truncation must be a number from 0.1 to 4, got inf."),
    (["--truncation", "1e-9"], "--truncation must be a number from 0.1 to 4, got 1e-09."),
    (["--seed", str(2 ** 64)], "below 2\\*\\*63"),
    (["--seed", "0-100000000000000000000"], "at most 100,000"),
    (["--num", str(10 ** 20)], "at most 100,000"),
    (["--scale", "0"], "--scale must be from 1 to 64"),
    (["--scale", "100000"], "--scale must be from 1 to 64"),
    (["--num", "3", "--seed", "0-9"], "disagrees"),
])
def test_bad_generate_input_is_one_sentence_exit_2_and_no_file(tiny_weights, tmp_path, capsys, args, message):
    import re
    out = tmp_path / "out"
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "--out", out, *args)
    assert code == 2
    assert re.search(message, err) and err.startswith("annorm: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_absent_cuda_is_refused(tiny_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "--device", "cuda", "--out", tmp_path)
    assert code == 2 and "no CUDA GPU is available" in err


def test_unknown_model_is_refused(capsys, tmp_path):
    code, _, err = annorm(capsys, "generate", "--model", "imagenet-xl", "--out", tmp_path)
    assert code == 2 and "Unknown model 'imagenet-xl'" in err


def _copy_with_card(tiny_weights, tmp_path, blob: bytes, name="w.safetensors"):
    path = tmp_path / name
    path.write_bytes(blob)
    path.with_suffix(".json").write_text(tiny_weights.with_suffix(".json").read_text())
    return path


def test_weights_with_wrong_sha_pickle_or_garbage_are_refused(tiny_weights, tmp_path, capsys):
    original = tiny_weights.read_bytes()
    tampered = bytearray(original)
    tampered[-1] ^= 1
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    cases = {
        "sha": (bytes(tampered), "does not match the sha256"),
        "pickle": (pickle.dumps({"w": Payload()}, protocol=2), "never unpickles"),
        "text": (b"hello, not weights", "not a safetensors file"),
        "truncated": (original[:200], "truncated"),
    }
    for name, (blob, message) in cases.items():
        path = _copy_with_card(tiny_weights, tmp_path, blob, f"{name}.safetensors")
        code, _, err = annorm(capsys, "generate", "--weights", path, "--out", tmp_path / name)
        assert code == 2 and message in err, (name, err)
        assert not (tmp_path / name).exists()
    assert not marker.exists()


def test_existing_output_is_not_overwritten(tiny_weights, tmp_path, capsys):
    target = tmp_path / "cat-seed0000.png"
    target.write_bytes(b"precious")
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "--out", tmp_path)
    assert code == 2 and "already exists" in err and target.read_bytes() == b"precious"
    assert annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "--out", tmp_path, "--overwrite",
                  "-q")[0] == 0
    assert target.read_bytes() != b"precious"


def test_unwritable_output_folder(tiny_weights, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "--out", blocker / "sub")
    assert code == 2 and "Cannot create the output folder" in err


def test_device_resolver(monkeypatch):
    from annorm_cli.device import resolve_device
    from annorm_cli.errors import AnnormError
    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(AnnormError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(AnnormError, match="Unknown device"):
        resolve_device("tpu")


def test_visualize_layout_writes_pictures_and_arrays(tiny_weights, tmp_path, capsys):
    out = tmp_path / "lay"
    code, _, err = annorm(capsys, "visualize-layout", "--weights", tiny_weights, "-c", "dog", "--seed", "3",
                          "--out", out, "--top-k", "3", "--scale", "2")
    assert code == 0, err
    data = np.load(out / "layouts.npz")
    assert list(data["layer_names"]) == ["attention.attention"]
    layout = data["attention.attention/layout"]
    assert layout.shape == (4, 16, 16) and data["attention.attention/logits"].shape == (4, 16, 16)
    np.testing.assert_allclose(layout.sum(0), 1.0, rtol=1e-5)
    heat_maps = sorted(p.name for p in out.glob("*-entity*.png"))
    shares = layout.mean((1, 2))                           # the top 3 entities holding at least 1% of the image
    expected = [f"attention_attention-entity{i:02d}.png" for i in np.argsort(-shares)[:3] if shares[i] >= 0.01]
    assert heat_maps == sorted(expected)
    with Image.open(out / "attention_attention-hard.png") as hard:
        assert hard.size == (64, 64) and len(hard.getcolors(maxcolors=1 << 16)) <= 4
    assert (out / "contact-sheet.png").exists() and (out / "image.png").exists()
    code, _, err = annorm(capsys, "visualize-layout", "--weights", tiny_weights, "-c", "dog", "--out", out)
    assert code == 2 and "not empty" in err


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from annorm_cli.images import save_png

    def explode(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(PILImage.Image, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from annorm_cli.train import common
    common.atomic_save({"format": "annorm-train-v1", "task": "class", "step": 1, "options": {}},
                       tmp_path / "checkpoint.pt")

    def explode(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        common.atomic_save({"step": 2}, tmp_path / "checkpoint.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert common.load_checkpoint(tmp_path)["step"] == 1


def test_interpolation_strip_and_gif(tiny_weights, tmp_path, capsys):
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "--seed", "1,9",
                          "--interpolate", "5", "--gif", "--out", tmp_path, "-q")
    assert code == 0, err
    strip = Image.open(tmp_path / "interpolation-cat-seed0001-to-seed0009.png")
    assert strip.size == (5 * 34 + 2, 36)
    gif = Image.open(tmp_path / "interpolation-cat-seed0001-to-seed0009.gif")
    assert gif.n_frames >= 5
    # the first frame is seed 1 itself
    assert annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "--seed", "1", "--out", tmp_path / "one",
                  "-q")[0] == 0
    single = np.asarray(Image.open(tmp_path / "one" / "cat-seed0001.png"))
    assert (np.asarray(strip)[2:34, 2:34] == single).all()
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "-c", "cat", "-c", "dog", "--seed", "0",
                          "--interpolate", "3", "--out", tmp_path / "classes", "-q")
    assert code == 0 and (tmp_path / "classes" / "interpolation-cat-to-dog-seed0000.png").exists()
    code, _, err = annorm(capsys, "generate", "--weights", tiny_weights, "--seed", "0-5", "--interpolate", "3",
                          "--out", tmp_path / "bad")
    assert code == 2 and "two seeds and one --class" in err


@pytest.mark.parametrize("args", [["generate", "--no-such-option"], ["generate", "--num", "many"], ["frobnicate"]])
def test_usage_errors_exit_2_without_traceback(capsys, args):
    code, out, err = annorm(capsys, *args)
    assert code == 2 and "Traceback" not in out + err and ("No such" in err or "Invalid value" in err)
    assert err.startswith("annorm: error: ") and len(err.strip().splitlines()) == 1       # one sentence


def test_options_typed_on_the_command_line_are_detected():
    from annorm_cli.cli.train import _typed_options
    import typer as typer_module
    seen = {}
    probe = typer_module.Typer()

    @probe.command()
    def run(ctx: typer_module.Context, a: int = 1, b: int = 2) -> None:
        seen["typed"] = _typed_options(ctx)

    CliRunner().invoke(probe, ["--b", "5"])
    assert seen["typed"] == frozenset({"b"})


def test_python_api_matches_the_cli(tiny_weights, tmp_path, capsys):
    import annorm_cli
    result = annorm_cli.generate(classes=["dog", 0], seeds=range(3), weights=str(tiny_weights), device="cpu")
    assert result.images.shape == (6, 32, 32, 3) and result.class_names == ["dog"] * 3 + ["cat"] * 3
    assert annorm(capsys, "generate", "--weights", tiny_weights, "-c", "dog", "--seed", "0-2", "--out", tmp_path,
                  "-q", "--no-grid")[0] == 0
    assert (np.asarray(Image.open(tmp_path / "dog-seed0001.png")) == result.images[1]).all()
    lay = annorm_cli.layouts(class_name="dog", seed=1, weights=str(tiny_weights))
    assert (lay.image == result.images[1]).all()
    np.testing.assert_allclose(lay.layouts["attention.attention"].sum(0), 1.0, rtol=1e-5)


def test_evaluate_accuracy_reports_what_the_classifier_says_per_class(tiny_weights, tmp_path, capsys):
    from annorm_cli.models.classifier import Classifier, ClassifierConfig
    from annorm_cli.pipelines import generate_images
    from annorm_cli.evaluate.recognisability import checkerboard_share, predict
    torch.manual_seed(1)
    config = ClassifierConfig(n_classes=2, widths=(4, 4, 4), class_names=("cat", "dog"))
    scorer = Classifier(config).eval()
    scorer_path = tmp_path / "scorer.safetensors"
    weights.save(scorer, "Classifier", config.to_dict(), scorer_path, {"task": "classifier"})
    code, out, err = annorm(capsys, "evaluate", "accuracy", "--weights", tiny_weights, "--classifier", scorer_path,
                            "--per-class", 6, "--seed-offset", 10, "--no-real", "--json", tmp_path / "acc.json")
    assert code == 0, err
    result = json.loads((tmp_path / "acc.json").read_text())
    generator, _ = weights.load(weights=tiny_weights)
    images = torch.from_numpy(generate_images(generator, [0] * 6 + [1] * 6, list(range(10, 16)) * 2))
    predicted = predict(scorer, images)
    expected = [(predicted[:6] == 0).float().mean().item(), (predicted[6:] == 1).float().mean().item()]
    assert [row["accuracy"] for row in result["samples"]] == pytest.approx(expected)
    assert result["accuracy"] == pytest.approx(sum(expected) / 2) and result["real_test_images"] is None
    assert result["samples"][0]["spread"] == pytest.approx(images[:6].double().std(0).mean().item())
    assert result["samples"][1]["checkerboard"] == checkerboard_share(images[6:])
    assert "cat" in out and "dog" in out
    code, _, err = annorm(capsys, "evaluate", "accuracy", "--weights", tiny_weights, "--classifier",
                          tmp_path / "missing.safetensors", "--no-real")
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_truncation_recomputes_batch_norm_statistics_for_truncated_latents(tiny_weights):
    from annorm_cli.nn.blocks import CrossReplicaBatchNorm2d
    from annorm_cli.pipelines import for_truncation, generate_images
    generator, _ = weights.load(weights=tiny_weights)
    assert for_truncation(generator, None) is generator
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    first_norm = lambda g: next(m for m in g.modules() if isinstance(m, CrossReplicaBatchNorm2d))  # noqa: E731
    narrow, wide = for_truncation(generator, 0.5), for_truncation(generator, 100.0)   # 100: no value is cut
    # the statistics follow the latents: |z| <= 0.5 has ~1/12 of a standard normal's variance
    assert (first_norm(narrow).running_var < first_norm(wide).running_var).all()
    images = generate_images(generator, [0, 1], [3, 4], truncation=0.5)
    assert all(torch.equal(v, generator.state_dict()[k]) for k, v in before.items())     # the model is untouched
    assert not np.array_equal(images, generate_images(generator, [0, 1], [3, 4]))


def test_truncated_samples_of_the_shipped_model_keep_their_contrast(monkeypatch):
    from annorm_cli import pipelines
    generator, _ = weights.load("cifar10-an")
    classes, seeds = list(range(10)) * 2, list(range(20))
    prepared = pipelines.generate_images(generator, classes, seeds, truncation=0.5)
    monkeypatch.setattr(pipelines.generation, "for_truncation", lambda g, t: g)   # untruncated latents' statistics
    stale = pipelines.generate_images(generator, classes, seeds, truncation=0.5)
    full = pipelines.generate_images(generator, classes, seeds)
    contrast = lambda images: images.reshape(len(images), -1).std(1).mean()  # noqa: E731
    # measured: step 5,055 full 45.5, prepared 54.5, stale 21.6 (dark, alike images);
    # step 7,500 full 45.7, prepared 54.0, stale 27.5
    assert contrast(prepared) > 0.8 * contrast(full) and contrast(stale) < 0.6 * contrast(prepared)


def test_truncated_samples_are_the_same_bits_on_every_run_and_leave_the_global_rng_alone(tmp_path, monkeypatch):
    import torch

    from annorm_cli import pipelines
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path))   # no stored statistics: the first call computes them
    generator, _ = weights.load("cifar10-an")           # a fresh model: nothing cached in memory either
    state = torch.get_rng_state()
    first = pipelines.generate_images(generator, [8], [4], truncation=0.7)
    assert list(tmp_path.glob("standing/*.safetensors"))            # it did compute (and store) them
    assert torch.equal(torch.get_rng_state(), state)     # the standing statistics drew from a fork
    torch.rand(17)                                      # the global generator moves on between runs
    second = pipelines.generate_images(weights.load("cifar10-an")[0], [8], [4], truncation=0.7)
    assert np.array_equal(first, second)
    other = pipelines.generate_images(generator, [8], [5], truncation=0.7)
    assert not np.array_equal(first, other)              # and another seed gives another image


def test_hole_outline_paints_only_the_holes_border():
    import numpy as np
    from annorm_cli.visualize import OUTLINE, outline
    image = np.zeros((10, 10, 3), np.uint8)
    hole = np.zeros((10, 10), bool)
    hole[2:8, 3:9] = True                                   # a 6 x 6 hole
    drawn = outline(image, hole, width=2)
    painted = (drawn == OUTLINE).all(-1)
    assert painted.sum() == 36 - 4                           # a 2 px ring: all but the 2 x 2 centre
    assert not painted[~hole].any() and not painted[4:6, 5:7].any()


def test_contact_sheet_wraps_captions_and_colours_entities():
    import numpy as np
    from annorm_cli import visualize
    layout = np.zeros((9, 4, 4), np.float32)
    for entity in range(8):                                   # 8 entities of 2 positions each, 1 empty
        layout[entity].flat[2 * entity:2 * entity + 2] = 1.0
    image = np.full((64, 32, 3), 128, np.uint8)
    sheet = visualize.contact_sheet(image, {"a": layout, "b": layout}, top_k=8)
    tile_h, tile_w = visualize._tile_size(64, 32)             # 256 x 128
    assert (tile_h, tile_w) == (256, 128)
    # 3 + 8 = 11 tiles per layer in lines of 6: 2 lines; width: 6 tiles and 7 gaps of 6 px
    assert sheet.shape[1] == 6 + 6 * (128 + 6)
    assert sheet.shape[0] == 6 + 2 * (24 + 2 * (20 + 256 + 6))
    swatch = sheet[6 + 24 + 4 + 3 * 0, 6 + 3 * (128 + 6) + 6]  # first heat map's swatch, entity 0
    assert tuple(swatch) == tuple(visualize.palette(9)[0])
