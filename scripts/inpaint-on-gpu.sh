#!/usr/bin/env bash
# Continue the inpainting realism run (issue 33: the committed design, e.g. PatchMatch proposals refined) on a GPU for
# a fixed number of minutes, from the committed training state, with a larger batch than the CPU's:
#
#   bash scripts/inpaint-on-gpu.sh RUN MINUTES          e.g. bash scripts/inpaint-on-gpu.sh ~/runs/inpaint-gpu 8
#
# RUN is an ordinary run folder (log.jsonl, samples-*.png, checkpoint.pt, checkpoint-STEP.pt every
# 1,000 steps): bring it back and export it with `annorm train export RUN --out W.safetensors`, or
# run the script again with START=RUN to go on. The run stops with SIGINT before the deadline, so
# it writes its checkpoint on the way out. Environment: START (default
# weights/scenes-inpaint-an-proposal.train.pt, the committed state of the current design), BATCH (default 32: the CPU runs
# at 8), DATA (default the trainer's: ../shared/data/scenes), DEVICE (default cuda), THREADS
# (default 4: the data pipeline's), PYTHON (default python3; annorm must be importable by it).
set -euo pipefail
run=${1:?usage: inpaint-on-gpu.sh RUN MINUTES}
minutes=${2:?usage: inpaint-on-gpu.sh RUN MINUTES}
start_state=${START:-weights/scenes-inpaint-an-proposal.train.pt}
batch=${BATCH:-32}
device=${DEVICE:-cuda}
threads=${THREADS:-4}
python=${PYTHON:-python3}
data_option=()
[[ -n "${DATA:-}" ]] && data_option=(--data "$DATA")

seconds=$("$python" -c "print(int(float('$minutes') * 60))")
margin=$(( seconds / 10 < 20 ? seconds / 10 : 20 ))       # for the final checkpoint
budget=$(( seconds - margin > 1 ? seconds - margin : 1 ))

# checkpoint STEP WALL_TIME of a run folder or checkpoint file
progress() { "$python" - "$1" <<'PY'
import sys
from annorm_cli.train.common import load_checkpoint
saved = load_checkpoint(sys.argv[1], task="inpaint")
print(int(saved["step"]), float(saved["wall_time"]))
PY
}

read -r start_step start_wall < <(progress "$start_state")
echo "start: $start_state at step $start_step; batch $batch; $minutes min on $device"
rc=0
timeout -s INT "$budget" "$python" -m annorm_cli train inpaint --out "$run" --resume "$start_state" \
    --batch-size "$batch" --steps 100000000 --device "$device" --threads "$threads" \
    --checkpoint-minutes 2 --keep-every 1000 --sample-every 500 --quiet "${data_option[@]}" || rc=$?
[[ $rc -eq 0 || $rc -eq 124 || $rc -eq 130 ]] || { echo "the run failed ($rc)"; exit "$rc"; }

read -r step wall < <(progress "$run")
"$python" -c "
steps, wall = $step - $start_step, max($wall - $start_wall, 1e-9)
print(f'ended at step $step: {steps} steps in {wall:.0f} s of training, {steps / wall:.2f} steps/s, '
      f'{steps * $batch / wall:.1f} img/s at batch $batch')"
