# Sourced by the GPU scripts (gpu_check.sh, gpu_recipe.sh): the shared set-up of one device call.
# Needs OUT (made absolute here) and BUDGET (seconds for the whole script); sets T0, LOG, SUM,
# PY, DRACO and step(). On a machine without the package's dependencies, the wheels in .whl/
# are installed first (gpu_check.sh's header has the `pip download` command that fetches them).
T0=$(date +%s)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/log.txt
SUM=$OUT/summary.txt
: >"$LOG"
: >"$SUM"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
DRACO="$PY -m draco_em"

step() {  # step NAME LIMIT_S CMD...  (the limit shrinks to what is left of BUDGET)
    local name=$1 lim=$2 s rc left ms
    shift 2
    left=$((BUDGET - ($(date +%s) - T0)))
    if [ "$left" -lt 15 ]; then
        printf '%-24s skipped (budget)\n' "$name" | tee -a "$SUM"
        return
    fi
    [ "$lim" -gt "$left" ] && lim=$left
    echo "===== $name: $*" >>"$LOG"
    s=$(date +%s%N)
    timeout "$lim" "$@" >>"$LOG" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - s) / 1000000))
    printf '%-24s rc=%-3d %5d.%01d s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) | tee -a "$SUM"
}
