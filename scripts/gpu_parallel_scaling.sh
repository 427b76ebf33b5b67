#!/usr/bin/env bash
# Measured scaling of sequence parallelism (issue 14, item 5; docs/BENCHMARKS.md):
# the whole 50-step run of a Wan 2.1 14B-config transformer at 720p x 81 and a
# HunyuanVideo-config one at 720p x 129 on 1, 2 and 4 GPUs, dense (the engine's
# own attention: xDiT's USP with its default backend) against moddit, and the
# speedups over one GPU dense, in a Markdown table.
#
# Needs a several-GPU machine (nvidia-h200-x2 / -x4), the module built with CUDA
# (scripts/gpu_test_python.sh builds build-gpu-py/pkg) and, for ENGINE=xdit, the
# xfuser and yunchang wheels (with their dependencies) carried in .whl. ENGINE=
# diffusers runs Wan on diffusers' context parallelism instead (no xfuser; no
# HunyuanVideo). The lent machines require NVLS / multicast off: set below.
#
# Usage: GPUS="1 2 4" MODELS="wan hunyuan" ENGINE=xdit bash scripts/gpu_parallel_scaling.sh
#        EXTRA="--steps 50" (any parallel_scaling.py option; one run per command line)
# A 1-GPU 720p run takes tens of minutes (one Wan forward is ~10 s there): run the
# configurations one per command (GPUS=1 MODELS=wan ATTN=dense ...) where a command
# has a time limit.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG=${OUT:-/tmp}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
export PYTHONPATH=$ROOT/build-gpu-py/pkg:/tmp/site:${PYTHONPATH:-}
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
PY=${PYTHON:-python3}
ENGINE=${ENGINE:-xdit}
NGPU=$(nvidia-smi -L | wc -l)
rc=0
for model in ${MODELS:-wan hunyuan}; do
  for n in ${GPUS:-1 2 4}; do
    if [ "$n" -gt "$NGPU" ]; then echo "skip $model on $n GPUs: $NGPU here"; continue; fi
    for attn in ${ATTN:-dense moddit}; do
      out=$LOG/scaling_${model}_${ENGINE}_${n}gpu_${attn}.json
      echo "== $model, $n GPU(s), $attn ($ENGINE)"
      "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" \
        "$ROOT/scripts/parallel_scaling.py" --model "$model" --engine "$ENGINE" --attention "$attn" \
        --out "$out" ${EXTRA:-} 2>&1 | tee "$LOG/scaling_${model}_${ENGINE}_${n}gpu_${attn}.log" | grep -E "built|total|step 1/|rror" \
        || rc=1
    done
  done
done
"$PY" - "$LOG" <<'PYEOF'
import glob, json, os, sys
rows = {}
for f in glob.glob(os.path.join(sys.argv[1], "scaling_*.json")):
    r = json.load(open(f))
    rows[(r["model"].split()[0], r["engine"], r["world"], r["attention"])] = r
print("| model | engine | GPUs | attention | 50-step s | vs 1-GPU dense | vs 1-GPU moddit | density |")
print("|---|---|---|---|---|---|---|---|")
for (m, e, w, a), r in sorted(rows.items()):
    d1 = rows.get((m, e, 1, "dense")); m1 = rows.get((m, e, 1, "moddit"))
    sp = lambda base: f"{base['total_seconds'] / r['total_seconds']:.2f}x" if base else "-"
    dens = r.get("mean_density")
    print(f"| {m} | {e} | {w} | {a} | {r['total_seconds']:.1f} ({r['steps']} steps) | {sp(d1)} | "
          f"{sp(m1) if a == 'moddit' else '-'} | {dens:.3f} |" if dens else
          f"| {m} | {e} | {w} | {a} | {r['total_seconds']:.1f} ({r['steps']} steps) | {sp(d1)} | - | - |")
print(f"\n{r['gpu']}, {r['date']}" if rows else "no results")
PYEOF
exit "$rc"
