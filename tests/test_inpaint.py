import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from annorm_cli import weights
from annorm_cli.cli.app import app
from annorm_cli.cli.errors import run_guarded
from annorm_cli.errors import BadInputError
from annorm_cli.evaluate import inpainting as metrics
from annorm_cli.masks import EVAL_BUCKETS, random_mask
from annorm_cli.models.inpainting import InpaintConfig, InpaintGenerator
from annorm_cli.pipelines import inpaint_array

from helpers import TINY_INPAINT as TINY


@pytest.fixture(scope="module")
def tiny_inpaint_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = InpaintGenerator(TINY).eval()
    path = tmp_path_factory.mktemp("w") / "tiny-inpaint.safetensors"
    weights.save(model, "InpaintGenerator", TINY.to_dict(), path, {"task": "inpaint"})
    return path


@pytest.mark.parametrize("attention,skips,convolution", [("an", False, "plain"), ("sa", False, "plain"),
                                                         ("none", False, "plain"), ("an", True, "plain"),
                                                         ("an", True, "gated")])
def test_any_size_in_gives_same_size_out_and_keeps_known_pixels(attention, skips, convolution):
    torch.manual_seed(0)
    model = InpaintGenerator(InpaintConfig(channels=4, n_entities=4, dilations=(2,), attention_blocks=1,
                                           attention=attention, skips=skips, convolution=convolution)).eval()
    if skips:   # the skip convolutions start at zero: give them weights so the skip path is exercised
        for name, p in model.named_parameters():
            if ".skip_" in name:
                torch.nn.init.normal_(p, std=0.3)
    rng = np.random.default_rng(0)
    for H, W in ((37, 53), (64, 64), (5, 7), (130, 97)):
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        mask = random_mask(H, W, seed=H * W, ratio=(0.1, 0.4))
        out = inpaint_array(model, image, mask)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[~mask], image[~mask])
        assert (out[mask] != image[mask]).any()


def test_large_photo_is_inpainted_through_a_downscaled_crop_and_keeps_every_other_pixel():
    torch.manual_seed(0)
    model = InpaintGenerator(TINY).eval()
    image = np.random.default_rng(1).integers(0, 256, (700, 900, 3), dtype=np.uint8)
    mask = np.zeros((700, 900), bool)
    mask[100:600, 200:800] = True
    out = inpaint_array(model, image, mask, max_side=64)
    assert np.array_equal(out[~mask], image[~mask]) and (out[mask] != image[mask]).mean() > 0.9


def test_the_network_works_at_its_configured_side_unless_told_otherwise():
    torch.manual_seed(0)
    model = InpaintGenerator(dataclasses.replace(TINY, work_side=32)).eval()
    image = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    mask = np.zeros((96, 128), bool)
    mask[20:70, 30:100] = True
    by_config = inpaint_array(model, image, mask, texture=False)     # the network's fill (a box: PatchMatch's with texture)
    assert np.array_equal(by_config, inpaint_array(model, image, mask, max_side=32, texture=False))
    assert not np.array_equal(by_config, inpaint_array(model, image, mask, max_side=128, texture=False))


def test_mask_generator_is_deterministic_and_hits_its_ratio_range():
    for low, high in EVAL_BUCKETS:
        ratios = []
        for seed in range(12):
            mask = random_mask(96, 128, seed, (low, high))
            assert np.array_equal(mask, random_mask(96, 128, seed, (low, high)))
            ratios.append(mask.mean())
        assert all(r <= high for r in ratios)
        assert np.mean([r >= low for r in ratios]) >= 0.9
    assert not np.array_equal(random_mask(64, 64, 1), random_mask(64, 64, 2))


def test_metrics_against_hand_computation():
    truth = np.zeros((4, 4, 3), np.uint8)
    prediction = truth.copy()
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True
    prediction[0, 0] = 10                        # 3 channels off by 10, 3 channels exact
    mse = (3 * 100) / 6
    assert metrics.psnr_in_hole(prediction, truth, mask) == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert metrics.l1_in_hole(prediction, truth, mask) == pytest.approx(5 / 255)
    assert metrics.psnr_in_hole(truth, truth, mask) == float("inf")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    b = np.full_like(a, 128)
    # a constant prediction: SSIM = mean over windows and channels of
    # (2 mu_x mu_y + c1) c2 / ((mu_x^2 + mu_y^2 + c1)(var_y + c2)), computed here in float64 by hand
    g = np.exp(-(np.arange(11) - 5) ** 2 / (2 * 1.5 ** 2))
    window = np.outer(g, g) / np.outer(g, g).sum()                      # [11, 11]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for channel in range(3):
        y = a[..., channel].astype(np.float64)
        for i in range(32 - 10):
            for j in range(32 - 10):
                patch = y[i:i + 11, j:j + 11]
                mu_y = (window * patch).sum()
                var_y = (window * patch ** 2).sum() - mu_y ** 2
                values.append((2 * 128 * mu_y + c1) * c2 / ((128 ** 2 + mu_y ** 2 + c1) * (var_y + c2)))
    assert metrics.ssim(b, a) == pytest.approx(np.mean(values), abs=1e-5)


def test_opencv_baselines_keep_known_pixels():
    pytest.importorskip("cv2")
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = random_mask(40, 50, 0, (0.2, 0.3))
    for method in ("telea", "ns"):
        out = metrics.opencv_inpaint(image, mask, method)
        assert out.shape == image.shape and np.array_equal(out[~mask], image[~mask])


