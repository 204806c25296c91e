#!/bin/bash
# Builds the libFuzzer targets in tests/fuzz with clang and runs each for a
# bounded time over a seed corpus, then says what it found and how much of
# torchrw's own code (shim/, tools/) the inputs reach.
#
# Usage: bench/fuzz.sh [SECONDS]     (default 30 per target)
#
# The two libraries the targets parse with, protobuf-c's runtime
# (protobuf-c.c) and jansson, are compiled from source with the fuzzer's
# instrumentation, so that the fuzzer is guided through their parsers as
# well as through torchrw's code.  The sources are Debian's source packages
# of the versions installed (those of libprotobuf-c-dev and libjansson-dev,
# so behaviour and ABI match the normal build), fetched once with
# `apt-get source` into FUZZ_DIR/src: deb-src entries derived from the
# system's apt sources go to an apt configuration of this script's own in
# FUZZ_DIR/apt; the system's apt configuration is not changed.  apt checks
# the files against the archive's signed index.
#
# Needs Debian's clang, libclang-rt-14-dev, llvm (llvm-symbolizer, for the
# coverage report), dpkg-dev (dpkg-source), cmake, protobuf-c-compiler,
# libprotobuf-c-dev, libjansson-dev and python3-onnx: scripts/setup
# installs all but llvm (`apt-get install llvm`).
#
# Environment:
#   FUZZ_DIR      work directory (default build-fuzz/ in the repository);
#                 the corpus grows there between runs, crashes are kept in
#                 FUZZ_DIR/crashes and each run's log in FUZZ_DIR/*.log.
#   FUZZ_SOURCES  a directory holding the library sources already unpacked
#                 as protobuf-c/ and jansson/ (for a machine without
#                 network); default FUZZ_DIR/src, filled by apt-get source.
#   CC            clang to use (default clang).
#   PYTHON        interpreter with onnx, for the seed models and onnx.proto
#                 (default /usr/bin/python3).
#
# Targets:
#   fuzz_onnx    the ONNX reader, summary, external data check and the
#                backend checks (tools/onnx, tools/check.c)
#   fuzz_config  the deployment config (shim/core/config.c): parsing,
#                reading from a file, dotted-path lookup, typed getters
#
# For each target it prints the executions and their rate, libFuzzer's
# `cov` (every instrumented edge, libraries included) and, from libFuzzer's
# -print_coverage=1, the edges and functions reached in torchrw's files
# (shim/, tools/; per file in the log) apart from the libraries', when the
# run starts (the corpus as it is: the seeds on a first run) and at its
# end.  Exit status 1 when a target crashed or failed a check.
set -u

secs=${1:-30}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_DIR:-$repo/build-fuzz}
cc=${CC:-clang}
python=${PYTHON:-/usr/bin/python3}
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer "${sanitize[@]}"
       -fno-omit-frame-pointer)
lib_flags="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

case $secs in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
die() { echo "fuzz.sh: $*" >&2; exit 2; }
command -v "$cc" >/dev/null || die "$cc not found (libFuzzer needs clang: apt-get install clang libclang-rt-14-dev)"
for tool in cmake protoc-c dpkg-source dpkg-query; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup installs it)"
done
symbolizer=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer || ls /usr/lib/llvm-*/bin/llvm-symbolizer 2>/dev/null | tail -1)}
[ -x "$symbolizer" ] || die "llvm-symbolizer not found (apt-get install llvm): the coverage report needs it"
export ASAN_SYMBOLIZER_PATH=$symbolizer
mkdir -p "$work/gen" "$work/crashes" "$work/corpus/onnx" "$work/corpus/config"

# --- Library sources: Debian's, the versions installed -------------------
sources=${FUZZ_SOURCES:-$work/src}
aptdir=$work/apt
apt_opts=(-q -o Dir::Etc::SourceList="$aptdir/sources.list"
          -o Dir::Etc::SourceParts="$aptdir/sources.list.d"
          -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache="$aptdir/cache"
          -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)")
