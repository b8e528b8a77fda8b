#!/usr/bin/env bash
# The GPU checks of the neuron core, in one go, on a machine whose Python ($PY, default
# python3) has CUDA torch and Triton (membra itself need not be installed: it runs from src/):
#   1. every CUDA test (`-m gpu`: the Triton kernels' equivalence suite against the reference,
#      every model x surrogate kind, custom surrogates included) and the other CUDA-only tests;
#   2. the neuron bench on CUDA only (`membra.bench.run --devices cuda`), at the CPU bench's
#      shape and at a 16x wider layer, peers included when PEERS names a folder holding
#      SpikingJelly / snnTorch / Norse (COMPILE_S=0 skips torch.compile of the reference);
#   3. per-call overhead: the kernels called directly against through the ops, custom
#      surrogate over built-in, the inference path against one copy, RLIF as one node
#      (benchmarks/gpu_overhead.py);
#   4. the digits demo trained on CUDA for a few epochs.
# Usage: [PY=python3] [OUT=runs/gpu-check] [PEERS=folder of peer packages] bash benchmarks/gpu_check.sh
# Each part has its own time limit, and a failing part does not stop the next.
set -u
OUT=${OUT:-runs/gpu-check}
PY=${PY:-python3}
mkdir -p "$OUT/bench"
export PYTHONPATH="$PWD/src${PEERS:+:$PEERS}" PYTHONUNBUFFERED=1
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"
  "$PY" -c "from membra.kernels import available_backends as a; print('membra backends on cuda:', a('cuda'))"
  echo "cpus: $(nproc)"
} 2>&1 | tee "$OUT/env.txt"

echo "== 1. CUDA tests"
timeout "${TEST_S:-180}" "$PY" -m pytest -p no:cacheprovider -rfE -n 8 -m gpu \
  --continue-on-collection-errors tests 2>&1 | tee "$OUT/tests.log" | tail -n 40

echo "== 2. neuron bench on CUDA at the CPU bench's shape [T, 64, 16384], then at [T, 64, 262144]"
# (at the first shape a fused layer's fwd+bwd is mostly launch overhead on this GPU; the second
# is bandwidth-bound), then torch.compile of the reference loop on its own (its warm-up is long)
timeout "${BENCH_S:-150}" "$PY" -m membra.bench.run --devices cuda --no-plain --no-conv \
  --no-compile --repeats "${REPEATS:-20}" --budget 10 --out "$OUT/bench" 2>&1 \
  | tee "$OUT/bench.log" | tail -n 30
timeout "${BIG_S:-120}" "$PY" -m membra.bench.run --devices cuda --no-plain --no-conv \
  --no-compile --steps 16 64 --neurons 262144 --repeats 10 --budget 6 --out "$OUT/bench_big" \
  2>&1 | tee -a "$OUT/bench.log" | tail -n 16
if [ "${COMPILE_S:-120}" != 0 ]; then
  timeout "${COMPILE_S:-120}" "$PY" -m membra.bench.run --devices cuda --steps 4 16 \
    --only compile-reference --repeats "${REPEATS:-20}" --budget 10 \
    --out "$OUT/bench_compile" 2>&1 | tee -a "$OUT/bench.log" | tail -n 8
fi
rm -f "$OUT"/bench_big/speed_table.md "$OUT"/bench_compile/*.md

echo "== 3. per-call overhead (direct calls against the ops)"
timeout "${OVERHEAD_S:-120}" "$PY" benchmarks/gpu_overhead.py 3 2>&1 | tee "$OUT/gpu_overhead.txt"

echo "== 4. digits demo on CUDA"
timeout "${TRAIN_S:-60}" "$PY" -m membra train configs/digits_imp_lts.toml --device cuda \
  --set train.epochs=5 --set run.name=gpu_check_digits 2>&1 | tee "$OUT/train.log" | tail -n 15
