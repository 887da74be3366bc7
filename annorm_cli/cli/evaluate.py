"""`annorm evaluate`: metrics with a stated protocol."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from annorm_cli.cli.common import check_max_side, check_outputs, check_seed_option, check_truncation, progress, working
from annorm_cli.cli.errors import fail
from annorm_cli.data import CIFAR10, CIFAR10_TEST_STATS, SCENES
from annorm_cli.evaluate.names import BASELINES, BUCKETS
from annorm_cli.files import write_json

app = typer.Typer(no_args_is_help=True, help="Metrics: FID, intra-FID and class accuracy for the class-conditional model; inpainting against classical methods.")



@app.command("fid")
def fid(
    model: Optional[str] = typer.Option(None, help="Registry name of the generator to score (default cifar10-an)."),
    weights: Optional[Path] = typer.Option(None, help="Or a .safetensors file with its card."),
    real: Optional[Path] = typer.Option(None, help="Score real images instead (the self-check): an ImageFolder tree or tar."),
    real_split: str = typer.Option("train", help="Split of --real to score."),
    per_class: int = typer.Option(1000, help="Images per class (the protocol: 1,000 x 10 = 10,000)."),
    reference: Path = typer.Option(CIFAR10_TEST_STATS, help="Reference statistics .npz (mu, sig) of the test split."),
    seed_offset: int = typer.Option(0, help="Generated seeds are offset + 0 ... per_class - 1 for every class."),
    truncation: Optional[float] = typer.Option(None, help="Truncated-normal latent |z| <= T, as in generate "
                                                          "(the protocol: none)."),
    batch_size: int = typer.Option(50, help="Inception batch size."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
    intra: bool = typer.Option(False, help="Also intra-FID: per class vs that class's test images (computes and "
                                            "caches per-class test statistics once, ~40 min on a 2-core CPU)."),
    test_data: Path = typer.Option(CIFAR10, help="Tar or tree whose test/ split "
                                                                                    "gives the per-class references."),
    classifier: Optional[str] = typer.Option("cifar10-classifier", help="Registry name or .safetensors of the "
                                                                         "classifier for class accuracy ('' to skip)."),
    record: bool = typer.Option(False, help="Write the result into the model's card (metrics), with this command."),
    diversity: bool = typer.Option(False, help="Also improved precision / recall and density / coverage against "
                                               "the first --diversity-per-class test images of each class (per "
                                               "class too with --intra; their features are computed once and cached)."),
    diversity_per_class: int = typer.Option(200, help="Images per class on each side of the diversity measures."),
) -> None:
    """FID against the CIFAR-10 test statistics (TF-Inception, bilinear resize to 299).

    Example: annorm evaluate fid --per-class 1000
    """
    if per_class < 1 or batch_size < 1 or diversity_per_class < 6:
        raise fail("--per-class and --batch-size must be positive integers, --diversity-per-class at least 6.")
    if diversity and diversity_per_class > per_class:
        raise fail(f"--diversity-per-class ({diversity_per_class}) cannot exceed --per-class ({per_class}).")
    if (diversity or intra) and not test_data.exists():
        raise fail(f"Test data '{test_data}' not found; pass --test-data (or set ANNORM_DATA).")
    check_seed_option(seed_offset, "--seed-offset", per_class)
    check_truncation(truncation)
    if truncation is not None and (real is not None or record):
        raise fail("--truncation applies to generated samples and is not the protocol: it cannot go with "
                   f"{'--real' if real is not None else '--record'}.")
    if not reference.is_file():
        raise fail(f"Reference statistics '{reference}' not found; pass --reference (or set ANNORM_DATA).")
    if real is not None and not real.exists():
        raise fail(f"--real '{real}' does not exist.")
    check_outputs("class-conditional", model, weights, overwrite, json=json_out)
    import time

    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.evaluate import fid as fid_lib

    dev = resolve_device(device)
    network = fid_lib.load_inception(dev)
    started = time.time()
    images, labels, source = _fid_images(real, real_split, per_class, model, weights, seed_offset, truncation, dev)
    with progress("inception features", len(images)) as advance:
        features = fid_lib.inception_features(images, network, batch_size=batch_size, progress=advance)
    per_class_reference = None
    if intra:
        with progress("per-class test statistics (computed once, then cached)", None) as advance:
            per_class_reference = fid_lib.per_class_reference(test_data, network, batch_size=batch_size,
                                                              progress=advance)
    result = fid_lib.fid_scores(features, labels.numpy(), fid_lib.load_reference(reference),
                                per_class_reference=per_class_reference)
    result.update(source=source, reference=str(reference), per_class=per_class)
    typer.echo(f"FID {result['fid']:.2f} ({len(images)} samples vs {reference.name})")
    if intra:
        typer.echo(f"intra-FID {result['intra_fid']:.2f} (mean over {len(per_class_reference)} classes, "
                   f"{per_class} samples each vs that class's test images)")
    if diversity:
        _add_diversity(result, test_data, network, features, labels.numpy(), diversity_per_class, intra, batch_size)
    if classifier:
        _add_class_accuracy(result, classifier, images, labels)
    result["seconds"] = round(time.time() - started, 1)
    if record and real is None:
        import sys
        _, card_path = weight_files.resolve(model, weights)
        weight_files.record_metrics(card_path, fid_lib.card_entries(result, "annorm " + " ".join(sys.argv[1:])))
    if json_out:
        write_json(json_out, result)


def _fid_images(real, real_split: str, per_class: int, model, weights, seed_offset: int, truncation, device):
    """(images [N, 3, 32, 32] uint8, labels [N], a description): the first `per_class` real images
    of every class of --real, or `per_class` samples of every class from seeds seed_offset ...
    (latents truncated at `truncation` unless None)"""
    import torch
    if real is not None:
        from annorm_cli.datasets import load_labelled_images
        data = load_labelled_images(real, real_split)
        picks = torch.cat([torch.nonzero(data.labels == c).flatten()[:per_class] for c in range(len(data.class_names))])
        return data.images[picks], data.labels[picks], f"{real}:{real_split} (first {per_class} per class)"
    from annorm_cli import weights as weight_files
    from annorm_cli.evaluate.recognisability import class_samples
    generator, card = weight_files.load(model, weights)
    with progress("generating", per_class * generator.config.n_classes) as advance:
        images, labels = class_samples(generator, per_class, seed_offset=seed_offset, truncation=truncation,
                                       device=device, progress=advance)
    return (images.permute(0, 3, 1, 2), labels, f"{model or 'cifar10-an'} sha256 {card['sha256'][:12]}, "
            f"seeds {seed_offset}-{seed_offset + per_class - 1} per class"
            + (f", latents truncated at {truncation:g}" if truncation is not None else ""))


def _add_diversity(result: dict, test_data, network, features, labels, per_class: int, intra: bool,
                   batch_size: int) -> None:
    """Precision, recall, density and coverage of the features against the test images (printed)."""
    from annorm_cli.evaluate import fid as fid_lib
    from annorm_cli.evaluate.diversity import diversity_scores
    with progress(f"test features, {per_class} per class (computed once, then cached)", None) as advance:
        real, real_labels = fid_lib.reference_features(test_data, network, per_class=per_class,
                                                       batch_size=batch_size, progress=advance)
    result.update(diversity_scores(real, real_labels, features, labels, per_class=per_class, intra=intra))
    d = result["diversity"]
    typer.echo(f"precision {d['precision']:.3f}  recall {d['recall']:.3f}  density {d['density']:.3f}  "
               f"coverage {d['coverage']:.3f} ({per_class} per class vs as many test images)")
    for c, row in result.get("diversity_per_class", {}).items():
        typer.echo(f"  class {c}: precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                   f"density {row['density']:.3f}  coverage {row['coverage']:.3f}")


def _add_class_accuracy(result: dict, classifier: str, images, labels) -> None:
    """Class accuracy of the images by `classifier` into `result` (printed); a classifier that
    cannot be loaded skips it with a line on stderr."""
    from annorm_cli import weights as weight_files
    from annorm_cli.errors import WeightsError
    from annorm_cli.evaluate.recognisability import class_accuracy
    try:
        scorer, scorer_card = weight_files.load_classifier(classifier)
    except WeightsError as exc:
        typer.echo(f"class accuracy skipped: {exc}", err=True)
        return
    result.update(class_accuracy(scorer, images, labels))
    result["classifier"] = {"sha256": scorer_card["sha256"], **scorer_card.get("metrics", {})}
    typer.echo(f"class accuracy {result['class_accuracy']:.3f} (classifier {scorer_card['sha256'][:12]})")


@app.command("accuracy")
def accuracy(
    model: Optional[str] = typer.Option(None, help="Registry name of the generator to score (default cifar10-an)."),
    weights: Optional[Path] = typer.Option(None, help="Or a .safetensors file with its card."),
    per_class: int = typer.Option(200, help="Samples per class."),
    seed_offset: int = typer.Option(0, help="Seeds are offset + 0 ... per_class - 1 for every class."),
    truncation: Optional[float] = typer.Option(None, help="Truncated-normal latent |z| <= T, as in generate."),
    classifier: str = typer.Option("cifar10-classifier", help="Registry name or .safetensors of the classifier."),
    test_data: Path = typer.Option(CIFAR10,
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
    look-alikes. Checkerboard: the share of images with a pixel-scale checkerboard patch (the 2x2
    filter [[1, -1], [-1, 1]] / 4 above 0.3 on the [-1, 1] scale somewhere; real test images:
    2.2%), an artefact of some GAN checkpoints. Example: annorm evaluate accuracy --per-class 200
    """
    if per_class < 1:
        raise fail("--per-class must be a positive integer.")
    check_seed_option(seed_offset, "--seed-offset", per_class)
    check_truncation(truncation)
    if real and not test_data.exists():                 # every input path is checked before any work
        raise fail(f"Test data '{test_data}' not found; pass --test-data (or set ANNORM_DATA) or --no-real.")
    from rich.console import Console

    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.evaluate.recognisability import broken_seeds, class_samples, predict, recognisability_report

    check_outputs("class-conditional", model, weights, overwrite, json=json_out)
    scorer, scorer_card = weight_files.load_classifier(classifier)
    generator, card = weight_files.load(model, weights)
    names = list(card.get("classes") or [str(c) for c in range(generator.config.n_classes)])
    n = len(names)
    if tuple(scorer.config.class_names) != tuple(names):
        raise fail(f"The classifier knows the classes {', '.join(scorer.config.class_names)}, "
                   f"not the generator's {', '.join(names)}; pass a matching --classifier.")
    with progress("generating", per_class * n) as advance:
        images, classes = class_samples(generator, per_class, seed_offset=seed_offset, truncation=truncation,
                                        device=resolve_device(device), progress=advance)
    with working("classifying"):
        samples = recognisability_report(scorer, images, classes, names)
        broken = broken_seeds(predict(scorer, images), classes, list(range(seed_offset, seed_offset + per_class)))
        reference = None
        if real:
            from annorm_cli.datasets import load_labelled_images
            test = load_labelled_images(test_data, "test")
            reference = recognisability_report(scorer, test.images, test.labels, names)
    truncated = f", truncation {truncation}" if truncation else ""
    table = _accuracy_table(samples, reference, f"class accuracy of {model or weights or 'cifar10-an'} samples "
                            f"({per_class} per class{truncated}, classifier {scorer_card['sha256'][:12]})")
    overall = sum(row["accuracy"] for row in samples) / n
    Console().print(table)
    shown = ", ".join(str(seed) for seed in broken["broken_seeds"][:10]) + (" ..." if len(broken["broken_seeds"]) > 10 else "")
    typer.echo(f"broken seeds (samples rejected in more than half of the classes): {broken['broken_seed_share']:.1%} "
               f"of {per_class}" + (f": {shown}" if shown else ""))
    if json_out:
        write_json(json_out, {"model_sha256": card["sha256"], "steps": card.get("steps"), "per_class": per_class,
                              "seed_offset": seed_offset, "truncation": truncation, "accuracy": overall,
                              "samples": samples, "real_test_images": reference,
                              "broken_seed_share": broken["broken_seed_share"], "broken_seeds": broken["broken_seeds"],
                              "classifier_sha256": scorer_card["sha256"]})


