import os
import subprocess
import sys

import pytest
import torch

from annorm_cli.errors import BadInputError
from annorm_cli.train import class_conditional as trainer
from annorm_cli.train import common
from annorm_cli.train.common import load_checkpoint
from helpers import TINY, tiny_image_folder


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path / "cache"))
    return tiny_image_folder(tmp_path / "data")


def _options(data_dir, steps, **extra):
    settings = {"batch_size": 8, "precision": "fp32", "sample_every": 1000, "log_every": 1, **extra}
    return trainer.TrainOptions(data=str(data_dir), steps=steps, **settings)


def _assert_same_models(a: dict, b: dict, exact=True):
    for part in ("G", "G_ema", "D"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            if exact:
                assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
            else:
                torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-4, atol=1e-5,
                                           msg=f"{part}.{key} differs")


@pytest.mark.parametrize("diffaugment", [False, True])
def test_resume_equals_uninterrupted(data_dir, tmp_path, diffaugment):
    trainer.train(_options(data_dir, 4, diffaugment=diffaugment), TINY, tmp_path / "straight",
                  device=torch.device("cpu"))
    trainer.train(_options(data_dir, 2, diffaugment=diffaugment), TINY, tmp_path / "split",
                  device=torch.device("cpu"))
    first_half = load_checkpoint(tmp_path / "split")
    assert first_half["step"] == 2
    trainer.train(_options(data_dir, 4, diffaugment=diffaugment), TINY, tmp_path / "split",
                  device=torch.device("cpu"), resume=first_half)
    _assert_same_models(load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split"))


def test_keep_every_keeps_the_checkpoint_of_those_steps(data_dir, tmp_path):
    trainer.train(_options(data_dir, 2), TINY, tmp_path / "two", device=torch.device("cpu"))
    trainer.train(_options(data_dir, 5, keep_every=2), TINY, tmp_path / "kept", device=torch.device("cpu"))
    kept = sorted(path.name for path in (tmp_path / "kept").glob("checkpoint-*.pt"))
    assert kept == ["checkpoint-0000002.pt", "checkpoint-0000004.pt"]
    _assert_same_models(load_checkpoint(tmp_path / "kept" / kept[0]), load_checkpoint(tmp_path / "two"))
    assert load_checkpoint(tmp_path / "kept")["step"] == 5


def test_training_changes_weights_and_logs(data_dir, tmp_path):
    state = trainer.train(_options(data_dir, 3), TINY, tmp_path / "run", device=torch.device("cpu"))
    saved = load_checkpoint(tmp_path / "run")
    assert saved["step"] == 3 and state.step == 3
    fresh = trainer.build_state(TINY, _options(data_dir, 3), torch.device("cpu"), trainer.common.World())
    changed = [k for k, v in fresh.G.state_dict().items() if not torch.equal(v, saved["G"][k])]
    assert "stem.weight" in changed
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3


def test_export_round_trip_gives_identical_pixels(data_dir, tmp_path):
    from annorm_cli import weights
    from annorm_cli.pipelines import generate_images
    trainer.train(_options(data_dir, 2), TINY, tmp_path / "run", device=torch.device("cpu"))
    saved = load_checkpoint(tmp_path / "run")
    card = trainer.export_generator(saved, tmp_path / "w" / "tiny.safetensors", {"train_command": "test"})
    model, loaded_card = weights.load(weights=tmp_path / "w" / "tiny.safetensors")
    assert loaded_card["sha256"] == card["sha256"] and loaded_card["steps"] == 2
    state = trainer.build_state(TINY, _options(data_dir, 2), torch.device("cpu"), trainer.common.World())
    state.restore(saved)
    direct = trainer.sampling_copy(state)
    a = generate_images(model, [0, 1, 1], [3, 4, 5])
    b = generate_images(direct, [0, 1, 1], [3, 4, 5])
    assert (a == b).all() and a.std() > 0


@pytest.mark.slow
def test_two_process_ddp_equals_single_process(data_dir, tmp_path):
    common = ["--data", str(data_dir), "--steps", "2", "--batch-size", "8", "--precision", "fp32",
              "--g-channels", "16,8,8,8", "--d-channels", "8,8,8,8", "--entities", "4", "--quiet",
              "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "annorm_cli", "train", "class", "--out", str(tmp_path / "one"),
                             *common], env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "annorm_cli", "train", "class", "--out", str(tmp_path / "two"), *common],
                            env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-2000:]
    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    # Biases in front of batch norm have a true gradient of 0, and Adam turns float-noise
    # gradients into +-lr steps whose sign depends on summation order; those differences then
    # spread a little. So: every element within 2 * lr_d * steps of the single-process run, and
    # all but a sliver (0.1% measured) within 1e-4. A wrong data or noise slice moves most elements.
    for part in ("G", "G_ema", "D"):
        diffs = torch.cat([(one[part][k] - two[part][k]).abs().flatten() for k in one[part]])
        assert diffs.max() <= 2 * 4e-4 * 2
        assert (diffs > 1e-4).float().mean() < 0.01, part


