"""scripts/cifar10-on-gpu.sh, run on the CPU with a tiny model for a few seconds: both runs
resume the given state, train at full rates, then decay to 0 from where phase 1 stopped."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from annorm_cli.train.common import load_checkpoint
from helpers import tiny_image_folder

ROOT = Path(__file__).resolve().parents[1]


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
    env = {**os.environ, "START": str(tmp_path / "start"), "DATA": str(data), "DEVICE": "cpu", "BATCHES": "4 8",
           "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "scripts/cifar10-on-gpu.sh", str(tmp_path / "runs"), "0.6"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for batch in (4, 8):
        phase1 = load_checkpoint(tmp_path / "runs" / f"b{batch}" / "phase1.pt", task="class")
        final = load_checkpoint(tmp_path / "runs" / f"b{batch}", task="class")
        assert phase1["step"] > 1 and final["step"] > phase1["step"]
        assert phase1["options"]["batch_size"] == final["options"]["batch_size"] == batch
        assert (phase1["options"]["lr_g"], phase1["options"]["lr_d"]) == (1e-4, 4e-4)
        assert final["options"]["lr_decay_start"] == phase1["step"] < final["options"]["steps"]
        assert f"b{batch}: ended at step {final['step']}" in done.stdout
