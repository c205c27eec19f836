#!/usr/bin/env bash
# One GPU check, for a session lent a GPU (the device tool): the CUDA tests, then the GPU
# benchmarks (kernels against the device's memory bandwidth, end to end, hosted models,
# set-level strategies), each in a time box, ending with one table of every figure and ratio.
# Everything it prints is also kept in $OUT/gpu.log (the device tool brings $OUT back).
#
#   bash bench/gpu.sh                 # on the GPU machine: about 5 minutes
#   SMOKE=1 bash bench/gpu.sh         # anywhere (falls back to the CPU): tiny sizes, checks the script itself
#
# The device image has torch, onnxruntime, grpcio, numpy and prometheus-client. The rest of
# what poolscore and its tests need travels as wheels in .whl/ (ignored by git; make them here
# with `pip download -d .whl pyarrow tqdm scipy hypothesis pytest grpcio-health-checking
# grpcio-reflection scikit-learn onnx` and name .whl in the run's carry).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/poolscore-gpu}"
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
: >"$LOG"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
smoke="${SMOKE:-0}"

say() { echo "$@" | tee -a "$LOG"; }
boxed() {  # boxed SECONDS LABEL CMD...: run with a time limit, output to the log, status noted
    local limit=$1 label=$2; shift 2
    say "== $label (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    say "== $label: rc=$rc in $((SECONDS - start))s"
}

say "== machine"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: CPU only") | tee -a "$LOG"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOG"

if [ -d .whl ]; then  # the wheels that travelled: poolscore's own deps beside the image's
    $PY -m pip install -q --no-index --find-links .whl pyarrow tqdm scipy hypothesis pytest grpcio-health-checking \
        grpcio-reflection scikit-learn onnx 2>&1 | tail -2 | tee -a "$LOG"
fi
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2 | tee -a "$LOG"

if [ "$smoke" = 1 ]; then
    K="--quick --rows 0.05"; E="--quick"; M="--rows 5000 --features 32 --classes 10"; S="--quick --m 2000 --d 32 --k 50"
    TESTS="tests/test_topk.py"
else
    K=""; E="--quick"; M="--rows 200000"; S="--m 100000 --d 512 --k 1000"
    # the tests whose fixtures run on every device torch sees (conftest.DEVICES): CUDA included there
    TESTS="tests/test_parity.py tests/test_topk.py tests/test_compiled.py tests/test_models.py tests/test_setlevel.py tests/test_service.py"
fi

boxed 100 "CUDA tests" $PY -m pytest -q -x -p no:cacheprovider $TESTS
boxed 70 "kernels vs memory bandwidth" $PY bench/kernels.py $K
boxed 50 "end to end" $PY bench/e2e.py $E
boxed 40 "hosted models" $PY bench/models.py $M
boxed 40 "set-level strategies" $PY bench/setlevel.py $S

say ""
say "== the figures (every line of the benches' output with a ratio or a rate)"
grep -E "[0-9.]+x|x\)|GB/s|rows/s|passed|failed|rc=" "$LOG" | grep -v "^== .*limit" | tee "$OUT/table.txt"