def _run(capsys, *args):
    code = run_guarded(app, [str(a) for a in args])
    return code, capsys.readouterr().err


def test_cli_inpaint_file_and_folders(tiny_inpaint_weights, tmp_path, capsys):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i, (H, W) in enumerate(((33, 47), (64, 48))):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
        Image.fromarray(random_mask(H * 2, W * 2, i, (0.2, 0.3)).astype(np.uint8) * 255).save(masks / f"p{i}.png")
    code, err = _run(capsys, "inpaint", photos, masks, "--out", tmp_path / "out", "--weights", tiny_inpaint_weights,
                     "--compare", "-q")
    assert code == 0, err
    for i in range(2):
        src = np.asarray(Image.open(photos / f"p{i}.png"))
        out = np.asarray(Image.open(tmp_path / "out" / f"p{i}.png"))
        hole = np.asarray(Image.open(masks / f"p{i}.png").resize(src.shape[1::-1], Image.NEAREST)) > 0
        assert out.shape == src.shape and np.array_equal(out[~hole], src[~hole])
        assert (tmp_path / "out" / f"p{i}-compare.png").exists()
    code, err = _run(capsys, "inpaint", photos / "p0.png", masks / "p0.png", "--out", tmp_path / "out" / "p0.png",
                     "--weights", tiny_inpaint_weights)
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("case, message", [
    ("aspect", "another aspect ratio"),
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("garbage", "not a readable image"),
    ("truncated", "not a readable image"),
    ("dilate", "--dilate must be zero or positive"),
    ("jpeg-out", "must be a .png"),
    ("empty-folder", "holds no images"),
    ("blank-mask", "marks no pixel as hole"),
    ("full-mask", "covers the whole image"),
])
def test_cli_inpaint_bad_input(tiny_inpaint_weights, tmp_path, capsys, case, message):
    photo, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(photo)
    hole = np.zeros((40, 60), np.uint8)
    hole[10:20, 20:40] = 255
    Image.fromarray(hole).save(mask)
    out, extra = tmp_path / "out.png", []
    if case == "aspect":
        Image.fromarray(np.full((40, 40), 255, np.uint8)).save(mask)
    elif case == "missing":
        photo = tmp_path / "nope.png"
    elif case == "empty":
        photo.write_bytes(b"")
    elif case == "garbage":
        photo.write_bytes(b"not an image at all")
    elif case == "truncated":
        photo.write_bytes(photo.read_bytes()[:60])
    elif case == "dilate":
        extra = ["--dilate", "-2"]
    elif case == "jpeg-out":
        out = tmp_path / "out.jpg"
    elif case == "blank-mask":
        Image.fromarray(np.zeros((40, 60), np.uint8)).save(mask)
    elif case == "full-mask":
        Image.fromarray(np.full((40, 60), 255, np.uint8)).save(mask)
    elif case == "empty-folder":
        photo, mask = tmp_path / "empty", tmp_path / "masks"
        photo.mkdir()
        mask.mkdir()
    code, err = _run(capsys, "inpaint", photo, mask, "--out", out, "--weights", tiny_inpaint_weights, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_mask_conventions_and_dilation(tmp_path):
    from annorm_cli.images import read_mask
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[2:4, 2:4, 3] = 0                                  # transparent = hole
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert read_mask(tmp_path / "a.png", (10, 10)).sum() == 4
    labels = np.zeros((10, 10), np.uint8)
    labels[5, 5] = 1                                       # a 0/1 mask: the 1s are the hole
    Image.fromarray(labels).save(tmp_path / "g.png")
    assert read_mask(tmp_path / "g.png", (10, 10)).sum() == 1
    assert read_mask(tmp_path / "g.png", (10, 10), dilate=1).sum() == 9
    assert read_mask(tmp_path / "g.png", (20, 20)).sum() == 4   # same aspect ratio: resized
    noisy = np.random.default_rng(0).integers(0, 20, (32, 32)).astype(np.uint8)   # JPEG-like noise in the black
    noisy[8:16, 8:24] = 255 - noisy[8:16, 8:24]
    Image.fromarray(noisy).save(tmp_path / "n.png")
    assert np.array_equal(read_mask(tmp_path / "n.png", (32, 32)), noisy >= 128) and noisy[noisy < 128].any()
    assert read_mask(tmp_path / "n.png", (32, 32)).sum() == 8 * 16


def test_exif_orientation_is_honoured(tmp_path):
    from annorm_cli.images import read_image
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :5] = 255                                  # a white band on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6                                     # "rotate 90 CW to display"
    Image.fromarray(pixels).save(tmp_path / "p.jpg", exif=exif, quality=100)
    shown = read_image(tmp_path / "p.jpg")
    assert shown.shape == (30, 20, 3)                    # displayed upright: portrait
    assert shown[:5].mean() > 200 and shown[-5:].mean() < 50   # the band is now on top


REALISM = dict(adv_start=0, adv_weight=0.5, feature_weight=5.0, rec_weight=0.5, d_channels=4, d_layers=2,
               object_masks=0.5, reconstruction="l1")


@pytest.mark.parametrize("inference_scale,realism", [(False, {}), (True, {}), (True, REALISM),
                                                     (True, {**REALISM, "proposal": "patchmatch"}),
                                                     (True, {**REALISM, "proposal": "patchmatch", "correction_blur": 2.0})])
