"""scripts/cifar10-on-gpu.sh, run on the CPU with a tiny model for 90 s: both runs resume
the given state (at a step no fresh run could reach in that time), train at full rates, then
decay to 0 from where phase 1 stopped."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from annorm_cli.train.common import load_checkpoint
from helpers import tiny_image_folder

ROOT = Path(__file__).resolve().parents[1]
START_STEP = 1_000_000


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_the_gpu_script_resumes_trains_and_decays_each_batch_size(tmp_path, monkeypatch):
    from annorm_cli.cli.app import app
    from annorm_cli.cli.errors import run_guarded
    monkeypatch.setenv("ANNORM_CACHE", str(tmp_path / "cache"))
    data = tiny_image_folder(tmp_path / "data")
    assert run_guarded(app, ["train", "class", "--out", str(tmp_path / "start"), "--steps", "1", "--data", str(data),
                             "--batch-size", "4", "--precision", "fp32", "--classifier", "", "--g-channels",
                             "16,8,8,8", "--d-channels", "8,8,8,8", "--entities", "4", "--device", "cpu",
                             "--lr-decay-start", "1"]) == 0
    start = load_checkpoint(tmp_path / "start", task="class")
    start["step"] = START_STEP                            # a resume continues from here; a fresh run starts at 0
    torch.save(start, tmp_path / "start.pt")
    env = {**os.environ, "START": str(tmp_path / "start.pt"), "DATA": str(data), "DEVICE": "cpu", "BATCHES": "4 8",
           "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "FAST": "0"}   # compiling on a CPU takes the minute
    done = subprocess.run(["bash", "scripts/cifar10-on-gpu.sh", str(tmp_path / "runs"), "1.5"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"at step {START_STEP}" in done.stdout
    for batch in (4, 8):
        phase1 = load_checkpoint(tmp_path / "runs" / f"b{batch}" / "phase1.pt", task="class")
        final = load_checkpoint(tmp_path / "runs" / f"b{batch}", task="class")
        assert START_STEP < phase1["step"] < final["step"]
        assert phase1["options"]["batch_size"] == final["options"]["batch_size"] == batch
        assert (phase1["options"]["lr_g"], phase1["options"]["lr_d"]) == (1e-4, 4e-4)
        assert final["options"]["lr_decay_start"] == phase1["step"] < final["options"]["steps"]
        assert f"b{batch}: ended at step {final['step']}" in done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_the_inpainting_gpu_script_resumes_the_realism_state_and_reports_its_rate(tmp_path, monkeypatch):
    from annorm_cli.train import inpainting as trainer
    from helpers import TINY_INPAINT
    photos = tiny_image_folder(tmp_path / "photos", per_class=3)
    options = trainer.InpaintOptions(data=str(photos), steps=1, batch_size=2, crop=16, adv_start=0, adv_weight=0.5,
                                     feature_weight=5.0, rec_weight=0.5, d_channels=4, d_layers=2,
                                     inference_scale=True, object_masks=0.7, reconstruction="l1")
    trainer.train(options, TINY_INPAINT, tmp_path / "start", device=torch.device("cpu"))
    start = load_checkpoint(tmp_path / "start", task="inpaint")
    start["step"] = START_STEP
    torch.save(start, tmp_path / "start.pt")
    env = {**os.environ, "START": str(tmp_path / "start.pt"), "DEVICE": "cpu", "BATCH": "4", "THREADS": "1",
           "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "ANNORM_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(["bash", "scripts/inpaint-on-gpu.sh", str(tmp_path / "run"), "0.5"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    final = load_checkpoint(tmp_path / "run", task="inpaint")
    assert f"at step {START_STEP}" in done.stdout and final["step"] > START_STEP
    assert final["options"]["batch_size"] == 4 and final["options"]["adv_weight"] == 0.5     # the realism recipe
    assert final["options"]["d_layers"] == 2 and final["options"]["data"] == str(photos)
    assert f"ended at step {final['step']}" in done.stdout and "img/s at batch 4" in done.stdout
