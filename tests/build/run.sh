#!/usr/bin/env bash
# Building for the torch a user has, and what happens when it does not fit.
#
#   - cmake refuses an interpreter without torch, and a torch newer than the
#     adapter knows, each with one message saying what to do;
#   - `pip install --no-build-isolation .` in a venv that has torch gives it
#     `import torchrw` and a `torchrw` command that rewrites an export, and
#     the wheel names its torch;
#   - after that venv's torch changes (here to 2.13.0, the CPU wheel on the
#     machine's disk), `import torchrw` and every export under the preloaded
#     library fail with one error naming both torches and the command that
#     rebuilds; processes that do not export are untouched.
#
# The venv borrows torch 2.14.1 from BASE_VENV (a .pth file), so that no
# second 5 GB torch is installed.
#
# usage: tests/build/run.sh
# Variables: BASE_VENV (default .venv, has torch 2.14.1 and scikit-build-core).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
base_venv=${BASE_VENV:-$root/.venv}
passed=0 failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); [ -n "${2:-}" ] && tail -20 "$2"; }
# expect NAME FILE PATTERN...: every pattern (grep -F) is in FILE, read with
# its lines joined (cmake wraps long messages).
expect() {
  local name=$1 file=$2; shift 2
  local text
  text=$(tr -s ' \n' '  ' <"$file")
  for p in "$@"; do
    grep -qF -- "$p" <<<"$text" || { fail "$name: no '$p' in the output" "$file"; return; }
  done
  ok "$name"
}

# ---- cmake refusals --------------------------------------------------------
"$(command -v python3)" -m venv "$work/notorch"
cmake -S "$root" -B "$work/b-notorch" -DPython3_EXECUTABLE="$work/notorch/bin/python" \
  >"$work/notorch.log" 2>&1
if [ $? -ne 0 ]; then
  expect "cmake refuses an interpreter without torch" "$work/notorch.log" \
    "cannot build for $work/notorch/bin/python" "cannot import torch" "Install torch"
else
  fail "cmake accepted an interpreter without torch" "$work/notorch.log"
fi

# An interpreter whose torch is newer than shim/adapter knows (2.99).
cat >"$work/newtorch" <<EOF
#!/bin/sh
echo "python=$work/newtorch"
echo "python_version=3.11"
echo "python_include=/usr/include/python3.11"
echo "torch_version=2.99.0"
echo "torch_root=$work"
echo "torch_includes=$work"
echo "torch_libdirs=$work"
echo "torch_cxx11_abi=1"
EOF
chmod +x "$work/newtorch"
cmake -S "$root" -B "$work/b-new" -DPython3_EXECUTABLE="$work/newtorch" >"$work/new.log" 2>&1
if [ $? -ne 0 ]; then
  expect "cmake refuses a torch newer than the adapter knows" "$work/new.log" \
    "has torch 2.99.0, newer than any torch" "shim/adapter" "TORCHRW_UNKNOWN_TORCH=ON"
else
  fail "cmake accepted torch 2.99" "$work/new.log"
fi

# ---- pip install ------------------------------------------------------------
venv=$work/venv
"$(command -v python3)" -m venv "$venv"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
base_site=$("$base_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$base_site" >"$site/torchrw-test-base.pth"
if "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
     "$root" >"$work/pip.log" 2>&1; then
  ok "pip install --no-build-isolation . builds in a venv with torch"
else
  fail "pip install --no-build-isolation ." "$work/pip.log"
fi
"$venv/bin/python" -m pip show torchrw >"$work/show.log" 2>&1
expect "the wheel names its torch" "$work/show.log" "Version: 0.1.0+torch2.14" "Requires: torch"
"$venv/bin/python" -c 'import torchrw; print(torchrw.torch_version, torchrw.FUNCTION_REWRITER)' \
  >"$work/import.log" 2>&1
expect "import torchrw loads the runtime for the venv's torch" "$work/import.log" \
  "2.14" "<torchrw.FUNCTION_REWRITER>"
(cd "$work" && PATH="$venv/bin:$PATH" torchrw run --backend tensorrt -- \
   "$venv/bin/python" "$root/examples/export_repeat.py" trt.onnx >"$work/run.log" 2>&1)
expect "the venv's torchrw command rewrites an export" "$work/run.log" \
  "exit status 0 (backend tensorrt)" "fired builtin:torch.Tensor.repeat@tensorrt" \
  "Unsqueeze Constant Constant ConstantOfShape Expand Tile Squeeze"
"$venv/bin/torchrw" check "$work/trt.onnx" --backend tensorrt >"$work/check.log" 2>&1
[ $? = 0 ] && ok "the installed torchrw check finds its tables" || fail "torchrw check" "$work/check.log"
# explain runs the files with the engines.py installed beside the tables.
(cd "$work" && PATH="$venv/bin:$PATH" torchrw explain --backend onnxruntime --output e.onnx -- \
   "$venv/bin/python" "$root/examples/export_topk.py" e.onnx >"$work/explain.log" 2>&1)
if grep -q -e "^torchrw  e.onnx: runs, matches PyTorch" \
     -e "^engine   onnxruntime needs the Python package" "$work/explain.log"; then
  ok "the installed torchrw explain finds engines.py"
else
  fail "torchrw explain" "$work/explain.log"
fi

# ---- the venv's torch changes after torchrw was built -----------------------
if "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps torch==2.13.0 \
     >"$work/pip213.log" 2>&1; then
  "$venv/bin/python" -c 'import torchrw' >"$work/import213.log" 2>&1
  rc=$?
  [ $rc = 1 ] || fail "import torchrw with another torch exited $rc"
  expect "import torchrw with another torch: one error, both torches, the fix" \
    "$work/import213.log" "ImportError: torchrw: no runtime for torch 2.13.0" \
    "built there: torch 2.14" "pip install --no-build-isolation --force-reinstall"
  (cd "$work" && "$venv/bin/torchrw" run --backend tensorrt -- \
     "$venv/bin/python" "$root/examples/export_repeat.py" x.onnx >"$work/run213.log" 2>&1)
  expect "an export under the preload fails with the same error, no crash" "$work/run213.log" \
    "RuntimeError: torchrw: no runtime for torch 2.13.0" "built there: torch 2.14" \
    "exit status 1 (backend tensorrt)"
  (cd "$work" && LD_PRELOAD="$site/torchrw/lib/libtorchrw.so" TORCHRW_BACKEND=tensorrt \
     "$venv/bin/python" -c 'import torch; print("eager", torch.ones(2).repeat(2).tolist())' \
     >"$work/eager213.log" 2>&1)
  expect "a process that does not export is untouched" "$work/eager213.log" \
    "eager [1.0, 1.0, 1.0, 1.0]"
else
  fail "pip install torch==2.13.0 (the CPU wheel on disk)" "$work/pip213.log"
fi

echo "build: $passed passed, $failed failed"
[ "$failed" = 0 ]