def test_inpaint_training_resumes_exactly(tmp_path, inference_scale, realism):
    from annorm_cli.train import inpainting as trainer
    from annorm_cli.train.common import load_checkpoint
    from helpers import tiny_image_folder
    data = tiny_image_folder(tmp_path / "photos", per_class=3)

    def options(steps):
        return trainer.InpaintOptions(data=str(data), steps=steps, batch_size=2, crop=16, sample_every=3, log_every=1,
                                      inference_scale=inference_scale, **{"adv_start": 1, **realism})
    trainer.train(options(4), TINY, tmp_path / "straight", device=torch.device("cpu"))
    trainer.train(options(2), TINY, tmp_path / "split", device=torch.device("cpu"))
    trainer.train(options(4), TINY, tmp_path / "split", device=torch.device("cpu"),
                  resume=load_checkpoint(tmp_path / "split"))
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    for part in ("G", "G_ema", "D"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert (tmp_path / "straight" / "samples-0000003.png").exists()
    card = trainer.export_generator(a, tmp_path / "w.safetensors", {})
    model, _ = weights.load(weights=tmp_path / "w.safetensors", task="inpaint")
    assert card["steps"] == 4 and isinstance(model, InpaintGenerator)


def test_a_run_with_skips_starts_as_the_model_it_is_initialised_from(tmp_path, tiny_inpaint_weights):
    from annorm_cli.train import inpainting as trainer
    from annorm_cli.train.common import load_checkpoint
    from helpers import tiny_image_folder
    data = tiny_image_folder(tmp_path / "photos", per_class=3)
    options = trainer.InpaintOptions(data=str(data), steps=2, batch_size=2, crop=16, sample_every=10, log_every=1,
                                     init_from=str(tiny_inpaint_weights), lr=1e-3)
    with_skips = dataclasses.replace(TINY, skips=True)
    trainer.train(dataclasses.replace(options, steps=0), with_skips, tmp_path / "start", device=torch.device("cpu"))
    trained, _ = weights.load(weights=tiny_inpaint_weights, task="inpaint")
    started = InpaintGenerator(with_skips)
    started.load_state_dict(load_checkpoint(tmp_path / "start")["G"])
    x, m = torch.rand(1, 3, 24, 32) * 2 - 1, torch.from_numpy(random_mask(24, 32, 1))[None, None].float()
    assert torch.equal(started.eval()(x, m)[1], trained(x, m)[1])            # zero-started skips: same function
    trainer.train(options, with_skips, tmp_path / "run", device=torch.device("cpu"))
    after = load_checkpoint(tmp_path / "run")["G"]
    assert after["refine_decoder.skip_full.weight"].abs().sum() > 0           # and the skips learn
    with pytest.raises(BadInputError, match="does not match"):
        trainer.train(options, dataclasses.replace(TINY, channels=8), tmp_path / "wide", device=torch.device("cpu"))


@pytest.mark.parametrize("attention", ["an", "sa", "none"])
def test_a_wider_quarter_stage_loaded_from_a_narrower_model_computes_the_same_function(attention):
    from annorm_cli.models.inpainting import load_narrower
    torch.manual_seed(0)
    narrow_config = dataclasses.replace(TINY, attention=attention, skips=True)
    narrow = InpaintGenerator(narrow_config).eval()
    for layer in narrow.modules():               # give the zero-started parts weights, so every path counts
        if hasattr(layer, "gamma"):
            torch.nn.init.constant_(layer.gamma, 0.7)
    for name, parameter in narrow.named_parameters():
        if ".skip_" in name:
            torch.nn.init.normal_(parameter, std=0.2)
    wide = InpaintGenerator(dataclasses.replace(narrow_config, quarter_channels=24)).eval()
    assert wide.refine_attention[0].conv.weight.shape == (24, 24, 3, 3)
    assert load_narrower(wide, narrow.state_dict()) == []
    x, m = torch.rand(2, 3, 24, 32) * 2 - 1, torch.from_numpy(random_mask(24, 32, 1))[None, None].float().repeat(2, 1, 1, 1)
    features = {}
    for model in (wide, narrow):   # the 1/4 features themselves, not only the (tanh-squashed) images
        for part in ("coarse_middle", "refine_attention", "refine_middle"):
            getattr(model, part).register_forward_hook(
                lambda layer, args, out, key=(model is wide, part): features.__setitem__(key, out))
    with torch.no_grad():
        for a, b in zip(wide(x, m), narrow(x, m)):
            assert (a - b).abs().max() < 1e-5
    for part in ("coarse_middle", "refine_attention", "refine_middle"):
        assert (features[True, part][:, :16] - features[False, part]).abs().max() < 1e-5, part
    # the new channels are alive (random weights of their own), only their readers start at zero
    assert wide.coarse_middle[0][0].weight[16:, :16].abs().sum() > 0
    assert wide.coarse_middle[0][0].weight[:, 16:].abs().sum() == 0
    with pytest.raises(BadInputError, match="Cannot widen"):
        load_narrower(narrow, wide.state_dict())


def test_a_run_can_widen_the_quarter_stage_of_the_model_it_starts_from(tmp_path, tiny_inpaint_weights):
    from annorm_cli.train import inpainting as trainer
    from annorm_cli.train.common import load_checkpoint
    from helpers import tiny_image_folder
    data = tiny_image_folder(tmp_path / "photos", per_class=3)
    options = trainer.InpaintOptions(data=str(data), steps=0, batch_size=2, crop=16, sample_every=10, log_every=1,
                                     init_from=str(tiny_inpaint_weights))
    wide = dataclasses.replace(TINY, quarter_channels=32)
    trainer.train(options, wide, tmp_path / "start", device=torch.device("cpu"))
    started = InpaintGenerator(wide).eval()
    started.load_state_dict(load_checkpoint(tmp_path / "start")["G"])
    trained, _ = weights.load(weights=tiny_inpaint_weights, task="inpaint")
    x, m = torch.rand(1, 3, 24, 32) * 2 - 1, torch.from_numpy(random_mask(24, 32, 1))[None, None].float()
    with torch.no_grad():
        assert (started(x, m)[1] - trained(x, m)[1]).abs().max() < 1e-5
    with pytest.raises(BadInputError, match="does not match"):      # narrower than the trained model
        trainer.train(options, dataclasses.replace(TINY, quarter_channels=8), tmp_path / "narrow", device=torch.device("cpu"))


def test_a_learning_rate_typed_on_resume_and_its_decay_reach_the_optimiser(tmp_path):
    from annorm_cli.train import inpainting as trainer
    from annorm_cli.train.common import learning_rate_scale, load_checkpoint
    from helpers import tiny_image_folder
    assert [learning_rate_scale(t, 4, 8) for t in (0, 4, 6, 8, 9)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert learning_rate_scale(10 ** 6, None, 8) == 1.0
    data = tiny_image_folder(tmp_path / "photos", per_class=3)
    options = trainer.InpaintOptions(data=str(data), steps=2, batch_size=2, crop=16, sample_every=10, log_every=1,
                                     lr=1e-3, adv_start=0)
    trainer.train(options, TINY, tmp_path / "run", device=torch.device("cpu"))
    resumed = dataclasses.replace(options, steps=4, lr=5e-4, lr_decay_start=2)
    trainer.train(resumed, TINY, tmp_path / "run", device=torch.device("cpu"), resume=load_checkpoint(tmp_path / "run"),
                  overrides=frozenset({"lr", "lr_decay_start"}))
    saved = load_checkpoint(tmp_path / "run")
    assert saved["opt_g"]["param_groups"][0]["lr"] == pytest.approx(5e-4 * 0.5)     # the last step, t = 3
    assert saved["opt_d"]["param_groups"][0]["lr"] == pytest.approx(4e-4 * 0.5)


def test_a_model_grown_from_another_counts_the_steps_and_time_of_both(tmp_path):
    from annorm_cli.train import inpainting as trainer
    from annorm_cli.train.common import load_checkpoint
    from helpers import tiny_image_folder
    data = tiny_image_folder(tmp_path / "photos", per_class=3)
    options = trainer.InpaintOptions(data=str(data), steps=3, batch_size=2, crop=16, sample_every=10, log_every=1)
    trainer.train(options, TINY, tmp_path / "one", device=torch.device("cpu"))
    first = trainer.export_generator(load_checkpoint(tmp_path / "one"), tmp_path / "one.safetensors", {})
    assert first["stages"] == [{"steps": 3, "train_wall_time_s": first["train_wall_time_s"], "init_from": None}]
    grown = dataclasses.replace(options, steps=1, init_from=str(tmp_path / "one.safetensors"))
    trainer.train(grown, dataclasses.replace(TINY, quarter_channels=24), tmp_path / "two", device=torch.device("cpu"))
    trainer.train(dataclasses.replace(grown, steps=2), TINY, tmp_path / "two", device=torch.device("cpu"),
                  resume=load_checkpoint(tmp_path / "two"))                   # resuming keeps the lineage
    saved = load_checkpoint(tmp_path / "two")
    second = trainer.export_generator(saved, tmp_path / "two.safetensors", {})
    assert second["steps"] == 2 and second["total_steps"] == 5
    assert [stage["steps"] for stage in second["stages"]] == [3, 2]
    assert second["stages"][1]["init_from"] == str(tmp_path / "one.safetensors")
    assert second["train_wall_time_s"] == first["train_wall_time_s"] + round(saved["wall_time"])
    card = weights.read_card(tmp_path / "two.json")
    assert card["stages"] == second["stages"]


def test_inference_scale_batches_scale_the_photo_and_draw_the_mask_on_all_of_it():
    from annorm_cli.train import inpainting as trainer
    photo = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 200, 300), dtype=np.uint8))
    options = trainer.InpaintOptions(batch_size=4, crop=32, inference_scale=True)
    images, masks = trainer.make_batch([photo], options, step=7, work_side=64)
    again, masks_again = trainer.make_batch([photo], options, step=7, work_side=64)
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 1, 32, 32)
    assert torch.equal(images, again) and torch.equal(masks, masks_again)
    assert set(masks.unique().tolist()) <= {0.0, 1.0} and images.abs().max() <= 1
    # the photo is scaled to a long side of 48-64 px, so a 32 px crop holds a third or more of it,
    # and the crop is smooth at that scale: no pixel-level noise of the 300 px original survives
    rng = torch.Generator().manual_seed(0)
    image, mask = trainer.inference_scale_crop(photo, 64, 32, rng, mask_seed=3)
    scaled = torch.nn.functional.interpolate(photo[None].float() / 127.5 - 1, size=(32, 48), mode="bilinear",
                                             antialias=True, align_corners=False)
    assert image.std() < 0.5 * (photo.float() / 127.5 - 1).std() and abs(image.std() - scaled.std()) < 0.1
    assert mask.shape == (1, 32, 32)


