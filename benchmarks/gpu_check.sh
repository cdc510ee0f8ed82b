#!/usr/bin/env bash
# One prepared GPU check: CUDA + bf16 smoke of every command that takes --device, GPU
# throughput for docs/benchmarks.md, the GPU tests, then the whole suite with a GPU visible.
#
#   bash benchmarks/gpu_check.sh OUTDIR            # on a CUDA machine
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh /tmp/gc   # dry run of the script itself
#
# Every step has its own time limit and its own rc in OUTDIR/summary.txt; one failing step does
# not stop the others. All logs go to OUTDIR/log.txt, throughput JSON to OUTDIR/*.json.
# On a machine without the package's dependencies (the lent GPU machines have torch, numpy,
# scipy, pandas, typer, safetensors, tifffile, einops, h5py... but not these), wheels in .whl/
# are installed first. Fetch them here once (`echo /.whl/ >> .git/info/exclude`), then carry
# `.whl` with the device call; imagecodecs (26 MB) does not fit the 64 MiB limit beside the repo:
#   python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64 -d .whl \
#     mrcfile==1.5.4 starfile==0.5.13 pydantic==2.14.4 pydantic_core==2.50.5 \
#     annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 gemmi==0.7.5 \
#     torch-ctf==0.6.0 torch-cubic-spline-grids==0.6.0 torch-fourier-filter==0.6.0 \
#     torch-fourier-rescale==0.6.0 torch-fourier-shift==0.6.0 torch-fourier-slice==0.6.0 \
#     torch-grid-utils==0.6.0 torch-image-interpolation==0.6.0 torch-motion-correction==0.6.0 \
#     cryosparc-tools==5.0.3
set -u
OUT=${1:?usage: gpu_check.sh OUTDIR}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET=${BUDGET:-480}  # seconds for the whole script: later steps are skipped, not cut short
W=$(mktemp -d /tmp/gpucheck.XXXX)
. "$(dirname "$0")/gpu_env.sh"  # T0, LOG, SUM, the wheels, PY, DRACO, step
if [ "$QUICK" = 1 ]; then N=2; SZ=512; STEPS=3; TSTEPS=2; BIG=1024; BS=4; else N=16; SZ=1024; STEPS=40; TSTEPS=20; BIG=4096; BS=32; fi

STAR=$W/sim/micrographs.star
MICS=$W/sim/micrographs

# 1. Environment and data: simulated triplets, raw movies, one 4096² micrograph for timings.
step env 60 bash -c "nvidia-smi -L; $PY -c 'import torch,sys; print(sys.version); print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else \"-\"); import draco_em; print(\"draco_em\", draco_em.__version__)'"
step simulate 120 $DRACO simulate "$W/sim" --n-micrographs $N --size $SZ --no-movies -j 8 -q
mkdir -p "$W/big"
step big_micrograph 60 $PY -c "
import numpy as np, mrcfile
a = np.random.default_rng(0).normal(size=($BIG, $BIG)).astype(np.float32)
with mrcfile.new('$W/big/big.mrc', overwrite=True) as m:
    m.set_data(a); m.voxel_size = 1.0
"
# 2. Pretraining with bf16 autocast (amp is on by default on CUDA): stage 2 (Eq. 5-10).
step pretrain_draco_bf16 150 $DRACO pretrain -o "$W/pt" --data "$STAR" --preset tiny \
    --device "$DEVICE" --batch-size $BS --max-steps $STEPS --epochs 50 --workers 4 --no-progress
# 3. Inference: the bundled denoiser on the device vs the CPU (bf16 vs fp32), 4096² timings.
step denoise_dev 120 $DRACO denoise "$MICS/*_EVN.mrc" -o "$W/dn_dev" --device "$DEVICE" --no-progress
step denoise_cpu 300 $DRACO denoise "$MICS/*_EVN.mrc" -o "$W/dn_cpu" --device cpu --no-progress
step denoise_compare 60 $PY -c "
import glob, os, numpy as np, mrcfile
r = []
for f in sorted(glob.glob('$W/dn_cpu/*.mrc')):
    g = os.path.join('$W/dn_dev', os.path.basename(f))
    a = mrcfile.read(f).astype(np.float64); b = mrcfile.read(g).astype(np.float64)
    r.append(np.linalg.norm(a - b) / np.linalg.norm(a))
print('denoise device vs cpu: relative L2 difference max %.2e mean %.2e over %d' % (max(r), np.mean(r), len(r)))
assert np.all(np.isfinite(r)) and max(r) < 5e-2
"
step denoise_4096_dev 120 $DRACO denoise "$W/big/big.mrc" -o "$W/dn_big" --device "$DEVICE" --no-progress
step denoise_4096_dev_again 120 $DRACO denoise "$W/big/big.mrc" -o "$W/dn_big2" --device "$DEVICE" --no-progress
# 4. Throughput (crops/s) for docs/benchmarks.md.
PRESETS="base tiny"; [ "$QUICK" = 1 ] && PRESETS=tiny
for preset in $PRESETS; do
    step "thr_${preset}_draco" 150 $PY benchmarks/train_throughput.py --preset $preset --device "$DEVICE" \
        --batch-size 64 --steps $TSTEPS --warmup 5 --workers 8 --threads 8 --json "$OUT/thr_${preset}_draco.json"
