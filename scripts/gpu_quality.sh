#!/usr/bin/env bash
# On the GPU machine: the generated-video quality evaluation of moddit-tiny
# (scripts/quality.py, docs/QUALITY.md) within QUALITY_SECONDS (default 330),
# everything in ONE file, $OUT/quality.tar.gz (results JSON with every number and
# the per-pair PSNR / SSIM, the attention statistics JSON, frame PNGs, the log),
# then a short summary as the last lines.
#
# It needs the Python module built with CUDA: either `import moddit` already
# works (PYTHONPATH set by the caller), or scripts/gpu_test_python.sh ran before
# in the same call (its build-gpu-py/pkg and the diffusers wheels in /tmp/site
# are then used). Typical call (carry .whl and .carry, timeout_s 600):
#   scripts/gpu_test_python.sh; QUALITY_SECONDS=330 scripts/gpu_quality.sh
# Here, on the CPU: scripts/gpu_quality.sh --smoke (the whole path, small size).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUT:-/tmp}
PY=${PYTHON:-python3}
SECONDS_BUDGET=${QUALITY_SECONDS:-330}
export PYTHONUNBUFFERED=1
# The portable kernel unless told (MODDIT_CUDA_KERNEL=auto: moddit's default, the
# Hopper kernel on an H200; the report names the kernel): the Hopper kernel stalled
# in the MOD-DiT run of 2026-12-03 18:0x UTC, cause open (docs/LOG.md;
# scripts/stress_moddit_run.py reproduces that run step by step).
export MODDIT_CUDA_KERNEL=${MODDIT_CUDA_KERNEL:-sm80}

if ! "$PY" -c 'import moddit' 2>/dev/null; then
  for dir in "$ROOT/build-gpu-py/pkg" /tmp/site; do
    [ -d "$dir" ] && export PYTHONPATH=$dir:${PYTHONPATH:-}
  done
  LIB=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu
  [ -d "$LIB" ] && export LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
fi
if ! "$PY" -c 'import moddit, diffusers, torch; print("moddit", moddit.__version__, "cuda",
moddit.cuda_available(), "torch", torch.__version__, "diffusers", diffusers.__version__)'; then
  echo "gpu_quality: moddit (with diffusers) is not importable; build it first" \
       "(scripts/gpu_test_python.sh) or set PYTHONPATH" >&2
  exit 3
fi

WORK=$(mktemp -d /tmp/moddit-quality.XXXXXX)
mkdir -p "$WORK/quality"
# The evaluation ends itself within its budget; the timeout is a backstop that
# still leaves the tar (results are rewritten after every run).
timeout --kill-after=10 $((${SECONDS_BUDGET%.*} + 40)) \
  "$PY" "$ROOT/scripts/quality.py" --model "$ROOT/models/moddit-tiny" --out-dir "$WORK/quality" \
  --scratch "$WORK" --budget-seconds "$SECONDS_BUDGET" --no-summary "$@" 2>&1 | tee "$WORK/quality/stdout.log"
rc=${PIPESTATUS[0]}
rm -f "$WORK"/*.safetensors "$WORK"/*.spool-* 2>/dev/null
tar czf "$OUTDIR/quality.tar.gz" -C "$WORK" quality
echo "gpu_quality: exit $rc, $OUTDIR/quality.tar.gz $(du -k "$OUTDIR/quality.tar.gz" | cut -f1) KiB:" \
     "$(tar tzf "$OUTDIR/quality.tar.gz" | tr '\n' ' ')"
if [ -f "$WORK/quality/quality_results.json" ]; then
  "$PY" "$ROOT/scripts/quality.py" --print-summary "$WORK/quality/quality_results.json"
fi
rm -rf "$WORK"
exit "$rc"