def test_cli_train_inpaint_widens_the_init_model_and_refuses_bad_widths(tmp_path, capsys, tiny_inpaint_weights):
    from annorm_cli.train.common import load_checkpoint
    from helpers import tiny_image_folder
    data = tiny_image_folder(tmp_path / "photos", per_class=3)
    common = ["train", "inpaint", "--data", data, "--init-from", tiny_inpaint_weights, "--steps", "1",
              "--batch-size", "2", "--crop", "16", "--quiet"]
    code, err = _run(capsys, *common, "--out", tmp_path / "wide", "--quarter-channels", "32")
    assert code == 0, err
    assert load_checkpoint(tmp_path / "wide")["model_config"]["quarter_channels"] == 32
    code, err = _run(capsys, *common, "--out", tmp_path / "zero", "--quarter-channels", "0")
    assert code == 2 and "--quarter-channels must be a positive integer" in err
    code, err = _run(capsys, *common, "--out", tmp_path / "narrow", "--quarter-channels", "8")
    assert code == 2 and "does not match the network being trained" in err and "Traceback" not in err
    assert not (tmp_path / "zero").exists() and not (tmp_path / "narrow" / "checkpoint.pt").exists()


class _SmearsTheKnownPixels(torch.nn.Module):
    """A stand-in network whose fill is a blur of the known pixels it is given: any hole content
    that leaks into them shows in the fill."""
    config = InpaintConfig(work_side=24)

    def forward(self, x, m):
        assert not torch.is_grad_enabled()              # inference builds no autograd graph
        smeared = torch.nn.functional.avg_pool2d(x * (1 - m), 5, 1, 2) * 4
        return smeared, smeared.clamp(-1, 1)


