#!/usr/bin/env bash
# Issue 20's GPU-sized denoiser recipe, in one device call: simulate the realistic training set
# on the machine's CPUs, fine-tune the bundled denoiser (v6) on the card
# (recipes/realistic_denoiser.py, its "GPU-sized run"), export the candidate, and score it
# beside v6 on the recipe's validation micrographs (benchmarks/val_micrographs.py, the v2-v6
# rule's metric). What comes back in OUTDIR is then measured here, on the CPU, the same way
# as v6 (docs/benchmarks.md, "Issue 20: the GPU-sized recipe").
#
#   bash benchmarks/gpu_recipe.sh OUTDIR                      # on a CUDA machine
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_recipe.sh /tmp/gr  # dry run of the script itself
#
# The simulator draws from the structure library (../shared/data/structures), which the device
# machine lacks; a run without one would train on phantoms, so the script refuses to start.
# For the call, copy it into a git-ignored folder beside the wheels (gpu_check.sh's header
# fetches them; cryosparc-tools is not needed here), carry both, and remove the copy after
# (it is transport only, never committed). Sizes: tracked files 39.5 MiB + structures
# 16.3 MiB + wheels 5.8 MiB, under the 64 MiB a call carries.
#   echo /.carry/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
#   mkdir -p .carry && cp -r ../shared/data/structures .carry/ && rm -f .whl/cryosparc_tools*
#   run: DRACO_STRUCTURES=.carry/structures bash benchmarks/gpu_recipe.sh $OUT
#        (carry: [".whl", ".carry"], timeout_s 600); afterwards: rm -rf .carry
set -u
OUT=${1:?usage: gpu_recipe.sh OUTDIR}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET=${BUDGET:-585}  # seconds; one device command may run 600
W=${WORK:-$(mktemp -d /tmp/gpurecipe.XXXX)}
if [ -z "${DRACO_STRUCTURES:-}" ] || [ ! -f "${DRACO_STRUCTURES}/structures.csv" ]; then
    echo "DRACO_STRUCTURES must name a copy of shared/data/structures (see the header)" >&2
    exit 2  # before the wheels: a refused call costs no device time beyond its start
fi
export DRACO_STRUCTURES=$(cd "$DRACO_STRUCTURES" && pwd)
. "$(dirname "$0")/gpu_env.sh"  # T0, LOG, SUM, the wheels, PY, DRACO, step
# The GPU-sized run: 64 training micrographs per pixel size (v6: 32), 64 crops each per
# epoch (v6: 32), 8 epochs, batch 64; --max-steps caps it and the training step's time limit
# stops it where the card is slower than planned (best.pt is kept at each epoch's validation;
# cut before the first one, the export falls back to latest.pt and says so in log.txt).
if [ "$QUICK" = 1 ]; then
    ARGS="--train-per-pixel 1 --crops 2 --epochs 1 --batch-size 2 --max-steps 2 --workers 0 --jobs 2"
    TRAIN_S=300
else
    ARGS="--train-per-pixel 64 --crops 64 --epochs 8 --batch-size 64 --max-steps 2400 --workers 8 --jobs 16"
    TRAIN_S=280
fi
RUN=$W/run_gpu
step env 60 bash -c "nvidia-smi -L; $PY -c 'import torch; print(torch.__version__, torch.cuda.is_available())'"
# Simulation and training in one step (the recipe makes its sets, then trains); where the time
# limit cuts training short, the export below takes the best epoch so far.
step recipe $((150 + TRAIN_S)) $PY recipes/realistic_denoiser.py --workdir "$W" --run-name run_gpu \
    --device "$DEVICE" $ARGS
step export 60 $DRACO export "$RUN" -o "$OUT/draco_denoise_tiny_gpu.safetensors" --which best \
    --half --overwrite
# The v2-v6 rule's metric on the same validation micrographs, the bundled v6 beside it (8
# rows with clean images are the validation set: the recipe's split holds back exactly them).
step val_psnr 150 bash -c "$PY benchmarks/val_micrographs.py --data '$W/all.star' \
    --val-fraction \$($PY -c \"from draco_em.io.star import read_micrographs_star as r; \
print(8 / len(r('$W/all.star').micrographs))\") --weights \
    src/draco_em/weights/draco_denoise_tiny.safetensors '$OUT/draco_denoise_tiny_gpu.safetensors' \
    --device $DEVICE > '$OUT/val_psnr.json'"
for f in config.yaml run.log metrics.jsonl; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done
echo "total $(($(date +%s) - T0)) s" | tee -a "$SUM"
