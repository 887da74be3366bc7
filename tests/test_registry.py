
import numpy as np
import pytest
import torch

from annorm_cli import weights
from annorm_cli.cli.app import app
from annorm_cli.cli.errors import run_guarded
from annorm_cli.models import Generator
from helpers import TINY, TINY_INPAINT


@pytest.mark.parametrize("name", sorted(weights.REGISTRY))
def test_every_shipped_model_loads_checks_out_and_runs(name):
    entry = weights.REGISTRY[name]
    path = weights.weights_dir() / entry.file
    if not path.exists():
        pytest.skip(f"{entry.file} is not shipped yet")
    model, card = weights.load(name, task=entry.task)
    import hashlib                                      # the card's sha256, recomputed here, not by weights.py
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    if entry.task == "class-conditional":
        from annorm_cli.pipelines import generate_images
        images = generate_images(model, [0, 1], [0, 1])
        assert images.shape == (2, 32, 32, 3) and images.std() > 5
        assert len(card["classes"]) == model.config.n_classes
    elif entry.task == "classifier":
        logits = model(torch.zeros(3, 3, 32, 32))
        assert logits.shape == (3, len(card["classes"])) and torch.isfinite(logits).all()
        assert 0.5 < card["metrics"]["test_accuracy"]["value"] <= 1
    else:
        from annorm_cli.masks import random_mask
        from annorm_cli.pipelines import inpaint_array
        image = np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)
        mask = random_mask(45, 61, 0, (0.2, 0.3))
        out = inpaint_array(model, image, mask)
        assert np.array_equal(out[~mask], image[~mask])
    assert "metrics" in card and "train_command" in card