apt_updated=
# debian_source NAME DEVPACKAGE: unpacks the source package DEVPACKAGE was
# built from, at its installed version, into $sources/NAME.
debian_source() {
  local name=$1 dev=$2 pkg ver
  read -r pkg ver < <(dpkg-query -W -f='${source:Package} ${source:Version}\n' "$dev" 2>/dev/null)
  [ -n "${ver:-}" ] || die "$dev is not installed (scripts/setup installs it)"
  if [ -n "${FUZZ_SOURCES:-}" ]; then
    # Given by hand: taken as it is, never replaced.
    [ -d "$sources/$name" ] || die "FUZZ_SOURCES=$sources has no $name/ ($pkg $ver)"
    [ -f "$sources/$name/.torchrw-source" ] &&
      [ "$(cat "$sources/$name/.torchrw-source")" != "$pkg $ver" ] &&
      echo "fuzz.sh: note: $sources/$name is $(cat "$sources/$name/.torchrw-source"), $dev is $pkg $ver"
    return 0
  fi
  [ -f "$sources/$name/.torchrw-source" ] &&
    [ "$(cat "$sources/$name/.torchrw-source")" = "$pkg $ver" ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: put the sources of $pkg $ver in FUZZ_SOURCES"
  if [ -z "$apt_updated" ]; then
    mkdir -p "$aptdir/sources.list.d" "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    # The system's Debian sources, as deb-src.
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f"
    done >"$aptdir/sources.list"
    rm -f "$aptdir/sources.list.d/"*
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$aptdir/sources.list.d/${f##*/}"
    done
    echo "fetching the source package index (apt-get update into $aptdir)"
    # A third-party source without deb-src fails here; Debian's suffice.
    apt-get "${apt_opts[@]}" update >"$aptdir/update.log" 2>&1 ||
      echo "fuzz.sh: apt-get update reported errors (see $aptdir/update.log)"
    apt_updated=1
  fi
  echo "fetching Debian's source of $pkg $ver"
  rm -rf "$aptdir/dl" "$sources/$name"
  mkdir -p "$aptdir/dl" "$sources"
  (cd "$aptdir/dl" && apt-get "${apt_opts[@]}" source --download-only "$pkg=$ver") \
    >"$aptdir/source-$name.log" 2>&1 ||
    die "apt-get source $pkg=$ver failed (see $aptdir/source-$name.log)"
  dpkg-source -x "$aptdir/dl/${pkg}_${ver#*:}.dsc" "$sources/$name" >>"$aptdir/source-$name.log" 2>&1 ||
    die "dpkg-source -x failed (see $aptdir/source-$name.log)"
  echo "$pkg $ver" >"$sources/$name/.torchrw-source"
}
debian_source protobuf-c libprotobuf-c-dev
debian_source jansson libjansson-dev
pbc_src=$sources/protobuf-c
jansson_src=$sources/jansson

# --- The libraries, instrumented ------------------------------------------
libs=$work/lib
mkdir -p "$libs"
echo "building protobuf-c and jansson with the fuzzer's instrumentation"
# protobuf-c 1.4.1 shifts a byte promoted to int by up to 28 bits when it
# reads a field's tag (parse_tag_and_wiretype: `data[rv] << shift`), which
# UBSan reports on the first long tag; it is the library's, not torchrw's,
# so that one check is off for that file; so is the one for adding 0 to a
# NULL pointer, which it does on an empty packed repeated field
# (parse_packed_repeated_member).
"$cc" $lib_flags -fno-sanitize=shift-base,pointer-overflow -c "$pbc_src/protobuf-c/protobuf-c.c" -I"$pbc_src" -o "$libs/protobuf-c.o" ||
  die "building protobuf-c.c failed"
rm -f "$libs/libprotobuf-c.a"
ar rcs "$libs/libprotobuf-c.a" "$libs/protobuf-c.o"
jb=$libs/jansson-build
if ! { cmake -S "$jansson_src" -B "$jb" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=None \
         -DCMAKE_C_FLAGS="$lib_flags" -DJANSSON_BUILD_SHARED_LIBS=OFF \
         -DJANSSON_EXAMPLES=OFF -DJANSSON_WITHOUT_TESTS=ON -DJANSSON_BUILD_DOCS=OFF \
         -DJANSSON_INSTALL=OFF -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$libs/jansson-build.log" 2>&1 &&
       cmake --build "$jb" --target jansson -j"$(nproc)" >>"$libs/jansson-build.log" 2>&1; }; then
  die "building jansson failed (see $libs/jansson-build.log)"
fi
jansson_inc=(-I"$jansson_src/src" -I"$jb/include")
jansson_lib=$(find "$jb" -name libjansson.a | head -1)
[ -f "$jansson_lib" ] || die "libjansson.a not found under $jb"

# --- Generated protobuf code, as tools/onnx/CMakeLists.txt makes it -------
proto=$("$python" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))' 2>/dev/null)
[ -f "$proto" ] || proto=/usr/lib/python3/dist-packages/onnx/onnx.proto
mkdir -p "$work/gen/proto"
cp "$proto" "$work/gen/proto/onnx.proto"
protoc-c --proto_path="$work/gen/proto" --c_out="$work/gen" "$work/gen/proto/onnx.proto" ||
  die "protoc-c failed on $proto"

# --- The targets ------------------------------------------------------------
echo "building fuzz_onnx"
"$cc" "${flags[@]}" -I"$repo/tools" -I"$repo/tools/onnx" -I"$work/gen" \
  -I"$pbc_src" "${jansson_inc[@]}" -I"$repo/include" -I"$repo/shim/core" \
  -DTORCHRW_DATA_DEFAULT="\"$repo/data\"" \
  "$repo/tests/fuzz/fuzz_onnx.c" "$repo"/tools/onnx/*.c \
  "$repo/tools/check.c" "$repo/tools/check_table.c" \
  "$repo/tools/check_values.c" "$repo/shim/core/names.c" "$work/gen/onnx.pb-c.c" \
  "$libs/libprotobuf-c.a" "$jansson_lib" -o "$work/fuzz_onnx" ||
  die "building fuzz_onnx failed"
echo "building fuzz_config"
"$cc" "${flags[@]}" -I"$repo/shim/core" -I"$repo/include" "${jansson_inc[@]}" \
  "$repo/tests/fuzz/fuzz_config.c" "$repo/shim/core/config.c" "$repo/shim/core/log.c" \
  "$jansson_lib" -lpthread -ldl -o "$work/fuzz_config" ||
  die "building fuzz_config failed"
targets=(onnx config)

# --- Seeds: the committed ones and the test models --------------------------
seeds=$work/seeds
rm -rf "$seeds"
mkdir -p "$seeds/onnx" "$seeds/config"
cp "$repo"/tests/fuzz/seeds/config/* "$seeds/config/"
cp "$repo"/tests/fuzz/seeds/onnx/* "$seeds/onnx/" 2>/dev/null
if "$python" "$repo/tests/onnx/make_models.py" "$seeds/models" >/dev/null; then
  # Under 1 MiB (find's -size -1M would take only empty files).
  find "$seeds/models" -type f -name '*.onnx' -size -1024k -exec cp {} "$seeds/onnx/" \; 2>/dev/null
else
  echo "fuzz.sh: make_models.py failed; fuzzing onnx from the committed seeds only" >&2
fi
rm -rf "$seeds/models"

# coverage LOG: one line per group of files from -print_coverage=1's
# COVERED_FUNC/UNCOVERED_FUNC lines, "group edges covered total functions
# reached total", then one per project file: "file path edges covered total".
coverage() {
  awk -v repo="$repo/" -v pbc="$pbc_src/" -v js="$jansson_src/" -v jb="$jb/" -v gen="$work/gen/" '
    /^(UN)?COVERED_FUNC: / {
      split($5, e, "/"); file = $7; sub(/:[0-9]+$/, "", file)
      if (index(file, repo "shim/") == 1 || index(file, repo "tools/") == 1) g = "project"
      else if (index(file, repo "tests/fuzz/") == 1) g = "harness"
      else if (index(file, gen) == 1) g = "generated"
      else if (index(file, pbc) == 1) g = "protobuf-c"
      else if (index(file, js) == 1 || index(file, jb) == 1) g = "jansson"
      else g = "other"
      ce[g] += e[1]; te[g] += e[2]; tf[g]++; if (e[1] > 0) cf[g]++
      if (g == "project") { f = substr(file, length(repo) + 1); fc[f] += e[1]; ft[f] += e[2] }
    }
    END {
      for (g in te) print "group", g, ce[g] + 0, te[g], cf[g] + 0, tf[g]
      for (f in ft) print "file", f, fc[f] + 0, ft[f]
    }' "$1" | sort
}
# field GROUPS KIND NAME COLUMN: one number from coverage's output.
field() { awk -v k="$2" -v n="$3" -v c="$4" '$1 == k && $2 == n { print $c }' <<<"$1"; }

export TORCHRW_DATA="$repo/data"
common=(-max_len=65536 -timeout=10 -rss_limit_mb=2048)
status=0
for t in "${targets[@]}"; do
  dict=()
  [ -f "$repo/tests/fuzz/$t.dict" ] && dict=(-dict="$repo/tests/fuzz/$t.dict")
  log=$work/fuzz_$t.log
  # The corpus as it is: what the run starts from.
  "$work/fuzz_$t" "${common[@]}" "${dict[@]}" -runs=0 -print_coverage=1 \
    "$work/corpus/$t" "$seeds/$t" >"$work/fuzz_$t.start.log" 2>&1
  start=$(coverage "$work/fuzz_$t.start.log")
  startcov=$(grep -o 'INITED cov: [0-9]*' "$work/fuzz_$t.start.log" | grep -o '[0-9]*$' | tail -1)
  before=$(ls "$work/crashes" | grep -c "^$t-" || true)
  echo "running fuzz_$t for ${secs}s"
  "$work/fuzz_$t" "${common[@]}" "${dict[@]}" -max_total_time="$secs" \
    -print_final_stats=1 -print_coverage=1 -artifact_prefix="$work/crashes/$t-" \
    "$work/corpus/$t" "$seeds/$t" >"$log" 2>&1
  rc=$?
  end=$(coverage "$log")
  after=$(ls "$work/crashes" | grep -c "^$t-" || true)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(ls "$work/corpus/$t" | wc -l)
  echo "fuzz_$t: ${execs:-?} execs in ${secs}s (${rate:-?}/s), corpus $corpus files, new crashes $((after - before)), exit $rc"
  echo "  cov (all instrumented edges): ${startcov:-?} at start, ${cov:-?} at end"
  for g in project protobuf-c jansson generated harness; do
    tot=$(field "$start" group "$g" 4)
    [ -n "$tot" ] || tot=$(field "$end" group "$g" 4)
    [ -n "$tot" ] || continue
    printf '  %-11s edges %5s -> %5s of %5s, functions %4s -> %4s of %4s\n' "$g" \
      "$(field "$start" group "$g" 3)" "$(field "$end" group "$g" 3)" "$tot" \
      "$(field "$start" group "$g" 5)" "$(field "$end" group "$g" 5)" "$(field "$start" group "$g" 6)"
  done
  {
    echo "edges in torchrw's files, at start -> at end (of total):"
    awk '$1 == "file" { print $2 }' <<<"$start$(printf '\n')$end" | sort -u | while read -r f; do
      printf '  %-28s %5s -> %5s of %5s\n' "$f" "$(field "$start" file "$f" 3)" \
        "$(field "$end" file "$f" 3)" "$(field "$start" file "$f" 4)"
    done
  } >>"$log"
  if [ "$rc" != 0 ] || [ "$after" != "$before" ]; then
    status=1
    grep -m3 -E 'ERROR|runtime error|SUMMARY|check failed' "$log" | sed 's/^/  /'
    echo "  log: $log; reproducer(s) in $work/crashes"
  else
    echo "  per file: $log"
  fi
done
exit $status
