#!/bin/bash
# Builds the libFuzzer targets in tests/fuzz with clang and runs each for a
# bounded time over a seed corpus, then says what it found.
#
# Usage: bench/fuzz.sh [SECONDS]     (default 30 per target)
#
# Environment:
#   FUZZ_DIR   work directory (default BUILD/fuzz under the repository,
#              i.e. build-fuzz/); the corpus grows there between runs and
#              crashes are kept in FUZZ_DIR/crashes.
#   CC         clang to use (default clang).
#
# Targets:
#   fuzz_onnx    the ONNX reader, summary, external data check and the
#                backend checks (tools/onnx, tools/check.c)
#   fuzz_config  the deployment config parser (shim/core/config.c), built
#                only when that file exists
set -u

secs=${1:-30}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_DIR:-$repo/build-fuzz}
cc=${CC:-clang}
python=${PYTHON:-/usr/bin/python3}
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

case $secs in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
if ! command -v "$cc" >/dev/null; then
  echo "fuzz.sh: $cc not found (libFuzzer needs clang)" >&2
  exit 2
fi
mkdir -p "$work/gen" "$work/crashes" "$work/corpus/onnx" "$work/corpus/config"

# Generated protobuf code, as tools/onnx/CMakeLists.txt makes it.
proto=$("$python" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))' 2>/dev/null)
[ -f "$proto" ] || proto=/usr/lib/python3/dist-packages/onnx/onnx.proto
mkdir -p "$work/gen/proto"
cp "$proto" "$work/gen/proto/onnx.proto"
if ! protoc-c --proto_path="$work/gen/proto" --c_out="$work/gen" "$work/gen/proto/onnx.proto"; then
  echo "fuzz.sh: protoc-c failed on $proto" >&2
  exit 2
fi

targets=()
echo "building fuzz_onnx"
if "$cc" "${flags[@]}" -I"$repo/tools" -I"$repo/tools/onnx" -I"$work/gen" \
    -I"$repo/include" -DTORCHRW_DATA_DEFAULT="\"$repo/data\"" \
    "$repo/tests/fuzz/fuzz_onnx.c" "$repo"/tools/onnx/*.c \
    "$repo/tools/check.c" "$repo/tools/check_table.c" "$work/gen/onnx.pb-c.c" \
    $(pkg-config --cflags --libs libprotobuf-c jansson) -o "$work/fuzz_onnx"; then
  targets+=(onnx)
else
  echo "fuzz.sh: building fuzz_onnx failed" >&2
  exit 2
fi

if [ -f "$repo/shim/core/config.c" ]; then
  echo "building fuzz_config"
  if "$cc" "${flags[@]}" -I"$repo/shim/core" -I"$repo/include" \
      "$repo/tests/fuzz/fuzz_config.c" "$repo"/shim/core/*.c \
      $(pkg-config --cflags --libs jansson) -lpthread -ldl -o "$work/fuzz_config"; then
    targets+=(config)
  else
    echo "fuzz.sh: building fuzz_config failed" >&2
    exit 2
  fi
else
  echo "fuzz.sh: shim/core/config.c does not exist yet; skipping fuzz_config"
fi

# Seed corpora: the test models (valid and broken) and a few configs.
seeds="$work/seeds"
rm -rf "$seeds"
if "$python" "$repo/tests/onnx/make_models.py" "$seeds/models" >/dev/null; then
  find "$seeds/models" -type f -name '*.onnx' -size -1M \
    -exec cp {} "$work/corpus/onnx/" \; 2>/dev/null
else
  echo "fuzz.sh: make_models.py failed; fuzzing onnx from an empty corpus" >&2
fi
printf '%s' '{}' >"$work/corpus/config/empty_object"
printf '%s' '{"onnx_config": {"opset_version": 13, "input_names": ["x"]}, "backend_config": {"type": "tensorrt"}}' \
  >"$work/corpus/config/full"
printf '%s' '{"a": 1, "a": 2}' >"$work/corpus/config/duplicate"
printf '%s' '[1, 2, 3]' >"$work/corpus/config/array"
printf '%s' '{"x": "\u00e9\ud800"}' >"$work/corpus/config/unicode"

export TORCHRW_DATA="$repo/data"
status=0
for t in "${targets[@]}"; do
  log="$work/fuzz_$t.log"
  before=$(ls "$work/crashes" | grep -c "^$t-" || true)
  echo "running fuzz_$t for ${secs}s"
  "$work/fuzz_$t" "$work/corpus/$t" -max_total_time="$secs" \
    -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/crashes/$t-" >"$log" 2>&1
  rc=$?
  after=$(ls "$work/crashes" | grep -c "^$t-" || true)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  corpus=$(ls "$work/corpus/$t" | wc -l)
  echo "fuzz_$t: ${execs:-?} execs in ${secs}s (${rate:-?}/s), ${cov:-cov: ?}, corpus $corpus files, new crashes $((after - before)), exit $rc"
  if [ "$rc" != 0 ] || [ "$after" != "$before" ]; then
    status=1
    grep -m3 -E 'ERROR|runtime error|SUMMARY' "$log" | sed 's/^/  /'
    echo "  log: $log; reproducer(s) in $work/crashes"
  fi
done
exit $status