def test_classifier_trains_resumes_and_exports(data_dir, tmp_path):
    from annorm_cli import weights
    from annorm_cli.train import classifier

    def options(steps):
        return classifier.ClassifierOptions(data=str(data_dir), steps=steps, batch_size=8, lr=0.05, log_every=1)
    import signal

    def interrupt_at_two(kind, info):   # Ctrl-C after step 2: the loop checkpoints and stops
        if kind == "log" and info["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    classifier.train(options(4), tmp_path / "straight")
    from annorm_cli.errors import Interrupted
    with pytest.raises(Interrupted):                    # after writing its checkpoint
        classifier.train(options(4), tmp_path / "split", on_event=interrupt_at_two)
    assert load_checkpoint(tmp_path / "split")["step"] == 2
    classifier.train(options(4), tmp_path / "split", resume=load_checkpoint(tmp_path / "split"))
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    from annorm_cli.datasets import load_labelled_images
    data = load_labelled_images(data_dir, "train")
    card = classifier.export_classifier(a, tmp_path / "c.safetensors", {}, data)
    model, _ = weights.load(weights=tmp_path / "c.safetensors", task="classifier")
    from annorm_cli.evaluate.recognisability import accuracy
    assert card["metrics"]["test_accuracy"]["value"] == accuracy(model, data.images, data.labels)


def test_resume_takes_optimisation_settings_from_the_checkpoint(data_dir, tmp_path):
    trainer.train(_options(data_dir, 4, lr_g=3e-4), TINY, tmp_path / "straight", device=torch.device("cpu"))
    trainer.train(_options(data_dir, 2, lr_g=3e-4), TINY, tmp_path / "split", device=torch.device("cpu"))
    resumed = trainer.train(_options(data_dir, 4), TINY, tmp_path / "split", device=torch.device("cpu"),
                            resume=load_checkpoint(tmp_path / "split"))   # default lr_g given: ignored
    assert resumed.options.lr_g == 3e-4 and resumed.options.steps == 4
    _assert_same_models(load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split"))


def test_typed_options_override_a_resumed_checkpoint(data_dir, tmp_path):
    trainer.train(_options(data_dir, 2, lr_g=3e-4), TINY, tmp_path / "run", device=torch.device("cpu"))
    resumed = trainer.train(_options(data_dir, 3, lr_g=5e-5, lr_d=1e-3), TINY, tmp_path / "run",
                            device=torch.device("cpu"), resume=load_checkpoint(tmp_path / "run"),
                            overrides=frozenset({"lr_g"}))
    assert resumed.options.lr_g == 5e-5 and resumed.options.lr_d == 4e-4 and resumed.step == 3
    assert load_checkpoint(tmp_path / "run")["options"]["lr_g"] == 5e-5


def test_class_scores_are_the_projection_term_of_the_logits():
    from annorm_cli.models.class_conditional import Discriminator
    torch.manual_seed(0)
    D = Discriminator(TINY).eval()
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    cats, dogs = torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long)
    logits_cat, scores = D(images, cats, class_scores=True)
    assert scores.shape == (5, TINY.n_classes)
    torch.testing.assert_close(logits_cat - D(images, dogs), scores[:, 0] - scores[:, 1])


def _class_loss_of_d(saved: dict, data_dir) -> float:
    from annorm_cli.models.class_conditional import Discriminator
    from annorm_cli.datasets import load_labelled_images
    D = Discriminator(TINY)
    D.load_state_dict(saved["D"])
    data = load_labelled_images(str(data_dir), "train")
    _, scores = D(data.images.float() / 127.5 - 1, data.labels, class_scores=True)
    return torch.nn.functional.cross_entropy(scores, data.labels).item()


def test_class_weight_teaches_the_discriminator_the_classes(data_dir, tmp_path):
    for weight in (0.0, 2.0):
        trainer.train(_options(data_dir, 6, class_weight=weight), TINY, tmp_path / f"w{weight}",
                      device=torch.device("cpu"))
    plain, taught = (_class_loss_of_d(load_checkpoint(tmp_path / f"w{w}"), data_dir) for w in (0.0, 2.0))
    assert taught < plain - 0.05, (plain, taught)


def _tiny_scorer(path, class_names=("cat", "dog")):
    from annorm_cli import weights
    from annorm_cli.models.classifier import Classifier, ClassifierConfig
    torch.manual_seed(3)
    config = ClassifierConfig(n_classes=len(class_names), widths=(4, 4, 4), class_names=class_names)
    weights.save(Classifier(config).eval(), "Classifier", config.to_dict(), path, {"task": "classifier"})
    return str(path)


def test_scoring_samples_leaves_training_unchanged_and_matches_evaluate(data_dir, tmp_path, capsys):
    import json

    from annorm_cli.cli.errors import run_guarded
    from annorm_cli.cli.app import app
    scorer = _tiny_scorer(tmp_path / "scorer.safetensors")
    trainer.train(_options(data_dir, 3, sample_every=3, classifier=scorer, score_per_class=4), TINY,
                  tmp_path / "scored", device=torch.device("cpu"))
    trainer.train(_options(data_dir, 3, classifier=""), TINY, tmp_path / "plain", device=torch.device("cpu"))
    _assert_same_models(load_checkpoint(tmp_path / "scored"), load_checkpoint(tmp_path / "plain"))
    logged = [json.loads(line) for line in (tmp_path / "scored" / "log.jsonl").read_text().splitlines()]
    scored = [entry for entry in logged if "class_accuracy" in entry]
    assert [entry["step"] for entry in scored] == [3] and len(scored[0]["class_accuracy_per_class"]) == 2
    code = run_guarded(app, ["train", "export", str(tmp_path / "scored"), "--out", str(tmp_path / "g.safetensors")])
    assert code == 0
    code = run_guarded(app, ["evaluate", "accuracy", "--weights", str(tmp_path / "g.safetensors"), "--classifier",
                             scorer, "--per-class", "4", "--no-real", "--json", str(tmp_path / "acc.json")])
    assert code == 0, capsys.readouterr().err
    measured = json.loads((tmp_path / "acc.json").read_text())
    assert measured["accuracy"] == pytest.approx(scored[0]["class_accuracy"])
    assert [r["accuracy"] for r in measured["samples"]] == pytest.approx(scored[0]["class_accuracy_per_class"], abs=1e-4)
    per_class_checkerboard = [r["checkerboard"] for r in measured["samples"]]
    assert scored[0]["checkerboard_share"] == pytest.approx(sum(per_class_checkerboard) / 2)
    assert scored[0]["broken_seed_share"] == measured["broken_seed_share"]


def _fake_inception(monkeypatch):
    """A small stand-in for the TF-Inception network (8 features), so the FID paths run without it."""
    from annorm_cli.evaluate import fid
    torch.manual_seed(5)
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 8)).eval()
    monkeypatch.setattr(fid, "load_inception", lambda device=None: network)


