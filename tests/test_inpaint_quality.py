"""The parts of inpainting that make fills look real: masks people draw, the perceptual measure,
the texture step, PatchMatch as a baseline, and flat regions that stay flat."""
import sys

import numpy as np
import pytest
import torch

from annorm_cli.errors import AnnormError
from annorm_cli.evaluate import inpainting as metrics
from annorm_cli.evaluate import perceptual
from annorm_cli.masks import OBJECT_RATIO, flat_region_mask, hole_depth, object_mask
from annorm_cli.synthesis import synthesize


# ----------------------------------------------------------------------------- masks
def test_object_masks_are_deterministic_solid_and_within_their_ratio():
    ratios = [object_mask(240, 320, seed).mean() for seed in range(60)]
    low, high = OBJECT_RATIO
    assert all(low * 0.95 <= r <= high * 1.05 for r in ratios)
    assert np.array_equal(object_mask(240, 320, 7), object_mask(240, 320, 7))
    assert not np.array_equal(object_mask(240, 320, 7), object_mask(240, 320, 8))
    assert min(hole_depth(object_mask(240, 320, seed)) for seed in range(20)) >= 8   # solid, not strokes


def test_hole_depth_counts_erosions_to_the_nearest_known_pixel():
    mask = np.zeros((60, 80), bool)
    mask[10:31, 20:41] = True                           # 21 x 21: the centre is 11 erosions deep
    assert hole_depth(mask) == 11
    mask[:] = False
    mask[5:8, :] = True                                 # a 3 px line: 2
    assert hole_depth(mask) == 2


def test_flat_region_mask_covers_the_smoothest_part_of_the_photo():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)
    image[:64, 80:] = 120                               # one smooth quarter: top right
    mask = flat_region_mask(image)
    rows, cols = np.nonzero(mask)
    assert abs(mask.mean() - 1 / 16) < 0.01
    assert rows.max() < 64 and cols.min() >= 80
    ellipse = flat_region_mask(image, shape="ellipse")
    assert ellipse.sum() < mask.sum() and not ellipse[~mask].any()


