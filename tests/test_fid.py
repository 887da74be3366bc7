import numpy as np
import pytest

from annorm_cli.evaluate.fid import frechet_distance, statistics


def test_fid_of_a_set_against_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 16))
    mu, sigma = statistics(features)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_fid_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # commuting (diagonal) covariances: tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.5, 2.0, d), rng.uniform(0.5, 2.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # a general pair against scipy-free brute force: sqrtm via eigen-decomposition of S1 S2
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    s1, s2 = q @ np.diag(a) @ q.T, rng.normal(size=(d, d))
    s2 = s2 @ s2.T + np.eye(d)
    values = np.linalg.eigvals(s1 @ s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(values.real))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_from_samples_converges_to_the_population_value():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(20000, 3))
    y = rng.normal(0.5, 2.0, size=(20000, 3))
    expected = 3 * 0.5 ** 2 + 3 * (1 - 2) ** 2
    assert frechet_distance(*statistics(x), *statistics(y)) == pytest.approx(expected, rel=0.05)


def test_per_class_reference_is_computed_once_and_cached(tmp_path, monkeypatch):
    import torch
    from torch import nn

    from annorm_cli.evaluate import fid
    from helpers import tiny_image_folder
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path / "cache"))
    root = tiny_image_folder(tmp_path / "data")
    (root / "train").rename(root / "test")
    network = torch.jit.script(nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()))     # 12 features
    first = fid.per_class_reference(root, network)
    assert sorted(first) == [0, 1] and first[0][0].shape == (12,) and first[0][1].shape == (12, 12)
    calls = []
    monkeypatch.setattr(fid, "inception_features", lambda *a, **k: calls.append(1))
    again = fid.per_class_reference(root, network)
    assert not calls and np.array_equal(again[1][1], first[1][1])


def test_per_class_cache_follows_the_data_contents_not_its_copy(tmp_path, monkeypatch):
    import shutil

    import torch
    from torch import nn

    from annorm_cli.evaluate import fid
    from helpers import tiny_image_folder
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path / "cache"))
    root = tiny_image_folder(tmp_path / "data")
    (root / "train").rename(root / "test")
    network = torch.jit.script(nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()))
    first = fid.per_class_reference(root, network)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)                    # a fresh copy: new paths and mtimes, same bytes
    calls = []
    real = fid.inception_features
    monkeypatch.setattr(fid, "inception_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = fid.per_class_reference(copy, network)
    assert not calls and np.array_equal(again[0][0], first[0][0])
    image = sorted((copy / "test").glob("*/*"))[0]
    from PIL import Image
    Image.new("RGB", Image.open(image).size, (255, 0, 0)).save(image)   # changed contents: recomputed
    changed = fid.per_class_reference(copy, network)
    assert calls
    assert not all(np.array_equal(changed[c][0], first[c][0]) for c in first)


def test_confusion_matrix_and_per_class_report_by_hand():
    import torch

    from annorm_cli.evaluate.recognisability import confusion_matrix, per_class_report
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    predicted = torch.tensor([0, 0, 1, 2, 1, 1, 1, 1, 0])
    counts = confusion_matrix(predicted, labels, 3)
    assert counts.tolist() == [[2, 1, 1], [0, 2, 0], [1, 2, 0]]
    report = per_class_report(counts, ["a", "b", "c"])
    assert [r["accuracy"] for r in report] == [0.5, 1.0, 0.0]
    assert (report[0]["mistaken_for"], report[0]["mistaken_share"]) == ("b", 0.25)     # tie b/c: the first
    assert report[1]["mistaken_share"] == 0.0
    assert (report[2]["mistaken_for"], report[2]["mistaken_share"]) == ("b", 2 / 3)


def test_spread_is_zero_for_look_alikes_and_the_pixel_std_otherwise():
    import torch

    from annorm_cli.evaluate.recognisability import spread
    images = torch.zeros(4, 2, 2, 3, dtype=torch.uint8)
    images[3] = 255                                   # class 1: one black, one white image
    labels = torch.tensor([0, 0, 1, 1])
    same, mixed = spread(images, labels, 2)
    assert same == 0.0 and mixed == pytest.approx(255 / 2 ** 0.5)     # sample std of {0, 255}


def test_checkerboard_peaks_see_a_pixel_checkerboard_and_not_edges_or_flat_images():
    import torch

    from annorm_cli.evaluate.recognisability import checkerboard_peaks, checkerboard_share
    images = torch.full((3, 8, 8, 3), 128, dtype=torch.uint8)                # [N, H, W, 3]
    images[1, :, 4:] = 255                                                    # a hard vertical edge
    images[2, 2:4, 2:4] = torch.tensor([[0, 255], [255, 0]], dtype=torch.uint8)[:, :, None]   # a 2x2 checkerboard
    peaks = checkerboard_peaks(images)
    assert peaks[0] == 0 and peaks[1] == 0 and peaks[2] == pytest.approx(1.0)
    assert checkerboard_share(images) == pytest.approx(1 / 3)
    assert checkerboard_peaks(images.permute(0, 3, 1, 2)).tolist() == peaks.tolist()   # [N, 3, H, W] alike


def test_fid_scores_by_hand_with_intra_fid_and_card_entries():
    from annorm_cli.evaluate.fid import card_entries, fid_scores
    rng = np.random.default_rng(3)
    features = np.concatenate([rng.normal(0.0, 1.0, size=(50, 4)), rng.normal(3.0, 1.0, size=(50, 4))])
    labels = np.repeat([0, 1], 50)
    own = {c: statistics(features[labels == c]) for c in (0, 1)}
    shifted = {0: own[0], 1: (own[1][0] + 1.0, own[1][1])}           # class 1's mean moved by 1 in 4 dims: FID 4
    result = fid_scores(features, labels, statistics(features), per_class_reference=shifted)
    assert abs(result["fid"]) < 1e-8 and result["samples"] == 100
    assert result["intra_fid_per_class"][0] == pytest.approx(0.0, abs=1e-8)
    assert result["intra_fid_per_class"][1] == pytest.approx(4.0, rel=1e-8)
    assert result["intra_fid"] == pytest.approx(2.0, rel=1e-8)
    result.update(reference="ref.npz", per_class=50, class_accuracy=0.5, class_accuracy_per_class=[1.0, 0.0],
                  classifier={"sha256": "ab"})
    entries = card_entries(result, "annorm evaluate fid")
    assert set(entries) == {"fid_100", "intra_fid", "class_accuracy"}
    assert entries["intra_fid"] == {"value": result["intra_fid"], "per_class": 50, "command": "annorm evaluate fid"}
    assert entries["class_accuracy"]["per_class"] == [1.0, 0.0]


def test_class_accuracy_counts_each_class_by_hand():
    import torch
    from annorm_cli.evaluate.recognisability import class_accuracy

    class Brightness(torch.nn.Module):          # calls an image class 1 when its mean is above 0
        def forward(self, x):                    # x [N, 3, H, W] in [-1, 1]
            bright = x.mean((1, 2, 3))
            return torch.stack([-bright, bright], 1)
    images = torch.tensor([0, 0, 255, 255, 255, 0], dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 3, 2, 2)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])   # class 0: 2 of 3 right; class 1: 2 of 3 right
    scores = class_accuracy(Brightness(), images, labels)
    assert scores["class_accuracy"] == pytest.approx(4 / 6)
    assert scores["class_accuracy_per_class"] == pytest.approx([2 / 3, 2 / 3])