def _accuracy_table(samples: list[dict], reference: Optional[list[dict]], title: str):
    """The rich table of `evaluate accuracy`: per class and overall, samples beside real test images."""
    from rich.table import Table
    table = Table(title=title)
    for column in ("class", "samples called it", "mistaken most for", "real test images called it",
                   "spread: samples", "spread: real", "checkerboard: samples", "checkerboard: real"):
        table.add_column(column)
    for c, row in enumerate(samples):
        mistaken = f"{row['mistaken_for']} ({row['mistaken_share']:.1%})" if row["mistaken_share"] else "-"
        table.add_row(row["class"], f"{row['accuracy']:.1%}", mistaken,
                      f"{reference[c]['accuracy']:.1%}" if reference else "-", f"{row['spread']:.1f}",
                      f"{reference[c]['spread']:.1f}" if reference else "-", f"{row['checkerboard']:.1%}",
                      f"{reference[c]['checkerboard']:.1%}" if reference else "-")
    mean = lambda rows, key: sum(row[key] for row in rows) / len(rows)  # noqa: E731
    table.add_row("all", f"{mean(samples, 'accuracy'):.1%}", "",
                  f"{mean(reference, 'accuracy'):.1%}" if reference else "-",
                  f"{mean(samples, 'spread'):.1f}", f"{mean(reference, 'spread'):.1f}" if reference else "-",
                  f"{mean(samples, 'checkerboard'):.1%}", f"{mean(reference, 'checkerboard'):.1%}" if reference else "-")
    return table