@pytest.mark.parametrize("max_side", [None, 200])   # the work side (24 px: downscaled), and native scale
def test_the_fill_does_not_depend_on_what_the_hole_held(max_side):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    mask = np.zeros((61, 83), bool)
    mask[20:41, 30:55] = True
    other = image.copy()
    other[mask] = 255                                   # an object to remove: its colour must not leak
    a = inpaint_array(_SmearsTheKnownPixels(), image, mask, max_side=max_side)
    b = inpaint_array(_SmearsTheKnownPixels(), other, mask, max_side=max_side)
    assert not np.array_equal(a[mask], image[mask])     # the stand-in does fill
    assert np.array_equal(a, b)


def test_downscale_known_averages_known_pixels_only():
    from annorm_cli.pipelines import downscale_known
    region = torch.full((1, 3, 40, 40), 0.25)
    hole = torch.zeros(1, 1, 40, 40)
    hole[..., 10:30, 10:30] = 1
    region[..., 10:30, 10:30] = 1.0                     # hole content far from the known value
    small = downscale_known(region, hole, [10, 10])
    known_small = torch.nn.functional.interpolate(1 - hole, size=[10, 10], mode="area") == 1
    torch.testing.assert_close(small[known_small.expand_as(small)], torch.full_like(small[known_small.expand_as(small)], 0.25))


def test_pull_push_keeps_known_values_and_fills_within_their_range():
    from annorm_cli.pipelines import pull_push
    torch.manual_seed(0)
    values = torch.rand(2, 3, 37, 50)
    weight = torch.from_numpy(np.stack([random_mask(37, 50, seed=s, ratio=(0.3, 0.4)) for s in (1, 2)]))[:, None]
    weight = 1 - weight.float()
    filled = pull_push(values, weight)
    known = weight.expand_as(values) == 1
    torch.testing.assert_close(filled[known], values[known])
    low = values.masked_fill(~known, 2).amin((2, 3), keepdim=True)
    high = values.masked_fill(~known, -1).amax((2, 3), keepdim=True)
    assert ((filled >= low - 1e-6) & (filled <= high + 1e-6)).all()     # a weighted average, never beyond
    constant = pull_push(torch.full_like(values, 0.3), weight)
    torch.testing.assert_close(constant, torch.full_like(values, 0.3))


class _PaintsOneColour(torch.nn.Module):
    """A stand-in network with a colour cast: its output is one grey everywhere."""
    config = InpaintConfig(work_side=64)

    def forward(self, x, m):
        grey = torch.full_like(x, 0.5)
        return grey, grey


@pytest.mark.parametrize("max_side", [None, 16])    # at native scale, and filled downscaled
def test_the_fill_is_corrected_by_the_networks_error_on_the_known_pixels(max_side):
    image = np.zeros((40, 48, 3), np.uint8)
    image[:] = (200, 60, 30)                            # a brick-red wall
    mask = np.zeros((40, 48), bool)
    mask[10:30, 12:36] = True
    raw = inpaint_array(_PaintsOneColour(), image, mask, max_side=max_side, match=False, texture=False)
    matched = inpaint_array(_PaintsOneColour(), image, mask, max_side=max_side, texture=False)
    assert (raw[mask] == 191).all()                     # the network's grey: (0.5 + 1) * 127.5
    assert np.abs(matched[mask].astype(int) - image[mask]).max() <= 1
    assert np.array_equal(matched[~mask], image[~mask])