# ----------------------------------------------------------------------------- the perceptual measure
def _kid_by_hand(a, b, paired):
    k = lambda x, y: (float(np.dot(x, y)) / len(x) + 1) ** 3  # noqa: E731
    n, m = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    bb = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    if paired:
        ab = sum(k(a[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    else:
        ab = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return aa + bb - 2 * ab


def test_kid_against_hand_computation_and_of_a_set_against_itself():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(1.0, 1.0, size=(5, 3))
    assert perceptual.kid(a, b) == pytest.approx(_kid_by_hand(a, b, False))
    assert perceptual.kid(a, b, paired=True) == pytest.approx(_kid_by_hand(a, b, True))
    assert perceptual.kid(a, a, paired=True) == pytest.approx(0.0, abs=1e-12)
    features = rng.normal(size=(400, 8))
    shifted = rng.normal(0.5, 1.0, size=(400, 8))
    assert perceptual.kid(features[:200], features[200:]) == pytest.approx(0.0, abs=0.02)  # same law: about 0
    assert perceptual.kid(features, shifted) > 0.1
    assert perceptual.crop_fid(features, features) == pytest.approx(0.0, abs=1e-6)


def test_kid_folds_group_crops_by_photo_and_give_a_standard_error():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    groups = np.repeat(np.arange(10), 4)
    folds = perceptual.kid_per_fold(a, b, groups, folds=5)
    assert len(folds) == 5
    assert folds[0] == pytest.approx(perceptual.kid(a[groups % 5 == 0], b[groups % 5 == 0], paired=True))
    mean, error = perceptual.mean_and_error(folds)
    assert mean == pytest.approx(folds.mean()) and error == pytest.approx(folds.std(ddof=1) / np.sqrt(5))


def test_the_hole_crop_is_a_square_around_the_hole_inside_the_image():
    mask = np.zeros((300, 400), bool)
    mask[100:140, 200:280] = True                       # 40 x 80: grown by 1/4 of 80 each side -> 120
    assert perceptual.hole_crop_box(mask) == (60, 180, 120, 120)
    mask[:] = False
    mask[280:, 380:] = True                             # in the corner: shifted inside
    top, left, h, w = perceptual.hole_crop_box(mask)
    assert (top + h, left + w) == (300, 400) and h == w
    mask[:] = False
    mask[:, 10:390] = True                              # wider than the photo is high: the short side
    assert perceptual.hole_crop_box(mask)[2:] == (300, 300)
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert perceptual.hole_crop(image, (0, 0, 50, 50)).shape == (299, 299, 3)


# ----------------------------------------------------------------------------- the texture step
def _stripes(height=96, width=128, period=8):
    image = np.zeros((height, width, 3), np.uint8)
    image[:, (np.arange(width) // (period // 2)) % 2 == 1] = (200, 40, 40)
    return image


def test_synthesis_keeps_known_pixels_is_seeded_and_copies_sharp_texture():
    image = torch.from_numpy(_stripes()).permute(2, 0, 1).float()
    hole = torch.zeros(96, 128, dtype=torch.bool)
    hole[30:70, 40:90] = True
    guide = image.clone()
    guide[:, hole] = image[:, ~hole].mean(1, keepdim=True)        # a blurred guess: the mean colour
    out = synthesize(image, hole, guide, 0.5, seed=3)
    assert torch.equal(out[:, ~hole], image[:, ~hole])
    assert torch.equal(out, synthesize(image, hole, guide, 0.5, seed=3))
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 96, 128))).float()
    assert not torch.equal(synthesize(noise, hole, guide, 0.5, seed=3), synthesize(noise, hole, guide, 0.5, seed=4))
    filled = out[:, hole]                                          # [3, n]
    # texture, not blur: nearly every filled pixel is one of the two stripe colours
    near = torch.minimum((filled - torch.tensor([0., 0, 0])[:, None]).abs().amax(0),
                         (filled - torch.tensor([200., 40, 40])[:, None]).abs().amax(0))
    assert (near < 30).float().mean() > 0.9
    assert filled[0].std() > 80                                    # both colours, in about equal parts


def test_inpaint_with_texture_changes_only_hole_pixels_and_repeats_for_a_seed():
    from annorm_cli.models.inpainting import InpaintGenerator
    from annorm_cli.pipelines import inpaint_array
    from helpers import TINY_INPAINT
    torch.manual_seed(0)
    model = InpaintGenerator(TINY_INPAINT).eval()
    image = _stripes(80, 100)
    mask = object_mask(80, 100, 4)
    a = inpaint_array(model, image, mask, seed=1)
    assert np.array_equal(a[~mask], image[~mask])
    assert np.array_equal(a, inpaint_array(model, image, mask, seed=1))
    assert not np.array_equal(a, inpaint_array(model, image, mask, seed=2))       # another seed, another fill
    assert not np.array_equal(a, inpaint_array(model, image, mask, texture=False))


# ----------------------------------------------------------------------------- flat regions
def _sky(height=240, width=360):
    """A smooth sky: a vertical blue gradient with a faint horizontal one."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    sky = np.stack([90 + 60 * y / height + 5 * x / width, 140 + 50 * y / height, 230 - 20 * y / height], -1)
    return sky.round().astype(np.uint8)


@pytest.mark.parametrize("shape", ["box", "ellipse"])
def test_the_shipped_model_fills_a_flat_sky_smoothly_in_its_own_colour(shape):
    pytest.importorskip("cv2")
    from annorm_cli.pipelines import inpaint
    image = _sky()
    mask = flat_region_mask(image, shape=shape)
    telea = metrics.psnr_in_hole(metrics.opencv_inpaint(image, mask, "telea"), image, mask)
    for max_side in (None, 64, 1024):
        filled = inpaint(image, mask, max_side=max_side, device="cpu")
        assert metrics.psnr_in_hole(filled, image, mask) >= telea - 0.5, max_side


# ----------------------------------------------------------------------------- PatchMatch
def test_patchmatch_missing_is_one_clear_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "patchmatch", None)            # import patchmatch -> ImportError
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(AnnormError, match="needs pypatchmatch \\(a dependency of annorm\\)"):
        metrics.baseline_fill("patchmatch", image, np.eye(16, dtype=bool))


def test_patchmatch_baseline_keeps_known_pixels_and_repeats():
    pytest.importorskip("patchmatch")
    image = _stripes(64, 80)
    mask = object_mask(64, 80, 2)
    out = metrics.patchmatch_inpaint(image, mask)
    assert np.array_equal(out[~mask], image[~mask]) and np.array_equal(out, metrics.patchmatch_inpaint(image, mask))


def test_evaluation_masks_per_bucket():
    image = _sky(120, 160)
    assert len(metrics.evaluation_masks(image, "flat", 0, 8)) == 2
    objects = metrics.evaluation_masks(image, "objects", 3, 4)
    assert len(objects) == 4 and all(0.09 < m.mean() < 0.27 for m in objects)
    strokes = metrics.evaluation_masks(image, "20-30%", 3, 2)
    from annorm_cli.masks import random_mask
    assert np.array_equal(strokes[0], random_mask(120, 160, 1000 + 3, ratio=(0.2, 0.3)))   # the earlier protocol's mask


@pytest.mark.parametrize("seed", [-1, 2 ** 63, 1.5, "3"])
def test_a_bad_texture_seed_is_one_clear_error(seed):
    from annorm_cli.errors import BadInputError
    from annorm_cli.models.inpainting import InpaintGenerator
    from annorm_cli.pipelines import inpaint_array
    from helpers import TINY_INPAINT
    image = _stripes(32, 32)
    with pytest.raises(BadInputError, match="The seed must be an integer from 0 to 2\\*\\*63 - 1"):
        inpaint_array(InpaintGenerator(TINY_INPAINT).eval(), image, object_mask(32, 32, 0), seed=seed)


def test_training_can_draw_object_masks_for_a_share_of_the_batch():
    from annorm_cli.masks import random_mask
    from annorm_cli.train.inpainting import TRAINING_OBJECT_RATIO, training_mask
    assert all(np.array_equal(training_mask(64, 64, s, 0.0), random_mask(64, 64, s)) for s in range(5))
    as_object = lambda s: object_mask(64, 64, s, TRAINING_OBJECT_RATIO)  # noqa: E731
    objects = [np.array_equal(training_mask(64, 64, s, 0.5), as_object(s)) for s in range(200)]
    assert 0.4 < np.mean(objects) < 0.6
    assert all(np.array_equal(training_mask(64, 64, s, 1.0), as_object(s)) for s in range(5))
    shares = [training_mask(64, 64, s, 1.0).mean() for s in range(200)]
    assert min(shares) < 0.08 and max(shares) > 0.27                    # objects of 5-30% of the photo


def test_thin_regions_take_the_network_fill_deep_ones_the_texture_and_known_pixels_stay():
    from annorm_cli.pipelines.inpainting import network_where_thin, texture_share
    mask = np.zeros((40, 70), bool)
    mask[5:35, 5:35] = True                                  # a box: 15 px deep
    mask[18:21, 35:68] = True                                # a 3 px stroke leaving it
    share = texture_share(mask, 4)
    assert (share[~mask] == 0).all()
    assert (share[5:35, 5:35] == 1).all()                    # the box whole, its rim included
    assert (share[18:21, 44:68] == 0).all()                  # the stroke beyond the ramp
    # the ramp where they meet: twice the share of the 9 x 9 square that is texture region
    # (the box's columns 31-34 seen from column 35: 4 of 9 columns, then 3, 2, 1, 0)
    assert np.allclose(share[19, 35:40], [2 * c * 9 / 81 for c in (4, 3, 2, 1, 0)])
    rng = np.random.default_rng(0)
    known = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    network = np.where(mask[..., None], np.uint8(10), known)
    textured = np.where(mask[..., None], np.uint8(250), known)
    out = network_where_thin(network, textured, mask, depth=4)
    assert np.array_equal(out[~mask], known[~mask])
    assert (out[5:35, 5:35] == 250).all() and (out[18:21, 44:68] == 10).all()
    assert np.array_equal(out, network_where_thin(network, textured, mask, depth=4))
    assert np.array_equal(network_where_thin(network, textured, mask, depth=0), textured)


# ----------------------------------------------------------------------------- object holes: PatchMatch
def test_object_holes_are_told_from_strokes_by_their_shape():
    from annorm_cli.masks import random_mask
    from annorm_cli.pipelines.inpainting import is_object_hole
    assert all(is_object_hole(object_mask(120, 160, seed)) for seed in range(40))
    yy, xx = np.mgrid[:120, :160]
    assert is_object_hole((yy - 60) ** 2 + (xx - 80) ** 2 < 30 ** 2)              # a disc: 0.16
    line = np.zeros((120, 160), bool)
    line[50:56, 10:150] = True                                                     # 6 x 140: 3^2 / 840
    assert not is_object_hole(line)
    bent = np.zeros((120, 160), bool)
    bent[40:80, 30:50] = bent[40:45, 50:130] = True                               # an L: deep enough, hull half empty
    assert not is_object_hole(bent)
    assert is_object_hole(((yy - 60) ** 2 + (xx - 40) ** 2 < 20 ** 2) | ((yy - 60) ** 2 + (xx - 120) ** 2 < 20 ** 2))
    assert not is_object_hole(((yy - 60) ** 2 + (xx - 40) ** 2 < 20 ** 2) | line)  # a disc and a stroke
    specks = np.zeros((120, 160), bool)
    specks[::4, ::4] = True                                                        # 1,200 solid specks: speckle
    assert is_object_hole(specks[:8, :32]) and not is_object_hole(specks)         # 16 parts; 1,200
    strokes = [is_object_hole(random_mask(120, 160, seed, (0.1, 0.2))) for seed in range(40)]
    assert sum(strokes) <= 2                         # free-form strokes (with their boxes) are not objects


def test_hole_parts_and_solidity():
    from annorm_cli.masks import hole_parts, random_mask, solidity
    mask = np.zeros((40, 60), bool)
    mask[2:10, 2:12] = True                                                        # a box of 80
    mask[10, 12] = True                                                            # touches it diagonally
    mask[20:30, 30:35] = True                                                      # a second part, 50
    mask[35, 50:58] = True                                                         # a third, 8
    def pasted(parts, shape):                                                      # each part back in place, counted
        canvas = np.zeros(shape, int)
        for top, left, part in parts:
            canvas[top:top + part.shape[0], left:left + part.shape[1]] += part
        return canvas
    parts = hole_parts(mask)
    assert [int(p.sum()) for _, _, p in parts] == [81, 50, 8]
    assert [(top, left, p.shape) for top, left, p in parts] == [(2, 2, (9, 11)), (20, 30, (10, 5)), (35, 50, (1, 8))]
    assert np.array_equal(pasted(parts, mask.shape), mask)
    assert hole_parts(np.zeros((5, 5), bool)) == []
    strokes = random_mask(96, 128, 3)
    assert np.array_equal(pasted(hole_parts(strokes), strokes.shape), strokes)
    assert solidity(parts[1][2]) == 1.0                                            # a box
    triangle = np.tril(np.ones((50, 50), bool))                 # 1275 px; hull: the square less (1,0)-(50,0)-(50,49)
    assert abs(solidity(triangle) - 1275 / (2500 - 49 * 49 / 2)) < 1e-9
    ring = np.ones((30, 30), bool)
    ring[5:25, 5:25] = False
    assert abs(solidity(ring) - 500 / 900) < 1e-9


def _textured_photo(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    rng = np.random.default_rng(3)
    base = np.stack([120 + 60 * np.sin(xx / 5.0), 100 + 50 * np.cos(yy / 7.0), 90 + 0 * xx], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("side", [None, 48])
def test_patchmatch_photo_changes_only_the_hole_and_repeats_its_bits(monkeypatch, side):
    from annorm_cli.pipelines import inpainting as pipeline
    if side is not None:
        monkeypatch.setattr(pipeline, "PATCHMATCH_PIXELS", 96 * 128 - 1)   # the large-photo path:
        monkeypatch.setattr(pipeline, "PATCHMATCH_SIDE", side)              # filled at 48 px, then texture
    image = _textured_photo(96, 128)
    mask = object_mask(96, 128, 4)
    out = pipeline.patchmatch_photo(image, mask, seed=0)
    assert np.array_equal(out[~mask], image[~mask])
    assert np.array_equal(out, pipeline.patchmatch_photo(image, mask, seed=0))
    assert not np.array_equal(out, pipeline.patchmatch_photo(image, mask, seed=1))
    hole = out[mask].astype(float)
    assert abs(hole.mean() - image[~mask].mean()) < 25 and hole.std() > 0.5 * image[~mask].std()   # texture, not a blur


def _tiny_inpainter():
    from annorm_cli.models.inpainting import InpaintConfig, InpaintGenerator
    torch.manual_seed(0)
    return InpaintGenerator(InpaintConfig(channels=4, n_entities=4, dilations=(2,), attention_blocks=1,
                                          work_side=64)).eval()


def test_an_object_hole_is_patchmatch_except_in_its_thin_regions():
    from annorm_cli.pipelines import inpainting as pipeline
    from annorm_cli.pipelines.inpainting import NETWORK_DEPTH, inpaint_array, texture_share
    model = _tiny_inpainter()
    image = _textured_photo(96, 128)
    mask = np.zeros((96, 128), bool)
    mask[20:76, 30:86] = True                                # a box, 28 px deep
    mask[46:49, 86:126] = True                               # a 3 px wire leaving it
    assert pipeline.is_object_hole(mask)
    out = inpaint_array(model, image, mask, seed=2)
    share = texture_share(mask, NETWORK_DEPTH)
    network, _ = pipeline.network_fill(model, image, mask)
    deep, thin = share == 1, mask & (share == 0)
    assert np.array_equal(out[deep], pipeline.patchmatch_photo(image, mask, seed=2)[deep])
    assert thin.sum() > 50 and np.array_equal(out[thin], network[thin])
    assert np.array_equal(out[~mask], image[~mask])
    assert np.array_equal(out, inpaint_array(model, image, mask, seed=2))
