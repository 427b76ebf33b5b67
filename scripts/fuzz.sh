#!/usr/bin/env bash
# Fuzzes moddit's readers (CI runs this): builds the libFuzzer harnesses of
# tests/fuzz with clang, ASan and UBSan in build-fuzz/ (scripts/bootstrap.sh
# --fuzz installs clang), then runs each for FUZZ_SECONDS (default 30) over the
# committed seeds (tests/fuzz/corpus/<target>/) and the inputs of crashes fixed
# before (tests/fuzz/regressions/<target>/), with the format's dictionary
# (tests/fuzz/dict/), MODDIT_JOBS (default: all cores) at
# a time. The committed corpus is only read: new inputs go to build-fuzz/run/.
# A crash, a sanitizer report, an exception other than moddit::Error or an
# accepted input that breaks a reader's promise fails the run, naming the
# harness, the saved input and the command that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
jobs="${MODDIT_JOBS:-$(nproc)}"
targets=(trajectory moddit_config vdit_config report)

fail() { echo "fuzz: FAILED: $*" >&2; exit 1; }

bash scripts/bootstrap.sh --fuzz || fail "could not install clang (scripts/bootstrap.sh --fuzz)"

echo "== fuzz: build the harnesses (clang, ASan + UBSan, build-fuzz/)"
# Debug keeps the library's and nlohmann-json's assertions; -O1 keeps it fast.
mkdir -p build-fuzz
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
  -DMODDIT_FUZZ=ON -DMODDIT_CUDA=OFF -DMODDIT_NATIVE=OFF -DMODDIT_BUILD_TESTS=OFF \
  -DMODDIT_BUILD_CLI=OFF >build-fuzz/configure.log 2>&1 ||
  { cat build-fuzz/configure.log >&2; fail "configuring build-fuzz/ failed (above)"; }
cmake --build build-fuzz -j "$jobs" --target moddit_fuzzers || fail "building the harnesses failed (above)"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_one() {  # run_one <target>: one harness for $seconds; its log in build-fuzz/run/<target>/
  local t="$1" dir="build-fuzz/run/$1"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  local seeds=("tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regressions/$t" ] && seeds+=("tests/fuzz/regressions/$t")
  # The format's words and JSON's edge-case numbers, for mutations to splice in.
  cat "tests/fuzz/dict/$t.dict" tests/fuzz/dict/json.dict >"$dir/dict"
  # -timeout: one input taking 10 s is a finding (a hang); -rss_limit_mb and
  # -malloc_limit_mb: an input making the reader allocate gigabytes is one too.
  "build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -print_final_stats=1 -dict="$dir/dict" -artifact_prefix="$dir/artifacts/" \
    "$dir/corpus" "${seeds[@]}" >"$dir/log" 2>&1
}

echo "== fuzz: ${targets[*]}, $seconds s each, $jobs at a time"
pids=()
failed=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=("$!:$t")
  if ((${#pids[@]} >= jobs)); then
    p="${pids[0]}"
    wait "${p%%:*}" || failed+=("${p#*:}")
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do
  wait "${p%%:*}" || failed+=("${p#*:}")
done

for t in "${targets[@]}"; do
  log="build-fuzz/run/$t/log"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1 || true)"
  echo "fuzz_$t: ${runs:-?} inputs run; ${done_line:-no final statistics}"
done
((${#failed[@]} == 0)) && { echo "== fuzz: no crash"; exit 0; }

for t in "${failed[@]}"; do
  dir="build-fuzz/run/$t"
  echo "---- fuzz_$t: what it found ($dir/log has everything):" >&2
  grep -m 8 -E "what\(\):|runtime error:|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|SUMMARY:|Timeout|out-of-memory|malloc\(" \
    "$dir/log" | cut -c1-300 >&2 || true
  echo "---- fuzz_$t: the frames of moddit's code in its stack:" >&2
  grep -E "^ +#[0-9]+ 0x[0-9a-f]+ in ([^ (]+ )?(moddit::|LLVMFuzzerTestOneInput)" "$dir/log" | head -n 12 | cut -c1-300 >&2 || true
  for a in "$dir"/artifacts/*; do
    [ -e "$a" ] || continue
    echo "fuzz_$t: input saved as $a (reproduce: build-fuzz/tests/fuzz/fuzz_$t $a)" >&2
  done
done
fail "${failed[*]/#/fuzz_} found a crash or a broken promise (logs and inputs above; a fixed one" \
     "goes to tests/fuzz/regressions/<target>/ with a test in tests/io/test_fuzz_inputs.cpp)"