def test_the_reconstruction_loss_weights_hole_and_valid_pixels_by_l1_or_l2():
    from annorm_cli.train import inpainting as trainer
    output = torch.tensor([0.5, -0.5, 0.25, 0.0]).view(1, 1, 2, 2)
    target = torch.zeros(1, 1, 2, 2)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    l1 = trainer.InpaintOptions(hole_weight=6.0, valid_weight=1.0)
    # by hand: (6 * 0.5 + 1 * 0.5 + 6 * 0.25 + 1 * 0) / 4 and (6 * 0.25 + 1 * 0.25 + 6 * 0.0625 + 0) / 4
    assert trainer.reconstruction_loss(output, target, mask, l1).item() == pytest.approx(5.0 / 4)
    l2 = dataclasses.replace(l1, reconstruction="l2")
    assert trainer.reconstruction_loss(output, target, mask, l2).item() == pytest.approx(2.125 / 4)
    # rgb: per pixel, the length of the error vector over the channels (here 3 x the same error);
    # the exact pixel (error 0, weight 1) adds sqrt(1e-6), the loss's guard against a zero length
    rgb = dataclasses.replace(l1, reconstruction="rgb")
    colour = trainer.reconstruction_loss(output.expand(1, 3, 2, 2), target.expand(1, 3, 2, 2), mask, rgb)
    assert colour.item() == pytest.approx((math.sqrt(3) * 5.0 + 1e-3) / 4, rel=1e-5)


@pytest.mark.parametrize("options,message", [
    (["--d-layers", "9"], "--d-layers must be from 1 to 8, got 9."),
    (["--d-layers", "0"], "--d-layers must be from 1 to 8, got 0."),
    (["--feature-weight", "-1"], "--feature-weight must be 0 or more, got -1.0."),
    (["--rec-weight", "nan"], "--rec-weight must be a finite number, got nan."),
    (["--d-channels", "0"], "--d-channels must be a positive integer, got 0."),
])
def test_cli_train_inpaint_refuses_bad_realism_options(tmp_path, capsys, options, message):
    code, err = _run(capsys, "train", "inpaint", "--out", tmp_path / "run", *options, "--quiet")
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_the_adversarial_losses_count_the_hole_cells_only():
    from annorm_cli.train import inpainting as trainer
    values = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)       # one value per 4 x 4 cell
    masks = torch.zeros(1, 1, 8, 8)
    masks[:, :, :4, :4] = 1                                             # cell 0 all hole
    masks[:, :, :4, 4:6] = 1                                            # cell 1 half hole
    # by hand: (1 * 1 + 0.5 * 2) / (1 + 0.5)
    assert trainer.hole_mean(values, masks).item() == pytest.approx(2.0 / 1.5)
    assert trainer.hole_mean(values, torch.zeros_like(masks)).item() == 0.0

    class Constant(torch.nn.Module):                                  # D: the image's mean per 4 x 4 cell
        def forward(self, image, mask):
            return [torch.nn.functional.avg_pool2d(image.mean(1, keepdim=True), 4)]
    images = torch.full((1, 3, 8, 8), 0.25)
    completed = torch.full((1, 3, 8, 8), -2.0)
    # real cells at 0.25: relu(1 - 0.25) = 0.75; fake cells at -2: relu(1 - 2) = 0
    assert trainer.discriminator_loss(Constant(), images, completed, masks).item() == pytest.approx(0.75)
    adversarial, _ = trainer.generator_adversarial(Constant(), images, completed, masks)
    assert adversarial.item() == pytest.approx(2.0)


def test_feature_matching_is_the_mean_l1_of_the_features_below_the_logits_over_the_hole():
    from annorm_cli.train import inpainting as trainer

    class TwoLayers(torch.nn.Module):                                 # features: the image, then its 2 x 2 means
        def forward(self, image, mask):
            return [image, torch.nn.functional.avg_pool2d(image, 2), image.mean((1, 2, 3), keepdim=True)]
    masks = torch.zeros(1, 1, 4, 4)
    masks[:, :, :2, :2] = 1
    images = torch.zeros(1, 1, 4, 4)
    completed = images.clone()
    completed[:, :, :2, :2] = 0.5                                       # the fill, in the hole
    completed[:, :, 3, 3] = 9.0                                         # a known pixel: outside the hole, not counted
    _, matching = trainer.generator_adversarial(TwoLayers(), images, completed, masks)
    # layer 1: 0.5 over the 4 hole pixels; layer 2: the hole's cell holds 0.5, the others weigh 0
    assert matching.item() == pytest.approx((0.5 + 0.5) / 2)


def test_cli_train_inpaint_refuses_an_unknown_reconstruction_loss(tmp_path, capsys):
    code, err = _run(capsys, "train", "inpaint", "--out", tmp_path / "run", "--reconstruction", "l3", "--quiet")
    assert code == 2 and "Unknown reconstruction loss 'l3'; choose l1, l2, rgb." in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option,suffix", [("--json", ".json"), ("--compare-out", ".safetensors")])
def test_evaluate_inpaint_refuses_to_write_over_the_model(tiny_inpaint_weights, capsys, option, suffix):
    target = tiny_inpaint_weights.with_suffix(suffix)
    before = target.read_bytes()
    code, err = _run(capsys, "evaluate", "inpaint", "--weights", tiny_inpaint_weights, option, target)
    assert code == 2 and "is the model's own file; write the results elsewhere." in err and "Traceback" not in err
    assert target.read_bytes() == before