def test_the_logged_fid_matches_evaluate_fid_of_the_export(data_dir, tmp_path, monkeypatch, capsys):
    import json

    import numpy as np

    from annorm_cli.cli.app import app
    from annorm_cli.cli.errors import run_guarded
    _fake_inception(monkeypatch)
    reference = tmp_path / "reference.npz"
    np.savez(reference, mu=np.linspace(-1, 1, 8), sig=np.eye(8) * 0.5)
    trainer.train(_options(data_dir, 4, sample_every=2, classifier="", fid_every=4, fid_per_class=3,
                           fid_reference=str(reference)), TINY, tmp_path / "run", device=torch.device("cpu"))
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scored = [entry for entry in logged if "fid_6" in entry]                    # 3 per class, 2 classes
    assert [entry["step"] for entry in scored] == [4] and scored[0]["fid_6"] > 0
    assert run_guarded(app, ["train", "export", str(tmp_path / "run"), "--out", str(tmp_path / "g.safetensors")]) == 0
    code = run_guarded(app, ["evaluate", "fid", "--weights", str(tmp_path / "g.safetensors"), "--per-class", "3",
                             "--classifier", "", "--reference", str(reference), "--json", str(tmp_path / "fid.json")])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "fid.json").read_text())["fid"] == pytest.approx(scored[0]["fid_6"], rel=1e-6)

    from annorm_cli import weights
    from annorm_cli.evaluate import fid
    from annorm_cli.evaluate.recognisability import class_samples
    code = run_guarded(app, ["evaluate", "fid", "--weights", str(tmp_path / "g.safetensors"), "--per-class", "3",
                             "--classifier", "", "--reference", str(reference), "--truncation", "0.5",
                             "--json", str(tmp_path / "fid-t.json")])
    assert code == 0, capsys.readouterr().err
    truncated = json.loads((tmp_path / "fid-t.json").read_text())
    images, _ = class_samples(weights.load(None, tmp_path / "g.safetensors")[0], 3, truncation=0.5)
    expected = fid.frechet_distance(*fid.statistics(fid.inception_features(images.numpy(), fid.load_inception())),
                                    *fid.load_reference(reference))
    assert truncated["fid"] == pytest.approx(expected, rel=1e-6) and truncated["fid"] != scored[0]["fid_6"]
    assert truncated["source"].endswith("latents truncated at 0.5")
    for extra in (["--real", str(data_dir)], ["--record"]):
        code = run_guarded(app, ["evaluate", "fid", "--weights", str(tmp_path / "g.safetensors"), "--truncation",
                                 "0.5", "--reference", str(reference), *extra])
        err = capsys.readouterr().err
        assert code == 2 and "--truncation applies to generated samples" in err and "Traceback" not in err


