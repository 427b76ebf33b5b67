#!/usr/bin/env bash
# Trains moddit-tiny on the GPU machine in one call (issue 11) and leaves under
# $OUT what comes back (at most 8 files):
#   $OUT/moddit-tiny/   config.json, diffusion_pytorch_model.safetensors.index.json,
#                       3 bf16 shards < 15 MiB, prompt_embeds.safetensors, README.md
#   $OUT/tiny_run.tar.gz  train_log.jsonl, settings.json, loss.png, samples.png,
#                         samples.gif, stdout.log
# There: no diffusers (carried as wheels in .whl/, see scripts/gpu_test_python.sh)
# and no built moddit module (moddit.tiny needs none: the sources are imported).
#
# Usage (the `run` tool, carry [".whl"], timeout_s 600):
#   scripts/gpu_train_tiny.sh                 # MINUTES=8.75: the python script's budget
#   scripts/gpu_train_tiny.sh --smoke         # seconds, also on a CPU machine
# Extra arguments go to scripts/train_tiny.py (e.g. --heads 6 --head-dim 64).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/tiny-out}
RUN=${RUN:-/tmp/tiny-run}
MINUTES=${MINUTES:-8.75}
SITE=${SITE:-/tmp/site}
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
  export PYTHONPATH=$SITE:$ROOT/python${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}
fi

rm -rf "$RUN" "$OUT/moddit-tiny" "$OUT/tiny_run.tar.gz"
mkdir -p "$RUN" "$OUT"
budget=(--minutes "$MINUTES")
for a in "$@"; do [ "$a" = --smoke ] && budget=(); done
"$PY" scripts/train_tiny.py --out "$RUN" --model-dir "$OUT/moddit-tiny" "${budget[@]}" "$@" \
  2>&1 | tee "$RUN/stdout.log"
rc=${PIPESTATUS[0]}

# One archive of the run; without the GIF if it would pass the 16 MiB per file.
files=()
for f in train_log.jsonl settings.json loss.png samples.png samples.gif stdout.log; do
  [ -f "$RUN/$f" ] && files+=("$f")
done
tar czf "$OUT/tiny_run.tar.gz" -C "$RUN" "${files[@]}"
if [ "$(stat -c %s "$OUT/tiny_run.tar.gz")" -gt $((16 * 1024 * 1024 - 65536)) ]; then
  echo "tiny_run.tar.gz is over 16 MiB: leaving samples.gif out"
  files=("${files[@]/samples.gif}")
  tar czf "$OUT/tiny_run.tar.gz" -C "$RUN" ${files[@]}
fi

echo "== files under $OUT"
(cd "$OUT" && find . -type f -printf '%9s  %p\n' | sort -k2)
echo "== exit $rc"
exit "$rc"