def test_models_table_reports_sha_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANNORM_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")                          # a plain terminal: names are not cut
    config = type(TINY)(**{**TINY.to_dict(), "class_names": ("cat", "dog")})
    weights.save(Generator(config), "ClassConditionalGenerator", config.to_dict(), tmp_path / "cifar10-an.safetensors",
                 {"task": "class-conditional", "classes": ["cat", "dog"],
                  "metrics": {"fid_10k": {"value": 42.5}, "class_accuracy": {"value": 0.6756}}})
    from annorm_cli.models.inpainting import InpaintGenerator
    scores = {"10%-20%": 18.14, "20%-30%": 17.79, "30%-40%": 17.48}
    buckets = {name: {"annorm": {"psnr": psnr, "l1": 0.1, "ssim": 0.9}} for name, psnr in scores.items()}
    weights.save(InpaintGenerator(TINY_INPAINT), "InpaintGenerator", TINY_INPAINT.to_dict(),
                 tmp_path / "scenes-inpaint-an.safetensors", {"task": "inpaint", "metrics": {"inpaint_eval": {"buckets": buckets}}})
    assert run_guarded(app, ["models"]) == 0
    out = capsys.readouterr().out
    assert "cifar10-an " in out and "ok" in out and "fid_10k 42.50" in out and "class acc. 67.6%" in out
    assert "scenes-inpaint-an " in out and all(f"{psnr:.2f}" in out for psnr in scores.values())   # no number cut
    assert "cifar10-classifier " in out and "missing" in out
    blob = bytearray((tmp_path / "cifar10-an.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "cifar10-an.safetensors").write_bytes(bytes(blob))
    assert run_guarded(app, ["models"]) == 0
    assert "MISMATCH" in capsys.readouterr().out


def test_bench_helpers():
    from annorm_cli import bench
    rows = [{"resolution": r, "train_ms": 3.0 * r ** 2} for r in (64, 128, 256)]
    assert bench.loglog_slope(rows) == pytest.approx(1.0)
    rows = [{"resolution": r, "train_ms": (r ** 2) ** 2} for r in (64, 128)] + [{"resolution": 256, "skipped": "x"}]
    assert bench.loglog_slope(rows) == pytest.approx(2.0)
    cell = bench.run_cell(bench.LayerBenchConfig(channels=8, entities=4, threads=1), "an-fast", 16)
    assert cell["train_ms"] > 0 and cell["forward_ms"] > 0 and cell["spread"] >= 0
    assert "skipped" in bench.run_cell(bench.LayerBenchConfig(max_bytes=1e6), "self-attention", 512)


def test_median_and_spread_of_timed_runs(monkeypatch):
    import time
    from annorm_cli import bench
    ticks = iter([0.0, 0.010, 1.0, 1.010, 2.0, 2.020, 3.0, 3.012])    # (start, end) of 4 timed runs
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    median, spread = bench._median_ms(lambda: None, __import__("torch").device("cpu"), min_seconds=0, min_runs=4)
    # runs 10, 10, 20, 12 ms sorted 10, 10, 12, 20: median (index 2) 12 ms, IQR 20 - 10 over 12
    assert median == pytest.approx(12.0) and spread == pytest.approx(10 / 12)


def test_bench_layer_warns_about_noisy_timings():
    from annorm_cli.cli.bench import _layer_summary
    row = lambda res, spread: {"resolution": res, "train_ms": 2.0, "forward_ms": 1.0, "peak_bytes": 0,  # noqa: E731
                               "spread": spread}
    kinds = ("an-fast", "an-reference", "self-attention", "conv1x1+instnorm")
    quiet = {kind: [row(64, 0.02)] for kind in kinds}
    assert not any("warning" in line for line in _layer_summary(quiet, (64,)))
    noisy = {**quiet, "self-attention": [row(64, 0.3)]}
    assert any(line.startswith("warning: in 1 cell(s)") for line in _layer_summary(noisy, (64,)))


def test_weights_dir_falls_back_to_the_wheel_location(tmp_path, monkeypatch):
    """A wheel install has no source checkout: the weights are found under <prefix>/share/annorm/weights."""
    monkeypatch.delenv("ANNORM_WEIGHTS", raising=False)
    fake_package = tmp_path / "site-packages" / "annorm_cli"
    fake_package.mkdir(parents=True)
    monkeypatch.setattr(weights, "__file__", str(fake_package / "weights.py"))
    monkeypatch.setattr(weights.sys, "prefix", str(tmp_path / "prefix"))
    assert weights.weights_dir() == tmp_path / "site-packages" / "weights"           # neither exists: the checkout path
    installed = tmp_path / "prefix" / "share" / "annorm" / "weights"
    installed.mkdir(parents=True)
    assert weights.weights_dir() == installed
    (tmp_path / "site-packages" / "weights").mkdir()
    assert weights.weights_dir() == tmp_path / "site-packages" / "weights"           # a checkout wins
    monkeypatch.setenv("ANNORM_WEIGHTS", str(tmp_path / "elsewhere"))
    assert weights.weights_dir() == tmp_path / "elsewhere"


def test_bench_train_step_times_the_widths_it_is_given(capsys):
    from annorm_cli.models.class_conditional import ClassConditionalConfig, Discriminator
    from annorm_cli.train import profiling
    config = ClassConditionalConfig(g_channels=(16, 8, 8, 8), d_channels=(8, 8, 8, 8))
    g_params, d_params = profiling.parameter_counts(config)
    assert g_params == sum(p.numel() for p in Generator(config).parameters())
    assert d_params == sum(p.numel() for p in Discriminator(config).parameters())
    assert profiling.parameter_counts(ClassConditionalConfig())[0] > 1_000_000 > g_params   # the shipped G: 1.21M
    code = run_guarded(app, ["bench", "train-step", "--g-channels", "16,8,8,8", "--d-channels", "8,8,8,8",
                             "--batch-size", "4", "--steps", "1", "--threads", "1"])
    out = " ".join(capsys.readouterr().out.split())          # rich may wrap the title at any space
    assert code == 0
    assert f"G 16,8,8,8: {g_params / 1e6:.2f}M" in out and f"D 8,8,8,8: {d_params / 1e6:.2f}M" in out
    assert "convolution" in out and "eager" in out
