#!/usr/bin/env bash
# Recreate the cryoJAX venv used by benchmarks/indep_sim/make_sets.py (never a draco-em dependency).
# Usage: bash benchmarks/indep_sim/setup_venv.sh [/work/venvs/cryojax]
set -euo pipefail
VENV="${1:-/work/venvs/cryojax}"
python3 -m venv "$VENV"
# Versions measured to work on 2026-12-04 (Python 3.11, CPU only; jax pulls jaxlib CPU wheels).
"$VENV/bin/pip" install cryojax==0.6.0 equinox==0.13.8 jax==0.10.2 jaxlib==0.10.2 \
    mrcfile==1.5.4 starfile==0.5.13 gemmi==0.7.5 scipy==1.17.1 numpy==2.4.6 pandas==3.1.1
"$VENV/bin/python" -c "import cryojax, jax; print('cryojax', cryojax.__version__, jax.devices())"