done
[ "$QUICK" = 1 ] || step thr_base_denoise 150 $PY benchmarks/train_throughput.py --preset base --device "$DEVICE" \
    --stage denoise --batch-size 32 --steps $TSTEPS --warmup 5 --workers 8 --threads 8 --json "$OUT/thr_base_denoise.json"
# 5. The other training paths: N2N fine-tune from the run above, DDP through torchrun (NCCL).
step pretrain_denoise_bf16 120 $DRACO pretrain -o "$W/pt_dn" --data "$STAR" --stage denoise --preset tiny \
    --init-weights "$W/pt" --device "$DEVICE" --batch-size $((BS / 2)) --max-steps $TSTEPS --workers 4 --no-progress
step denoise_own_run 120 $DRACO denoise "$MICS/*_EVN.mrc" -o "$W/dn_own" --weights "$W/pt_dn" --device "$DEVICE" --no-progress
step torchrun_ddp 120 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m draco_em pretrain \
    -o "$W/pt_ddp" --data "$STAR" --preset tiny --device "$DEVICE" --batch-size $BS \
    --max-steps $TSTEPS --workers 2 --no-progress
# 6. Picking, curation and motion correction on the device.
step pick_predict_4096_dev 120 $DRACO pick predict "$W/big/big.mrc" -o "$W/pick_big" --diameter 140 \
    --device "$DEVICE" --no-previews -q
step pick_train_dev 180 $DRACO pick train --micrographs "$MICS" --coords "$W/sim/coordinates" \
    --diameter 140 -o "$W/pick_run" --epochs 3 --device "$DEVICE"
step pick_predict_dev 120 $DRACO pick predict "$MICS/*[0-9].mrc" -o "$W/pick" --model "$W/pick_run" \
    --device "$DEVICE" -q
step curate_dev 120 $DRACO curate predict "$MICS/*[0-9].mrc" -o "$W/cur" --device "$DEVICE" -q
step simulate_movies 90 $DRACO simulate "$W/mov" --n-micrographs 2 --size $SZ --frames 20 -j 2 -q
step prepare_dev 150 $DRACO prepare "$W/mov/movies" -o "$W/prep" --device "$DEVICE" -q  # -j is for CPUs
# 7. The GPU tests (tests/test_gpu.py; the default suite hides GPUs).
[ "$QUICK" = 1 ] || step pytest_gpu 120 $PY -m pytest -v -rf -p no:cacheprovider --gpu -m gpu tests
# 8. Rarer paths: stage 1 (MAE), resume, FSDP2, torch.compile.
step pretrain_mae_bf16 90 $DRACO pretrain -o "$W/pt_mae" --data "$STAR" --stage mae --preset tiny \
    --device "$DEVICE" --batch-size $BS --max-steps $TSTEPS --workers 4 --no-progress
step resume 90 $DRACO pretrain -o "$W/pt" --resume latest --device "$DEVICE" --max-steps $((STEPS + 5)) \
    --no-progress
step fsdp 120 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m draco_em pretrain \
    -o "$W/pt_fsdp" --data "$STAR" --preset tiny --device "$DEVICE" --batch-size $BS \
    --max-steps $TSTEPS --fsdp --workers 2 --no-progress
step compile 180 $DRACO pretrain -o "$W/pt_compile" --data "$STAR" --preset tiny \
    --device "$DEVICE" --batch-size $BS --max-steps $TSTEPS --compile --workers 2 --no-progress
# 9. Last, the whole suite with the GPU visible: which CPU-written tests change on a GPU (one
#    result line per test, so the names survive a time-out).
#    imagecodecs (26 MB) does not fit the device's 64 MiB working-tree limit beside the repo, so
#    the LZW TIFF / EER tests are deselected where it is missing (they fail for that alone).
XD=""; $PY -c "import xdist" 2>/dev/null && XD="-n 8"
NOCODEC=""; $PY -c "import imagecodecs" 2>/dev/null || NOCODEC="--deselect tests/io/test_movies.py --deselect tests/prepare/test_prepare_run.py::test_mrc_tiff_and_eer_give_the_same_result"
[ "$QUICK" = 1 ] || step pytest_all_gpu_visible 250 $PY -m pytest -v -p no:cacheprovider --gpu $XD $NOCODEC tests
echo "total $(($(date +%s) - T0)) s" | tee -a "$SUM"
