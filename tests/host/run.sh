#!/usr/bin/env bash
# Out-of-process tests of the preloaded shim in hosts that are not exports.
#
# Preloading libtorchrw.so must change nothing in them: same stdout, stderr
# and exit status, same environment, no file created, with TORCHRW_BACKEND
# unset and (for hosts without libtorch) set.
#
# usage: tests/host/run.sh [BUILD_DIR]
# Variables: PYTHONS, the interpreters with torch to try (default $PYTHON,
# else /usr/bin/python3), separated by spaces.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
lib=$build/lib/libtorchrw.so
pythons=${PYTHONS:-${PYTHON:-/usr/bin/python3}}
passed=0 failed=0

[ -f "$lib" ] || { echo "host: $lib is missing; build first"; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$work" init -q repo && printf 'x\n' >"$work/repo/file"

# Clear every torchrw variable the caller may have.
unset TORCHRW_BACKEND TORCHRW_CONFIG TORCHRW_PLUGINS TORCHRW_PYTHON \
      TORCHRW_DISABLE TORCHRW_LOG TORCHRW_REPORT TORCHRW_TRACE TORCHRW_STATUS_FD LD_PRELOAD

# run_host DIR OUTPREFIX CMD...: runs CMD in DIR, saves out/err/rc/listing.
run_host() {
  local dir=$1 out=$2; shift 2
  (cd "$dir" && "$@" >"$out.out" 2>"$out.err"; echo $? >"$out.rc")
  ls -A "$dir" >"$out.ls"
}

# same NAME ENV... -- CMD...: compares CMD plain and with the shim (plus ENV).
same() {
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local dir=$work/repo
  run_host "$dir" "$work/a" "$@"
  run_host "$dir" "$work/b" env LD_PRELOAD="$lib" "${envs[@]}" "$@"
  # With torch imported, the runtime hooks torch's export entry points as
  # their modules come (torch.onnx on 1.13, torch.export on 2.x, with
  # torch): its debug lines say so.  Nothing else may show.
  grep -v -E '^torchrw: (hooked [A-Za-z_.]+|[A-Za-z_.]+ applied when [A-Za-z_.]+ was imported)$' \
    "$work/b.err" >"$work/b.err.kept" || true
  mv "$work/b.err.kept" "$work/b.err"
  local what=""
  for f in out err rc ls; do
    cmp -s "$work/a.$f" "$work/b.$f" || what="$what $f"
  done
  if [ -z "$what" ]; then
    echo "ok   $name"; passed=$((passed + 1))
  else
    echo "FAIL $name: differs in$what"; failed=$((failed + 1))
    for f in $what; do diff "$work/a.$f" "$work/b.$f" | head -5; done
  fi
}

for tag in "backend unset" "backend set"; do
  set -- --
  [ "$tag" = "backend set" ] && set -- TORCHRW_BACKEND=tensorrt TORCHRW_LOG=debug --
  same "/bin/true ($tag)" "$@" /bin/true
  same "sh -c with output and status ($tag)" "$@" \
    sh -c 'echo out; echo err >&2; exit 3'
  same "git status ($tag)" "$@" git status --short --branch
  same "python3 without torch ($tag)" "$@" python3 -c 'import sys; print(sys.version_info[0])'
  # No variable changes, in the process or in what it starts (PYTHONPATH
  # would reach every descendant, even python3 -I and non-Python ones).
  same "python3 environment and children ($tag)" "$@" python3 -c '
import os, subprocess
print(sorted((k, v) for k, v in os.environ.items() if k not in ("LD_PRELOAD", "_") and not k.startswith("TORCHRW_")))
subprocess.run(["sh", "-c", "env | grep -v -e ^LD_PRELOAD= -e ^TORCHRW_ -e ^_= | sort"])'
  same "python3 -I environment ($tag)" "$@" python3 -I -c '
import os
print(sorted(k for k in os.environ if k not in ("LD_PRELOAD", "_") and not k.startswith("TORCHRW_")))'
  # The environment the host sees: nothing but what we set ourselves.
  same "environment ($tag)" "$@" \
    sh -c 'env | grep -v -e "^LD_PRELOAD=" -e "^TORCHRW_" -e "^_=" | sort'
done

for py in $pythons; do
  torch=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null | tail -1)
  for tag in "backend unset" "backend set"; do
    set -- --
    [ "$tag" = "backend set" ] && set -- TORCHRW_BACKEND=tensorrt TORCHRW_LOG=debug --
    same "$py -c pass ($tag)" "$@" "$py" -c pass
  done

  # Importing torch (the runtime loads) changes no variable either.
  same "$py import torch: environment and children (backend set)" \
    TORCHRW_BACKEND=tensorrt TORCHRW_LOG=debug -- "$py" -c '
import os, subprocess, torch
print(sorted((k, v) for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TORCHRW_BACKEND", "TORCHRW_LOG", "_")))
subprocess.run(["sh", "-c", "env | grep -v -e ^LD_PRELOAD= -e ^TORCHRW_ -e ^_= | sort"])'

  # A torch process without TORCHRW_BACKEND: exports exactly as without.
  same "torch $torch export, backend unset" -- "$py" -c '
import inspect, io, torch
class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(3)
buf = io.BytesIO()
# The TorchScript exporter on every torch (2.9+ defaults to torch.export).
kw = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
torch.onnx.export(M(), (torch.arange(3.0),), buf, **kw)
print(len(buf.getvalue()), sorted(n.op_type for n in __import__("onnx").load_from_string(buf.getvalue()).graph.node))
'

  # A torch process with the backend set that never traces: nothing loaded.
  same "torch $torch eager, backend set" TORCHRW_BACKEND=tensorrt TORCHRW_LOG=debug -- "$py" -c '
import torch
print(torch.arange(3.0).repeat(2).tolist())
'
  # The runtime comes with torch (whose exports it must be ready to
  # bracket), never into an interpreter that does not import torch.
  maps=$(cd "$work" && env LD_PRELOAD="$lib" TORCHRW_BACKEND=tensorrt "$py" -c '
import json, sys
print(open("/proc/self/maps").read())' | grep -c torchrw_runtime)
  if [ "$maps" = 0 ]; then
    echo "ok   $py without torch: the runtime is not loaded"; passed=$((passed + 1))
  else
    echo "FAIL $py without torch: the runtime was loaded"; failed=$((failed + 1))
  fi
done

echo "host: $passed passed, $failed failed"
[ "$failed" = 0 ]