def test_a_gated_convolution_is_elu_of_its_features_times_the_sigmoid_of_its_gates():
    from annorm_cli.models.inpainting import GatedConv
    torch.manual_seed(0)
    layer = GatedConv(3, 2, k=3, stride=1, dilation=2)
    x = torch.randn(1, 3, 9, 11)
    weight, bias = layer.conv.weight, layer.conv.bias                     # [4, 3, 3, 3]: 2 feature, 2 gate filters
    features = torch.nn.functional.conv2d(x, weight[:2], bias[:2], padding=2, dilation=2)
    gates = torch.nn.functional.conv2d(x, weight[2:], bias[2:], padding=2, dilation=2)
    expected = torch.where(features > 0, features, features.exp() - 1) / (1 + (-gates).exp())
    assert torch.allclose(layer(x), expected, atol=1e-6) and layer(x).shape == (1, 2, 9, 11)
    gated = InpaintGenerator(dataclasses.replace(TINY, convolution="gated"))
    assert sum(p.numel() for p in gated.parameters()) > sum(p.numel() for p in InpaintGenerator(TINY).parameters())
    with pytest.raises(BadInputError, match="cannot be widened"):          # features and gates share one weight
        from annorm_cli.models.inpainting import load_narrower
        load_narrower(InpaintGenerator(dataclasses.replace(TINY, convolution="gated", quarter_channels=24)),
                      gated.state_dict())
    with pytest.raises(BadInputError, match="Unknown convolution 'dense'"):
        InpaintConfig(convolution="dense")


def test_a_card_without_a_convolution_field_is_a_plain_network():
    config = InpaintConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "convolution"})
    assert config.convolution == "plain" and config == TINY


@pytest.mark.parametrize("attention", ["an", "sa"])
def test_switching_attention_off_makes_each_attention_layer_the_identity(attention):
    from annorm_cli.nn.blocks import switch_off_attention
    torch.manual_seed(0)
    model = InpaintGenerator(dataclasses.replace(TINY, attention=attention)).eval()
    for layer in model.modules():
        if hasattr(layer, "gamma"):
            torch.nn.init.constant_(layer.gamma, 0.7)
    blocks = model.refine_attention
    x = torch.randn(1, TINY.quarter, 8, 8)
    assert not torch.allclose(blocks[0].attention(x), x)
    assert switch_off_attention(model) == TINY.attention_blocks
    assert torch.equal(blocks[0].attention(x), x)
    assert switch_off_attention(InpaintGenerator(dataclasses.replace(TINY, attention="none"))) == 0


def test_evaluate_inpaint_checks_its_outputs_before_any_work(tiny_inpaint_weights, tmp_path, capsys):
    existing = tmp_path / "results.json"
    existing.write_text("mine")
    code, err = _run(capsys, "evaluate", "inpaint", "--weights", tiny_inpaint_weights, "--json", existing,
                     "--photos", tmp_path / "no-photos-here")
    assert code == 2 and "already exists; pass --overwrite" in err and existing.read_text() == "mine"
    code, err = _run(capsys, "evaluate", "inpaint", "--weights", tiny_inpaint_weights,
                     "--compare-out", tmp_path / "missing" / "compare.png")
    assert code == 2 and "the folder" in err and "does not exist" in err and "Traceback" not in err
    code, err = _run(capsys, "evaluate", "inpaint", "--weights", tiny_inpaint_weights, "--record", "--attention-off")
    assert code == 2 and "cannot be combined" in err


def test_evaluate_inpaint_writes_json_and_scores_the_network_without_attention(tmp_path, capsys):
    import json
    torch.manual_seed(0)
    model = InpaintGenerator(TINY).eval()
    gammas = [p for name, p in model.named_parameters() if name.endswith("gamma")]
    assert gammas
    with torch.no_grad():                                 # AN switched on (it starts as the identity, gamma = 0)
        for gamma in gammas:
            gamma.fill_(3.0)
    tiny_inpaint_weights = tmp_path / "an-on.safetensors"
    weights.save(model, "InpaintGenerator", TINY.to_dict(), tiny_inpaint_weights, {"task": "inpaint"})
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "photos" / "a.png")
    out = tmp_path / "r.json"
    fast = ("--no-perceptual", "--baselines", "telea,ns", "--masks-per-photo", "1", "--no-texture", "--no-match")
    code, err = _run(capsys, "evaluate", "inpaint", "--weights", tiny_inpaint_weights, "--photos",
                     tmp_path / "photos", "--json", out, "--attention-off", *fast)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["attention_off"] is True
    assert set(result["buckets"]) == {"10-20%", "20-30%", "30-40%", "objects", "flat"}
    assert set(result["buckets"]["objects"]) == {"telea", "ns", "annorm"}
    per_fill = result["per_fill"]["20-30%"]["annorm"]["psnr"]       # one photo, one mask: its value is the mean
    assert len(per_fill) == 1 and per_fill[0] == pytest.approx(result["buckets"]["20-30%"]["annorm"]["psnr"])
    assert len(result["per_fill"]["flat"]["telea"]["psnr"]) == 2      # a box and an ellipse
    off = result["buckets"]["20-30%"]["annorm"]["psnr"]
    code, err = _run(capsys, "evaluate", "inpaint", "--weights", tiny_inpaint_weights, "--photos",
                     tmp_path / "photos", "--json", out, "--overwrite", "--buckets", "20-30%", *fast)
    assert code == 0, err
    on = json.loads(out.read_text())
    assert on["attention_off"] is False
    assert abs(on["buckets"]["20-30%"]["annorm"]["psnr"] - off) > 0.01          # switching AN off changed the fill
    assert on["buckets"]["20-30%"]["telea"]["psnr"] == result["buckets"]["20-30%"]["telea"]["psnr"]