# ----------------------------------------------------------------------------- diversity
def test_precision_recall_density_coverage_by_hand():
    from annorm_cli.evaluate.diversity import density_coverage, kth_neighbour_radii, precision_recall
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert kth_neighbour_radii(real, 1).tolist() == [1, 1, 1, 1]
    assert kth_neighbour_radii(real, 2).tolist() == [2, 1, 1, 2]
    samples = np.array([[0.0], [10.0]])
    # precision: 0 lies in real 0's ball, 10 in none -> 1/2; sample radii (k=1) are 10 and 10, so
    # every real point lies in the ball of sample 0 -> recall 1
    assert precision_recall(real, samples, k=1) == {"precision": 0.5, "recall": 1.0}
    # density: sample 0 lies in the balls of real 0 and real 1 (radius 1), sample 10 in none:
    # (2 + 0) / (1 * 2) = 1; coverage: the balls of real 0 and 1 hold a sample -> 2 / 4
    assert density_coverage(real, samples, k=1) == {"density": 1.0, "coverage": 0.5}


def test_identical_disjoint_and_subset_sets():
    from annorm_cli.evaluate.diversity import diversity
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    same = diversity(real, real.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = diversity(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    centre = real[np.linalg.norm(real, axis=1).argsort()[:40]]           # the 40 most typical points
    typical = diversity(real, centre)
    assert typical["precision"] == 1.0 and typical["recall"] < 0.5        # faithful, but covers little
    assert typical["density"] > 1.5 * same["density"]                       # crowded where real data is dense
    side = diversity(real, real[real[:, 0] > 1.0])                         # one side of the data only
    assert side["precision"] == 1.0 and side["coverage"] < 0.5


def test_diversity_scores_take_the_first_per_class_of_each_class_and_report_each_class():
    from annorm_cli.evaluate.diversity import diversity, diversity_scores
    rng = np.random.default_rng(1)
    real, samples = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    labels = np.repeat([0, 1, 2], 20)
    result = diversity_scores(real, labels, samples, labels, per_class=10, intra=True)
    keep = np.concatenate([np.arange(10), 20 + np.arange(10), 40 + np.arange(10)])
    assert result["diversity"] == diversity(real[keep], samples[keep])
    assert result["diversity_per_class"][1] == diversity(real[20:30], samples[20:30])


def test_broken_seeds_are_those_rejected_in_more_than_half_of_the_classes():
    import torch

    from annorm_cli.evaluate.recognisability import broken_seeds
    labels = torch.arange(4).repeat_interleave(3)                # 4 classes x seeds 10, 11, 12
    predicted = labels.clone()
    predicted[[0, 3, 6]] = 9                                     # seed 10 rejected in 3 of 4 classes: broken
    predicted[[1, 4]] = 9                                        # seed 11 in 2 of 4: not more than half
    result = broken_seeds(predicted, labels, [10, 11, 12])
    assert result == {"broken_seed_share": 1 / 3, "broken_seeds": [10], "rejected_classes_per_seed": [3, 2, 0]}