def test_the_fid_monitor_says_why_it_is_off(tmp_path):
    assert trainer.load_fid_monitor(trainer.TrainOptions()) == (None, "off")
    monitor, why = trainer.load_fid_monitor(trainer.TrainOptions(fid_every=500, fid_reference=str(tmp_path / "no.npz")))
    assert monitor is None and "no reference statistics" in why


@pytest.mark.parametrize("args, message", [
    (["--fid-every", "300", "--sample-every", "250"], "--fid-every must be 0 or a multiple of --sample-every (250)"),
    (["--fid-every", "500", "--fid-reference", "missing.npz"], "Reference statistics 'missing.npz' not found"),
    (["--fid-every", "500", "--fid-per-class", "0"], "--fid-per-class must be a positive integer"),
    (["--keep-every", "-1"], "--keep-every must be 0 or a positive integer"),
])
def test_train_class_refuses_a_bad_fid_monitor(tmp_path, capsys, args, message):
    from annorm_cli.cli.app import app
    from annorm_cli.cli.errors import run_guarded
    code = run_guarded(app, ["train", "class", "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_classifier_of_other_classes_is_not_used_for_scoring(tmp_path):
    scorer = _tiny_scorer(tmp_path / "scorer.safetensors", ("ship", "truck"))
    model, why = trainer.load_scorer(scorer, ("cat", "dog"))
    assert model is None and "other classes" in why
    model, why = trainer.load_scorer(str(tmp_path / "missing.safetensors"), ("cat", "dog"))
    assert model is None and "does not exist" in why
    model, why = trainer.load_scorer(scorer, ("ship", "truck"))
    assert model is not None and why == ""


def test_class_weight_g_sets_the_generators_share_alone(data_dir, tmp_path):
    runs = {"same": dict(class_weight=2.0), "g2": dict(class_weight=2.0, class_weight_g=2.0),
            "g0": dict(class_weight=2.0, class_weight_g=0.0)}
    saved = {}
    for name, extra in runs.items():
        trainer.train(_options(data_dir, 1, **extra), TINY, tmp_path / name, device=torch.device("cpu"))
        saved[name] = load_checkpoint(tmp_path / name)
    _assert_same_models(saved["same"], saved["g2"])            # None means: the same weight as D's
    # step 1 updates D before G, so D is the same; G's update differs only by its class loss
    assert all(torch.equal(v, saved["g2"]["D"][k]) for k, v in saved["g0"]["D"].items())
    assert any(not torch.equal(v, saved["g2"]["G"][k]) for k, v in saved["g0"]["G"].items())


def _wider(config, widths=(16, 12, 16, 8)):
    import dataclasses
    return dataclasses.replace(config, g_channels=widths)


@pytest.mark.parametrize("attention", ["an", "sa"])
def test_a_widened_generator_computes_what_the_narrow_one_did(attention):
    import dataclasses
    from annorm_cli.models.class_conditional import Generator
    from annorm_cli.nn.widen import load_narrower
    torch.manual_seed(0)
    narrow = Generator(dataclasses.replace(TINY, attention=attention))
    for name, parameter in narrow.named_parameters():   # give the zero-started parts weights, so every path counts
        if "gamma" in name or "gain" in name or "bias" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    wide = Generator(_wider(narrow.config))
    assert load_narrower(wide, narrow.state_dict()) == []
    z, labels = torch.randn(6, TINY.z_dim), torch.tensor([0, 1, 1, 0, 1, 0])
    for mode in ("train", "eval"):                    # batch statistics and AN's self-sampling too
        getattr(narrow, mode)(), getattr(wide, mode)()
        torch.manual_seed(3)
        a = narrow(z, labels)
        torch.manual_seed(3)
        b = wide(z, labels)
        assert (a - b).abs().max() < 1e-4, mode      # float32 sums in another order (1.2e-5 seen on an EPYC)
    # the new channels live (random weights of their own); only what reads them starts at zero
    assert wide.block8.conv2.weight[8:, :8].abs().sum() > 0 and wide.block8.conv2.weight[:, 8:].abs().sum() == 0
    assert wide.block16.conv1.weight[:, 8:].abs().sum() == 0
    with pytest.raises(BadInputError, match="Cannot widen"):
        load_narrower(narrow, wide.state_dict())


def test_a_run_started_from_a_checkpoint_widens_g_and_goes_on_from_its_step(data_dir, tmp_path):
    from annorm_cli.train.common import World
    trainer.train(_options(data_dir, 2, class_weight=0.5), TINY, tmp_path / "narrow", device=torch.device("cpu"))
    narrow = load_checkpoint(tmp_path / "narrow")
    options = _options(data_dir, 4, init_from=str(tmp_path / "narrow" / "checkpoint.pt"))
    config = trainer.widened_config(narrow, _wider(TINY))
    state = trainer.build_state(config, options, torch.device("cpu"), World())
    trainer.start_from_checkpoint(state, narrow)
    assert state.step == 2 and state.wall_time == narrow["wall_time"]
    assert all(torch.equal(v, narrow["D"][k]) for k, v in state.D.state_dict().items())
    before = trainer.build_state(TINY, options, torch.device("cpu"), World())
    before.restore(narrow)
    z, labels = torch.randn(4, TINY.z_dim), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        a, b = trainer.sampling_copy(state)(z, labels), trainer.sampling_copy(before)(z, labels)
    assert (a - b).abs().max() < 1e-5
    # the trainer does the same from the option, then trains the wide G on from step 2
    trainer.train(options, _wider(TINY), tmp_path / "wide", device=torch.device("cpu"))
    wide = load_checkpoint(tmp_path / "wide")
    assert wide["step"] == 4 and tuple(wide["model_config"]["g_channels"]) == (16, 12, 16, 8)
    assert wide["options"]["init_from"] == options.init_from
    assert wide["options"]["class_weight"] == 0.0           # the settings are this command's, not the checkpoint's
    with pytest.raises(BadInputError, match="narrower than the checkpoint's"):
        trainer.widened_config(wide, TINY)
    with pytest.raises(BadInputError, match="type a larger one"):
        trainer.train(_options(data_dir, 2, init_from=options.init_from), _wider(TINY), tmp_path / "short",
                      device=torch.device("cpu"))


def test_train_class_refuses_init_from_with_resume(tmp_path, capsys):
    from annorm_cli.cli.app import app
    from annorm_cli.cli.errors import run_guarded
    code = run_guarded(app, ["train", "class", "--out", str(tmp_path / "run"), "--init-from", "a.pt",
                             "--resume", "b.pt"])
    err = capsys.readouterr().err
    assert code == 2 and "pass only one of them" in err and "Traceback" not in err
    code = run_guarded(app, ["train", "class", "--out", str(tmp_path / "run"), "--init-from", str(tmp_path / "a.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "No checkpoint at" in err and "Traceback" not in err


def test_train_class_init_from_on_the_command_line_says_where_it_started(data_dir, tmp_path, capsys):
    from annorm_cli.cli.app import app
    from annorm_cli.cli.errors import run_guarded
    common = ["--data", str(data_dir), "--batch-size", "8", "--precision", "fp32", "--classifier", "",
              "--d-channels", "8,8,8,8", "--entities", "4", "--device", "cpu"]
    assert run_guarded(app, ["train", "class", "--out", str(tmp_path / "narrow"), "--steps", "1",
                             "--g-channels", "16,8,8,8", *common]) == 0
    capsys.readouterr()
    assert run_guarded(app, ["train", "class", "--out", str(tmp_path / "wide"), "--steps", "2", "--g-channels",
                             "16,12,16,8", "--init-from", str(tmp_path / "narrow"), *common]) == 0
    err = capsys.readouterr().err
    assert "training from step 1 to 2" in err and "started from" in err and "resumed" not in err
    assert tuple(load_checkpoint(tmp_path / "wide")["model_config"]["g_channels"]) == (16, 12, 16, 8)
    code = run_guarded(app, ["train", "class", "--out", str(tmp_path / "thin"), "--steps", "2", "--g-channels",
                             "16,4,8,8", "--init-from", str(tmp_path / "narrow"), *common])
    err = capsys.readouterr().err
    assert code == 2 and "narrower than the checkpoint's" in err and "Traceback" not in err
    assert not (tmp_path / "thin").exists()


def test_a_damaged_checkpoint_to_start_from_is_one_sentence(data_dir, tmp_path):
    from annorm_cli.train.common import World
    trainer.train(_options(data_dir, 1), TINY, tmp_path / "narrow", device=torch.device("cpu"))
    saved = load_checkpoint(tmp_path / "narrow")
    state = trainer.build_state(_wider(TINY), _options(data_dir, 3), torch.device("cpu"), World())
    saved["G_ema"] = {"stem.weight": "not a tensor"}
    with pytest.raises(BadInputError, match="damaged or of another architecture"):
        trainer.start_from_checkpoint(state, saved)
    del saved["G"]["stem.weight"]
    with pytest.raises(BadInputError, match="lacks stem.weight"):
        trainer.start_from_checkpoint(state, saved)


def test_evaluate_fid_reports_diversity_against_the_test_images_and_records_it(data_dir, tmp_path, monkeypatch, capsys):
    import json
    import shutil

    import numpy as np

    from annorm_cli.cli.app import app
    from annorm_cli.cli.errors import run_guarded
    from annorm_cli.evaluate import diversity, fid
    _fake_inception(monkeypatch)
    reference = tmp_path / "reference.npz"
    np.savez(reference, mu=np.zeros(8), sig=np.eye(8))
    shutil.copytree(data_dir / "train", data_dir / "test")             # the test split: the same images
    args = ["evaluate", "fid", "--real", str(data_dir), "--per-class", "10", "--classifier", "", "--reference",
            str(reference), "--test-data", str(data_dir), "--diversity", "--diversity-per-class", "8", "--intra"]
    assert run_guarded(app, [*args, "--json", str(tmp_path / "self.json")]) == 0, capsys.readouterr().err
    same = json.loads((tmp_path / "self.json").read_text())
    assert same["diversity"]["precision"] == same["diversity"]["recall"] == same["diversity"]["coverage"] == 1.0
    assert set(same["diversity_per_class"]) == {"0", "1"}
    # a generator's samples: the numbers diversity.py gives for the same features
    trainer.train(_options(data_dir, 1, classifier=""), TINY, tmp_path / "run", device=torch.device("cpu"))
    assert run_guarded(app, ["train", "export", str(tmp_path / "run"), "--out", str(tmp_path / "g.safetensors")]) == 0
    assert run_guarded(app, ["evaluate", "fid", "--weights", str(tmp_path / "g.safetensors"), "--per-class", "8",
                             "--classifier", "", "--reference", str(reference), "--test-data", str(data_dir),
                             "--diversity", "--diversity-per-class", "8", "--json", str(tmp_path / "result.json")]) == 0
    from annorm_cli import weights
    from annorm_cli.evaluate.recognisability import class_samples
    images, labels = class_samples(weights.load(None, tmp_path / "g.safetensors")[0], 8)
    network = fid.load_inception()
    real, real_labels = fid.reference_features(data_dir, network, per_class=8)
    expected = diversity.diversity_scores(real, real_labels, fid.inception_features(images.numpy(), network),
                                          labels.numpy(), per_class=8)["diversity"]
    assert json.loads((tmp_path / "result.json").read_text())["diversity"] == pytest.approx(expected)
    code = run_guarded(app, [*args[:-3], "--diversity-per-class", "20"])
    assert code == 2 and "cannot exceed --per-class" in capsys.readouterr().err


def test_the_fast_step_computes_the_losses_and_updates_of_the_plain_step(data_dir, monkeypatch):
    """Fused Adam, _foreach EMA and G, D compiled (here with the aot_eager backend: the same
    graphs without code generation) against the plain step, over three steps with DiffAugment."""
    monkeypatch.setattr(trainer, "COMPILE_BACKEND", "aot_eager")
    data = trainer.load_labelled_images(str(data_dir), "train")
    world = common.World()
    runs = {}
    for fast in (False, True):
        options = _options(data_dir, 3, diffaugment=True, class_weight=0.5, fast=fast)
        state = trainer.build_state(TINY, options, torch.device("cpu"), world)
        assert (state.fast is not None) == fast
        start = {k: v.clone() for k, v in state.checkpoint()["G"].items()}
        losses = [trainer.train_step(state, data, torch.device("cpu"), world) for _ in range(3)]
        runs[fast] = (losses, state.checkpoint(), start)
    (plain_losses, plain, start), (fast_losses, quick, _) = runs[False], runs[True]
    for a, b in zip(plain_losses, fast_losses):
        assert {k: float(v) for k, v in a.items()} == pytest.approx({k: float(v) for k, v in b.items()}, rel=1e-4)
    # the updates agree: Adam turns rounding noise in a gradient that is ~0 (a conv bias before batch
    # norm) into a step of lr either way, so compare the whole update, not each near-zero entry
    update = lambda run: torch.cat([(run["G"][k] - start[k]).flatten() for k in start if start[k].is_floating_point()])  # noqa: E731
    plain_update, fast_update = update(plain), update(quick)
    assert (fast_update - plain_update).norm() < 0.05 * plain_update.norm()
    for part in ("G", "D"):
        weights = [k for k in plain[part] if k.endswith("weight") and plain[part][k].ndim > 1]
        assert all(torch.allclose(plain[part][k], quick[part][k], atol=2e-4) for k in weights), part
    assert quick["step"] == plain["step"] == 3