def test_the_refinement_stage_refines_a_given_proposal_instead_of_the_coarse_guess():
    torch.manual_seed(0)
    model = InpaintGenerator(TINY).eval()
    image, mask = torch.rand(2, 3, 16, 16) * 2 - 1, (torch.rand(2, 1, 16, 16) > 0.6).float()
    proposal = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        coarse, refined = model(image, mask, proposal)
        _, plain = model(image, mask)
        _, other = model(image, mask, -proposal)
    assert coarse is proposal and refined.shape == image.shape
    assert not torch.equal(refined, plain) and not torch.equal(refined, other)   # the proposal is what is refined
    with pytest.raises(BadInputError, match="proposal must be shaped like the image"):
        model(image, mask, proposal[:, :, :8])


def test_patchmatch_proposals_keep_known_pixels_and_repeat_for_a_seed():
    from annorm_cli.train.inpainting import patchmatch_proposals
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32))).float() / 127.5 - 1
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:20, 10:24] = 1
    a = patchmatch_proposals(images, masks, 3)
    assert torch.allclose(a * (1 - masks), images * (1 - masks), atol=1e-6)
    assert torch.equal(a, patchmatch_proposals(images, masks, 3))
    assert not torch.equal(a, patchmatch_proposals(images, masks, 4))
    from annorm_cli.evaluate.inpainting import patchmatch_inpaint       # threads give what one at a time gives
    alone = patchmatch_inpaint(((images[1] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy(),
                               masks[1, 0].numpy() > 0, seed=3)
    assert torch.equal(a[1], torch.from_numpy(alone).permute(2, 0, 1).float() / 127.5 - 1)


def test_cli_train_inpaint_refuses_an_unknown_proposal(tmp_path, capsys):
    code, err = _run(capsys, "train", "inpaint", "--out", tmp_path / "run", "--proposal", "telea", "--quiet")
    assert code == 2 and "Unknown proposal 'telea'; choose none, patchmatch." in err
    assert not (tmp_path / "run").exists()


def test_cli_train_inpaint_refuses_a_correction_blur_without_a_proposal(tmp_path, capsys):
    code, err = _run(capsys, "train", "inpaint", "--out", tmp_path / "run", "--correction-blur", "-1", "--quiet")
    assert code == 2 and "--correction-blur must be 0 or more, got -1.0." in err
    code, err = _run(capsys, "train", "inpaint", "--out", tmp_path / "run", "--correction-blur", "2", "--quiet")
    assert code == 2 and "--correction-blur smooths the correction of a proposal: it needs --proposal patchmatch." in err
    assert not (tmp_path / "run").exists()


def test_a_smoothed_correction_keeps_the_proposal_s_texture():
    from annorm_cli.train.inpainting import fill
    torch.manual_seed(0)
    model = InpaintGenerator(TINY).eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    proposal = image * (1 - mask) + (torch.rand(1, 3, 32, 32) * 2 - 1) * mask              # a noisy fill
    with torch.no_grad():
        _, free = fill(model, image, mask, proposal)
        _, smooth = fill(model, image, mask, proposal, correction_blur=3.0)
    correction = (smooth - proposal) * mask
    assert torch.equal(free, model(image, mask, proposal)[1])
    assert torch.equal(smooth * (1 - mask), proposal * (1 - mask))                          # known pixels: the proposal's
    step = lambda x: (x[..., 1:, :] - x[..., :-1, :])[..., 9:23, 8:24].abs().mean()       # noqa: E731
    assert step(correction) < 0.05 * step(proposal) and step(correction) < 0.2 * step(free - proposal)


def test_low_pass_in_hole_is_a_normalised_smoothing_over_the_hole():
    from annorm_cli.pipelines.inpainting import low_pass_in_hole
    mask = torch.zeros(1, 1, 20, 30)
    mask[..., 5:15, 3:12] = 1
    values = torch.full((1, 3, 20, 30), 7.0)
    smooth = low_pass_in_hole(values, mask, 2.5)
    assert torch.allclose(smooth, 7.0 * mask)                                  # a constant stays, to the hole's edge
    noisy = low_pass_in_hole(torch.randn(1, 3, 20, 30), mask, 2.5)
    assert (noisy * (1 - mask)).abs().max() == 0 and noisy[mask.expand(1, 3, -1, -1) > 0].std() < 0.5
    assert torch.equal(low_pass_in_hole(values, mask, 0), values * mask)


def test_the_pipeline_can_refine_patchmatch_s_fill_and_keeps_known_pixels():
    from annorm_cli.pipelines import inpaint_array
    torch.manual_seed(0)
    model = InpaintGenerator(TINY).eval()
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:44] = True
    refined = inpaint_array(model, image, mask, texture=False, proposal=True)
    assert np.array_equal(refined[~mask], image[~mask])
    assert np.array_equal(refined, inpaint_array(model, image, mask, texture=False, proposal=True))
    assert not np.array_equal(refined, inpaint_array(model, image, mask, texture=False))
