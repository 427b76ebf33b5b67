#!/usr/bin/env bash
# Sequence parallelism on the one-GPU machine, in one command (build + checks):
#   1. C++: the CUDA chunk calls of ring attention (CudaChunks) against the CPU
#      backend, and every other CUDA kernel test (regression), test_gpu.
#   2. Python: moddit.parallel through the CUDA backend (NCCL world size 1; two
#      processes sharing the GPU through gloo; two NCCL ranks on it where NCCL
#      allows), the CPU gloo tests and the diffusers context-parallel pipelines.
#   3. scripts/parallel_scaling.py under torchrun on 1 GPU, a few blocks and
#      steps (the script's smoke run: dense and moddit; the xdit engine too when
#      xfuser and yunchang are carried as wheels).
# Carry: .carry (Debian dev packages, scripts/gpu_build.sh) and .whl (diffusers,
# importlib_metadata; xfuser and its dependencies for the xdit engine).
# Usage: bash scripts/gpu_test_parallel.sh     (logs under $OUT or /tmp)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG=${OUT:-/tmp}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
rc=0

echo "== C++ test_gpu (CudaChunks and the other CUDA tests)"
TARGETS=test_gpu bash "$ROOT/scripts/gpu_build.sh" "$ROOT/build-gpu" >"$LOG/parallel_cpp_build.log" 2>&1 \
  || { tail -30 "$LOG/parallel_cpp_build.log"; exit 1; }
"$ROOT/build-gpu/tests/test_gpu" --gtest_brief=1 2>&1 | tee "$LOG/test_gpu.log" | tail -15
[ "${PIPESTATUS[0]}" = 0 ] || rc=1

echo "== Python (builds the module with CUDA)"
TESTS="tests/python/test_parallel_gpu.py tests/python/test_parallel.py tests/python/test_parallel_pipelines.py tests/python/test_gpu.py" \
  bash "$ROOT/scripts/gpu_test_python.sh" || rc=1
export PYTHONPATH=$ROOT/build-gpu-py/pkg:/tmp/site:${PYTHONPATH:-}
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}

echo "== parallel_scaling.py smoke (1 GPU, 2 blocks, 4 steps, 480p x 33)"
SMOKE="--layers 2 --steps 4 --warmup-steps 2 --interval 2 --height 480 --width 832 --frames 33"
engines="diffusers"
"$PY" -c "import xfuser, yunchang" 2>/dev/null && engines="diffusers xdit"
for engine in $engines; do
  for attn in dense moddit; do
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 "$ROOT/scripts/parallel_scaling.py" \
      --model wan --engine "$engine" --attention "$attn" $SMOKE --out "$LOG/smoke_${engine}_${attn}.json" \
      >"$LOG/smoke_${engine}_${attn}.log" 2>&1 && tail -2 "$LOG/smoke_${engine}_${attn}.log" \
      || { echo "FAILED: $engine $attn"; tail -20 "$LOG/smoke_${engine}_${attn}.log"; rc=1; }
  done
done
if [[ $engines == *xdit* ]]; then  # HunyuanVideo runs under xDiT only (diffusers has no plan for it)
  for attn in dense moddit; do
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 "$ROOT/scripts/parallel_scaling.py" \
      --model hunyuan --engine xdit --attention "$attn" $SMOKE --out "$LOG/smoke_hunyuan_${attn}.json" \
      >"$LOG/smoke_hunyuan_${attn}.log" 2>&1 && tail -2 "$LOG/smoke_hunyuan_${attn}.log" \
      || { echo "FAILED: hunyuan xdit $attn"; tail -20 "$LOG/smoke_hunyuan_${attn}.log"; rc=1; }
  done
fi
exit "$rc"