@app.command("inpaint")
def inpaint(
    photos: Optional[Path] = typer.Option(None, help="Folder of photos; default: the held-out scene photos."),
    data: Path = typer.Option(SCENES, help="The scenes folder (for the held-out list)."),
    model: Optional[str] = typer.Option(None, help="Registry name (default scenes-inpaint-an)."),
    weights: Optional[Path] = typer.Option(None, help="Or a .safetensors file with its card."),
    buckets: str = typer.Option(",".join(BUCKETS), help="Mask buckets, comma-separated: "
                                "10-20%, 20-30%, 30-40% (strokes), objects (object removal), flat (smooth regions)."),
    masks_per_photo: int = typer.Option(8, help="Masks per photo in the stroke and object buckets (flat: a box and an ellipse)."),
    baselines: str = typer.Option(",".join(BASELINES), help="Classical methods to compare with: telea, ns, patchmatch ('' for none)."),
    perceptual: bool = typer.Option(True, help="KID / FID / feature distance of hole crops (the FID network; "
                                    "about 0.25 s per crop on 2 CPU cores)."),
    compare_out: Optional[Path] = typer.Option(None, help="Write a comparison picture (input with the object-removal "
                                               "hole, Telea, PatchMatch, annorm, truth) here."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the tables and the per-fill values as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace existing --json / --compare-out files."),
    max_side: Optional[int] = typer.Option(None, help="Largest side the network sees (default: the model's work_side)."),
    match: bool = typer.Option(True, help="Correct each fill by the network's error on the known pixels "
                               "(as annorm inpaint does); --no-match scores the network's raw fill."),
    texture: bool = typer.Option(True, help="The texture step (as annorm inpaint does); --no-texture scores the network's smooth fill."),
    record: bool = typer.Option(False, help="Write the tables into the model's card (metrics), with this command."),
    attention_off: bool = typer.Option(False, help="Score the network with its attention layers switched off "
                                       "(AN / SA output scale gamma = 0, so each is the identity): how much the "
                                       "trained fill relies on them."),
) -> None:
    """annorm against Telea, Navier-Stokes and PatchMatch per mask bucket: PSNR / L1 in the hole, SSIM,
    and KID / FID / feature distance of crops around the hole (protocol: annorm_cli/evaluate/inpainting.py).

    Example: annorm evaluate inpaint --buckets objects --compare-out compare.png
    """
    import numpy as np
    from rich.console import Console

    from annorm_cli import weights as weight_files
    from annorm_cli.device import resolve_device
    from annorm_cli.evaluate import inpainting as metrics
    from annorm_cli.nn.blocks import switch_off_attention
    from annorm_cli.pipelines import inpaint_array
    from annorm_cli.datasets import holdout_list, load_photos

    check_max_side(max_side)
    check_outputs("inpaint", model, weights, overwrite, json=json_out, compare_out=compare_out)
    chosen, methods = _inpaint_choices(buckets, baselines, masks_per_photo)
    if record and (attention_off or not texture or not match):
        raise fail("--record writes the model's own metrics; it cannot be combined with --attention-off, --no-texture or --no-match.")
    network, card = weight_files.load(model, weights, task="inpaint")
    if attention_off and not switch_off_attention(network):
        raise fail("This network has no attention layers to switch off (it was trained with attention 'none').")
    dev = resolve_device(device)
    loaded = load_photos(photos) if photos else load_photos(data, holdout_list())
    truths = [photo.permute(1, 2, 0).numpy() for photo in loaded.values()]
    inception = None
    if perceptual:
        from annorm_cli.evaluate.fid import load_inception
        inception = load_inception(dev)
    annorm_fill = lambda image, mask: inpaint_array(network, image, mask, device=dev, max_side=max_side,  # noqa: E731
                                                    match=match, texture=texture)
    total = sum(2 * len(truths) if b == "flat" else masks_per_photo * len(truths) for b in chosen)
    with progress("fills", total) as advance:
        evaluation = metrics.evaluate_inpainting(annorm_fill, truths, chosen, methods, masks_per_photo=masks_per_photo,
                                                 perceptual=perceptual, inception=inception,
                                                 comparison_rows=6 if compare_out else 0, progress=advance)
    summary, results, tiles = evaluation.summary, evaluation.results, evaluation.tiles
    console = Console()
    for bucket, rows in summary.items():
        console.print(inpaint_table(bucket, rows, len(truths), masks_per_photo))
    if compare_out is not None and tiles:
        from annorm_cli.images import label_columns, make_grid, save_png
        save_png(label_columns(make_grid(np.stack(tiles), 5), ["input (hole in white)", "OpenCV Telea", "PatchMatch",
                                                               "annorm", "truth"]), compare_out)
    if json_out:
        write_json(json_out, {"model_sha256": card["sha256"], "max_side": max_side, "match": match, "texture": texture,
                              "attention_off": attention_off, "photos": list(loaded), "masks_per_photo": masks_per_photo,
                              "buckets": summary,
                              "per_fill": {b: r.scores for b, r in results.items()}})
    if record:
        _record_inpaint(model, weights, photos, len(loaded), masks_per_photo, summary)


def _inpaint_choices(buckets: str, baselines: str, masks_per_photo: int) -> tuple[list[str], list[str]]:
    """The buckets and baselines asked for, checked."""
    chosen = [b.strip() for b in buckets.split(",") if b.strip()]
    methods = [m.strip() for m in baselines.split(",") if m.strip()]
    if not chosen or any(b not in BUCKETS for b in chosen):
        raise fail(f"--buckets takes a comma-separated list of {', '.join(BUCKETS)}; got '{buckets}'.")
    if any(m not in BASELINES for m in methods):
        raise fail(f"--baselines takes a comma-separated list of {', '.join(BASELINES)}; got '{baselines}'.")
    if masks_per_photo < 1:
        raise fail(f"--masks-per-photo must be at least 1, got {masks_per_photo}.")
    return chosen, methods


def _record_inpaint(model, weights, photos, n_photos: int, masks_per_photo: int, summary: dict) -> None:
    """The tables into the model's card (metrics.inpaint_eval), with the command that made them."""
    import sys

    from annorm_cli import weights as weight_files
    _, card_path = weight_files.resolve(model, weights, task="inpaint")
    weight_files.record_metrics(card_path, {"inpaint_eval": {
        "photos": "held-out list" if photos is None else str(photos), "n_photos": n_photos,
        "masks_per_photo": masks_per_photo, "buckets": summary, "protocol": "annorm_cli/evaluate/inpainting.py",
        "command": "annorm " + " ".join(sys.argv[1:])}})


def inpaint_table(bucket: str, rows: dict, n_photos: int, masks_per_photo: int):
    from rich.table import Table
    fills = n_photos * (2 if bucket == "flat" else masks_per_photo)
    table = Table(title=f"{bucket} holes, {n_photos} photos, {fills} fills")
    columns = ["method", "PSNR in hole (dB)", "L1 in hole", "SSIM"]
    perceptual = any("kid" in r for r in rows.values())
    if perceptual:
        columns += ["KID x1000 (s.e.)", "KID - annorm (s.e.)", "crop FID", "feature dist. (s.e.)"]
    for column in columns:
        table.add_column(column)
    for method, r in rows.items():
        cells = [method, f"{r['psnr']:.2f}", f"{r['l1']:.4f}", f"{r['ssim']:.4f}"]
        if perceptual:
            paired = f"{r['kid_minus_annorm']:+.2f} ({r['kid_minus_annorm_se']:.2f})" if "kid_minus_annorm" in r else ""
            cells += [f"{r['kid']:.2f} ({r['kid_se']:.2f})", paired, f"{r['fid']:.1f}",
                      f"{r['feature_distance']:.4f} ({r['feature_distance_se']:.4f})"]
        table.add_row(*cells)
    return table
