#!/usr/bin/env bash
# On the GPU machine, after gpu_build.sh: Nsight Compute on one forward launch of
# `moddit bench` (default: Wan 480p, dense and random 0.5), with the warp stall
# breakdown. Reports go to $OUT when set.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
LOG=${OUT:-/tmp}
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
M=gpu__time_duration.sum,smsp__inst_executed.sum,sm__warps_active.avg.pct_of_peak_sustained_active,sm__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active
M=$M,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,lts__t_sector_hit_rate.pct
M=$M,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__throughput.avg.pct_of_peak_sustained_elapsed
for r in barrier long_scoreboard wait math_pipe_throttle short_scoreboard mio_throttle lg_throttle dispatch_stall no_instruction selected not_selected branch_resolving membar; do
  M=$M,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
done
# KERNEL=1 profiles the map pass (the instantiation with MAP = true) instead;
# KNAME overrides the kernel-name filter (the default matches the Hopper
# kernel and the portable one: attention_kernel_sm90<D, T, (bool)MAP>).
for d in ${DENS:-1 0.5}; do
  echo "== ${SHAPE:-wan} density $d ${MODDIT_CUDA_KERNEL:-} map=${KERNEL:-0}"
  ncu --clock-control none --kernel-name-base demangled --kernel-name "${KNAME:-regex:attention_kernel.*bool.${KERNEL:-0}>}" \
    --launch-skip 1 -c 1 --metrics "$M" \
    "$BUILD/cli/moddit" bench --shapes ${SHAPE:-wan} --densities $d --layouts random --iters 1 \
    $([ "${KERNEL:-0}" = 1 ] || echo --no-map) \
    >"$LOG/ncu_${d}_${KERNEL:-0}.txt" 2>&1
  grep -E "^\s+(gpu__|sm__|smsp__|lts__|dram__)" "$LOG/ncu_${d}_${KERNEL:-0}.txt" | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | awk '{printf "  %-60s %s\n", $1, $NF}'
done
