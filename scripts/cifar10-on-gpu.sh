#!/usr/bin/env bash
# Continue the shipped cifar10-an run on a GPU for a fixed number of minutes, one run per batch
# size side by side on the one GPU (each run is bound by kernel launches, not by the GPU's
# arithmetic, so they share it well), each resumed from the committed state:
#
#   phase 1 (60% of the time): both learning rates back at full (1e-4 / 4e-4), no decay;
#   phase 2 (the rest): linear decay to 0, over as many steps as phase 1's measured rate fits.
#
#   bash scripts/cifar10-on-gpu.sh RUNS MINUTES            e.g. bash scripts/cifar10-on-gpu.sh ~/runs/gpu 8
#
# RUNS/b64, RUNS/b256 ... are ordinary run folders (log.jsonl, samples-*.png, checkpoint.pt;
# phase1.pt: the checkpoint where phase 1 ended):
# export one with `annorm train export` as for any run. Environment: BATCHES (default "64 256"),
# DATA (default the trainer's), DEVICE (default cuda), START (default weights/cifar10-an.train.pt),
# PYTHON (default python3; the annorm package must be importable by it), FAST (default 1: the fast
# step, `train class --fast`: fused Adam, G and D compiled with CUDA graphs; FAST=0: the plain step;
# the first steps of a fast run include the compilation, so its rate over a short run is a floor).
set -euo pipefail
runs=${1:?usage: cifar10-on-gpu.sh RUNS MINUTES}
minutes=${2:?usage: cifar10-on-gpu.sh RUNS MINUTES}
batches=${BATCHES:-"64 256"}
device=${DEVICE:-cuda}
start_state=${START:-weights/cifar10-an.train.pt}
python=${PYTHON:-python3}
data_option=()
[[ -n "${DATA:-}" ]] && data_option=(--data "$DATA")
now() { date +%s; }

begin=$(now)
seconds=$("$python" -c "print(int(float('$minutes') * 60))")
margin=$(( seconds / 10 < 30 ? seconds / 10 : 30 ))   # for phase 2's start-up and its final checkpoint
finish=$((begin + seconds))
phase1_end=$((begin + seconds * 6 / 10))
fast_option=()
[[ "${FAST:-1}" != 0 ]] && fast_option=(--fast)
common=(--device "$device" --precision fp32 --fid-every 0 --sample-every 1000 --keep-every 0
        --checkpoint-minutes 1 --threads 2 --quiet "${data_option[@]}" "${fast_option[@]}")

# checkpoint STEP WALL_TIME of a run folder or checkpoint file
progress() { "$python" - "$1" <<'EOF'
import sys
from annorm_cli.train.common import load_checkpoint
saved = load_checkpoint(sys.argv[1], task="class")
print(int(saved["step"]), float(saved["wall_time"]))
EOF
}

seconds_until() { local left=$(( $1 - $(now) )); echo $(( left > 1 ? left : 1 )); }

# a stopped run exits 130 (the checkpoint is written first); anything else is a failure
stopped_ok() { local rc=$1; [[ $rc -eq 0 || $rc -eq 124 || $rc -eq 130 ]]; }

read -r start_step start_wall < <(progress "$start_state")
echo "start: $start_state at step $start_step; batches: $batches; $minutes min on $device"

echo "phase 1: full rates until $(date -d @$phase1_end +%T)"
pids=()
for batch in $batches; do
    timeout -s INT $(seconds_until $phase1_end) "$python" -m annorm_cli train class --out "$runs/b$batch" \
        --resume "$start_state" --batch-size "$batch" --lr-g 1e-4 --lr-d 4e-4 \
        --steps 100000000 --lr-decay-start 100000000 "${common[@]}" &
    pids+=($!)
done
for pid in "${pids[@]}"; do rc=0; wait "$pid" || rc=$?; stopped_ok $rc || { echo "phase 1 failed ($rc)"; exit 1; }; done
for batch in $batches; do cp "$runs/b$batch/checkpoint.pt" "$runs/b$batch/phase1.pt"; done

pids=()
for batch in $batches; do
    read -r step wall < <(progress "$runs/b$batch")
    rate=$("$python" -c "print(($step - $start_step) / max($wall - $start_wall, 1e-9))")
    decay=$("$python" -c "print(max(1, int($rate * 0.85 * ($finish - $(now) - $margin))))")
    echo "b$batch: phase 1 ended at step $step ($rate steps/s of training); phase 2 decays over $decay steps"
    timeout -s INT $(seconds_until $finish) "$python" -m annorm_cli train class --out "$runs/b$batch" \
        --resume "$runs/b$batch" --steps $((step + decay)) --lr-decay-start "$step" "${common[@]}" &
    pids+=($!)
done
for pid in "${pids[@]}"; do rc=0; wait "$pid" || rc=$?; stopped_ok $rc || { echo "phase 2 failed ($rc)"; exit 1; }; done

for batch in $batches; do
    read -r step wall < <(progress "$runs/b$batch")
    echo "b$batch: ended at step $step"
done
