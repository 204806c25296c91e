"""Runs an ONNX file in a real inference engine on the CPU and returns its
outputs, so that exported files are judged by the engines themselves.

    import engines
    outs = engines.run("openvino", "model.onnx", {"x": x}, workdir)
    engines.assert_close(outs, want)        # or engines.compare(...)

Engines (the venv of scripts/setup has all three, scripts/requirements*.txt):

- ``onnxruntime``: an InferenceSession on the CPU execution provider.
- ``openvino``: OpenVINO's Core reads the ONNX file itself (its ONNX
  frontend) and compiles it for the CPU at f32 inference precision.
- ``ncnn``: pnnx's executable converts the ONNX file into an ncnn
  param/bin pair in ``workdir`` (fp32 weights, with the shapes of the feeds),
  then the ``ncnn`` module loads and runs it with fp16/bf16 storage and
  arithmetic off.  ncnn's blobs are untyped 32-bit words that each layer
  reads as it needs: a float feed is passed as float32, an integer feed
  (token ids, an attention mask) as int32, as pnnx's own generated
  ``*_ncnn.py`` feeds an integer input (ncnn's Embed reads its input's
  words as int32 indices); every output comes back as float32 (compare
  with ``check_dtype=False``).  ncnn has no batch axis; pnnx says per input and
  output which axis is the batch (its generated ``*_ncnn.py``), and that is
  what is used.

What goes wrong in the engine raises ``EngineError`` with ``.engine``,
``.stage`` ("convert": pnnx; "load": reading, converting or compiling the
graph; "run": inference) and ``.message``, the engine's own words, so a
caller can record "the engine rejects this file".  A missing engine or a
bad call (a feed missing, a file that does not exist) raises the usual
Python errors instead.

The module needs numpy and the engine asked for, nothing of torchrw; the
tests import it from tests/export and the benchmarks from bench/.  As a
script it is what `torchrw explain` runs (installed beside the capability
tables):

    PY engines.py explain ENGINE SAMPLE.npz FILE...

runs each FILE in ENGINE on the sample's inputs (in_0, in_1, ... fed to
the graph's inputs in order; written by TORCHRW_SAMPLE=1) and prints one
JSON object per file: whether it converts, loads and runs, and how far its
outputs are from PyTorch's (out_0, ...), judged by scaled_error().
"""
import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ENGINES = ("onnxruntime", "openvino", "ncnn")

# pnnx has to finish well within the tests' budget; a small graph takes a
# few seconds, a detection model under a minute.
PNNX_TIMEOUT = float(os.environ.get("TORCHRW_PNNX_TIMEOUT", "300"))


class EngineError(RuntimeError):
    """The engine refused the file or failed running it.

    engine: one of ENGINES; stage: "convert", "load" or "run"; message:
    what the engine said (its exception text or its log)."""

    def __init__(self, engine, stage, message):
        self.engine = engine
        self.stage = stage
        self.message = message.strip() or "(the engine said nothing)"
        super().__init__(f"{engine} {stage}: {self.message}")


def missing(engine):
    """None when the engine can run here, else why it cannot (a sentence
    naming the package to install)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    modules = {"onnxruntime": ["onnxruntime"], "openvino": ["openvino"],
               "ncnn": ["ncnn", "pnnx"]}[engine]
    for m in modules:
        if importlib.util.find_spec(m) is None:
            return (f"{engine} needs the Python package {m!r}, which this interpreter "
                    "lacks (scripts/requirements-engines.txt installs it)")
    if engine == "ncnn" and not os.access(pnnx_executable(), os.X_OK):
        return f"pnnx's executable {pnnx_executable()} is missing or not executable"
    return None


def run(engine, onnx_path, feeds, workdir=None):
    """Runs onnx_path in engine with feeds (graph input name -> array) and
    returns the outputs as numpy arrays, in the graph's output order.

    workdir holds what the engine writes (ncnn's converted files); a
    temporary directory, removed afterwards, when None.  Raises EngineError
    when the engine rejects the file or fails, KeyError when a graph input
    has no feed, ValueError for an unknown engine."""
    reason = missing(engine)
    if reason is not None:
        raise ModuleNotFoundError(reason)
    onnx_path = Path(onnx_path).resolve()
    if not onnx_path.is_file():
        raise FileNotFoundError(f"no ONNX file at {onnx_path}")
    feeds = {k: np.asarray(v) for k, v in feeds.items()}
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="torchrw-engine-") as tmp:
            return _RUNNERS[engine](onnx_path, feeds, Path(tmp))
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    return _RUNNERS[engine](onnx_path, feeds, workdir)


def _input_names(onnx_path):
    """The graph's inputs that are not initializers, in order."""
    import onnx
    m = onnx.load(str(onnx_path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits], m


def _feeds_in_order(names, feeds, onnx_path):
    absent = [n for n in names if n not in feeds]
    if absent:
        raise KeyError(f"{onnx_path}: no feed for graph input(s) {', '.join(absent)} "
                       f"(given: {', '.join(feeds) or 'none'})")
    return [feeds[n] for n in names]


# --- ONNX Runtime ---------------------------------------------------------------

def _run_onnxruntime(onnx_path, feeds, workdir):
    import onnxruntime as ort
    try:
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception classes
        raise EngineError("onnxruntime", "load", str(e)) from e
    names = [i.name for i in sess.get_inputs()]
    ordered = _feeds_in_order(names, feeds, onnx_path)
    try:
        return [np.asarray(o) for o in sess.run(None, dict(zip(names, ordered)))]
    except Exception as e:
        raise EngineError("onnxruntime", "run", str(e)) from e


# --- OpenVINO -------------------------------------------------------------------

def _run_openvino(onnx_path, feeds, workdir):
    import openvino as ov
    core = ov.Core()
    try:
        model = core.read_model(str(onnx_path))
        # f32 everywhere: on CPUs with bf16 units OpenVINO would otherwise
        # pick bf16, and the comparison would measure that instead.
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception as e:
        raise EngineError("openvino", "load", str(e)) from e
    # A port may carry several tensor names (OpenVINO merges the names of
    # values it folds away into the input's), so match by any of them.
    names, _ = _input_names(onnx_path)
    ordered = _feeds_in_order(names, feeds, onnx_path)
    by_name = dict(zip(names, ordered))
    # A graph of one operator that OpenVINO folds into its input (Identity,
    # inference-mode Dropout) keeps only the output's name on the port:
    # with as many ports as inputs, an unnamed one is fed by position.
    inputs = {}
    for i, port in enumerate(compiled.inputs):
        hit = [n for n in names if n in port.get_names()]
        if not hit and len(compiled.inputs) == len(names):
            hit = [names[i]]
        if not hit:
            raise EngineError("openvino", "load", "the compiled model has an input "
                              f"named {sorted(port.get_names())}, which is not one of "
                              f"the ONNX graph's ({', '.join(names)})")
        inputs[port] = by_name[hit[0]]
    try:
        result = compiled(inputs)
        return [np.array(result[port]) for port in compiled.outputs]
    except Exception as e:
        raise EngineError("openvino", "run", str(e)) from e


# --- ncnn through pnnx -------------------------------------------------------------

def pnnx_executable():
    """The pnnx program inside the pnnx package (found without importing
    it: its Python helpers import torch)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the Python package 'pnnx' is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "pnnx"


# pnnx's names for input types (its inputshape=[1,3,224,224]f32 syntax).
_PNNX_TYPES = {"float32": "f32", "float64": "f64", "float16": "f16", "int8": "i8",
               "uint8": "u8", "int16": "i16", "int32": "i32", "int64": "i64",
               "bool": "u8"}


def _pnnx_shape(a):
    t = _PNNX_TYPES.get(a.dtype.name)
    if t is None:
        raise TypeError(f"pnnx cannot take an input of dtype {a.dtype}")
    return "[" + ",".join(str(d) for d in a.shape) + "]" + t


def _copy_model(onnx_path, model, workdir):
    """Copies the ONNX file and its external data into workdir: pnnx writes
    intermediate files beside the file it is given."""
    dst = workdir / "model.onnx"
    shutil.copyfile(onnx_path, dst)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                src = (onnx_path.parent / e.value)
                target = workdir / e.value
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    shutil.copyfile(src, target)
    return dst


def _batch_axes(ncnnpy):
    """Which axis pnnx treats as the batch, per ncnn blob name, read from
    the Python example pnnx writes (233: none)."""
    axes = {}
    text = ncnnpy.read_text() if ncnnpy.exists() else ""
    for m in re.finditer(r'ex\.input\("([^"]+)",\s*ncnn\.Mat\(\w+\.numpy\(\)'
                         r'(?:,\s*batch_index=(\d+))?\)', text):
        axes[m.group(1)] = int(m.group(2) or 233)
    for m in re.finditer(r'_,\s*(\w+)\s*=\s*ex\.extract\("([^"]+)"\)', text):
        var, blob = m.group(1), m.group(2)
        b = re.search(re.escape(var) + r'\.numpy\((?:batch_index=(\d+))?\)', text)
        axes[blob] = int(b.group(1)) if b and b.group(1) else 233
    return axes


@contextlib.contextmanager
def _stderr_to(path):
    """ncnn reports through the C library's stderr: while the block runs,
    file descriptor 2 goes to path."""
    saved = os.dup(2)
    try:
        with open(path, "wb") as f:
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _pnnx_said(log):
    """What pnnx said about a failure: its complaints when it made any (it
    echoes its options and prints progress around them), else its last
    lines."""
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    said = [l for l in lines if re.search(r"unsupported|not supported|fail|error|expect|"
                                          r"invalid|cannot|can't", l, re.I)]
    return "\n".join(dict.fromkeys(said or lines[-10:]))


def _unconverted(log):
    """Operators pnnx left in the ncnn graph as they were ("ignore ..."
    lines): ncnn has no layer for them."""
    return [l.strip() for l in log.splitlines() if l.startswith("ignore ")]


def _run_ncnn(onnx_path, feeds, workdir):
    import ncnn
    names, model = _input_names(onnx_path)
    ordered = _feeds_in_order(names, feeds, onnx_path)
    src = _copy_model(onnx_path, model, workdir)
    out = {k: str(workdir / f"model.{k}") for k in ("param", "bin")}
    for f in out.values():
        Path(f).unlink(missing_ok=True)
    cmd = [str(pnnx_executable()), str(src),
           "inputshape=" + ",".join(_pnnx_shape(a) for a in ordered),
           "ncnnparam=" + out["param"], "ncnnbin=" + out["bin"],
           "ncnnpy=" + str(workdir / "model_ncnn.py"),
           "pnnxparam=" + str(workdir / "model.pnnx.param"),
           "pnnxbin=" + str(workdir / "model.pnnx.bin"),
           "pnnxpy=" + str(workdir / "model_pnnx.py"),
           "pnnxonnx=" + str(workdir / "model.pnnx.onnx"),
           "fp16=0", "device=cpu"]
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                              errors="replace", timeout=PNNX_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise EngineError("ncnn", "convert",
                          f"pnnx did not finish in {PNNX_TIMEOUT:.0f} s") from e
    log = proc.stdout + proc.stderr
    (workdir / "pnnx.log").write_text(log)
    if proc.returncode != 0 or not Path(out["param"]).is_file():
        raise EngineError("ncnn", "convert",
                          f"pnnx exited with status {proc.returncode}: {_pnnx_said(log)}")
    if "FATAL ERROR" in log:
        # pnnx says so and carries on (status 0) with what it could not
        # read, e.g. external data, which makes an ncnn model of garbage.
        raise EngineError("ncnn", "convert", "pnnx: " + "\n".join(
            l.strip() for l in log.splitlines() if "FATAL ERROR" in l))
    axes = _batch_axes(workdir / "model_ncnn.py")
    ignored = _unconverted(log)

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic",
                 "use_bf16_storage", "use_bf16_packed"):
        if hasattr(net.opt, flag):
            setattr(net.opt, flag, False)
    errlog = workdir / "ncnn.log"
    with _stderr_to(errlog):
        rc_param = net.load_param(out["param"])
        rc_bin = net.load_model(out["bin"]) if rc_param == 0 else -1
    if rc_param != 0 or rc_bin != 0:
        said = _read(errlog).strip()
        if ignored:
            said += "\npnnx left these without an ncnn layer: " + "; ".join(ignored)
        raise EngineError("ncnn", "load", said or f"load_param returned {rc_param}")
    inputs = net.input_names()
    outputs = net.output_names()
    if len(inputs) != len(ordered):
        raise EngineError("ncnn", "load", f"the ncnn graph has {len(inputs)} inputs "
                          f"({', '.join(inputs)}), the ONNX graph {len(ordered)}")
    results = []
    with _stderr_to(errlog):
        ex = net.create_extractor()
        for i, a in enumerate(ordered):
            blob = f"in{i}"
            word = np.int32 if np.issubdtype(a.dtype, np.integer) else np.float32
            mat = ncnn.Mat(np.ascontiguousarray(a, dtype=word),
                           batch_index=axes.get(blob, 233))
            if ex.input(blob, mat.clone()) != 0:
                results = None
                break
        if results is not None:
            for j in range(len(outputs)):
                blob = f"out{j}"
                rc, mat = ex.extract(blob)
                if rc != 0:
                    results = None
                    break
                results.append(np.array(mat.numpy(batch_index=axes.get(blob, 233))))
    if results is None:
        raise EngineError("ncnn", "run", _read(errlog) or "ncnn's extractor failed")
    return results


_RUNNERS = {"onnxruntime": _run_onnxruntime, "openvino": _run_openvino,
            "ncnn": _run_ncnn}


# --- comparing --------------------------------------------------------------------

class Comparison:
    """The outcome of compare(): ok, and one line per output saying how it
    matched (shape, dtype, largest differences)."""

    def __init__(self, ok, lines):
        self.ok = ok
        self.lines = lines

    def __bool__(self):
        return self.ok

    def __str__(self):
        return "\n".join(self.lines)


def compare(got, want, rtol=1e-4, atol=1e-5, check_dtype=True):
    """Compares the engine's outputs with the expected ones (lists in the
    same order; single arrays are taken as lists of one).  A shape or, with
    check_dtype, a dtype that differs fails that output; values must be
    numpy.allclose(got, want, rtol, atol), NaN equal to NaN."""
    got = [got] if isinstance(got, np.ndarray) else list(got)
    want = [want] if isinstance(want, np.ndarray) else list(want)
    lines, ok = [], True
    if len(got) != len(want):
        ok = False
        lines.append(f"{len(got)} outputs, expected {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        head = f"output {i}: {g.dtype}{list(g.shape)} vs expected {w.dtype}{list(w.shape)}"
        if g.shape != w.shape:
            if g.size == w.size and g.squeeze().shape == w.squeeze().shape:
                head += " (same elements, different shape)"
            ok = False
            lines.append(head + ": shape differs")
            continue
        if check_dtype and g.dtype != w.dtype:
            ok = False
            lines.append(head + ": dtype differs")
            continue
        if w.dtype.kind in "OUSV" or g.dtype.kind in "OUSV":  # strings, objects
            same = g.shape == w.shape and bool(np.all(g == w))
            ok = ok and same
            lines.append(head + (": equal" if same else ": differ"))
            continue
        if w.dtype == np.bool_ or g.dtype == np.bool_:
            bad = int(np.count_nonzero(g.astype(bool) != w.astype(bool)))
            if bad:
                ok = False
                lines.append(head + f": {bad} of {w.size} elements differ")
            else:
                lines.append(head + ": equal")
            continue
        gf, wf = g.astype(np.float64), w.astype(np.float64)
        close = np.isclose(gf, wf, rtol=rtol, atol=atol, equal_nan=True)
        diff = np.abs(gf - wf)
        diff = diff[np.isfinite(diff)]
        worst = float(diff.max()) if diff.size else 0.0
        if close.all():
            lines.append(head + f": close (max abs diff {worst:.3g})")
        else:
            ok = False
            bad = int(close.size - np.count_nonzero(close))
            lines.append(head + f": {bad} of {close.size} elements differ beyond "
                         f"rtol={rtol:g} atol={atol:g} (max abs diff {worst:.3g})")
    return Comparison(ok, lines)


def assert_close(got, want, rtol=1e-4, atol=1e-5, check_dtype=True):
    """compare(), raising AssertionError with its lines when it fails."""
    c = compare(got, want, rtol, atol, check_dtype)
    if not c.ok:
        raise AssertionError("engine outputs differ:\n" + str(c))
    return c


def scaled_error(got, want, rtol=1e-3, atol=1e-5, names=()):
    """How far the engine's outputs are from the expected ones, scaled by
    the size of the values: {"ok", "max_abs", "max_rel"}, and "why" when
    not ok.  An output matches when its largest difference is at most
    atol, or at most rtol of the output's largest magnitude; shapes must
    agree and so must where the values are finite.  Engines that compute
    in float32 and reorder sums (ncnn, OpenVINO) stay well inside rtol.
    names, when given, name the outputs in the messages."""
    got, want = list(got), list(want)
    if len(got) != len(want):
        return {"ok": False, "why": f"{len(got)} outputs, expected {len(want)}"}
    worst_abs = worst_rel = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if tuple(w.shape) != tuple(g.shape):
            name = f" ({names[i]})" if i < len(names) else ""
            return {"ok": False, "why": f"output {i}{name}: shape {list(g.shape)}, "
                                        f"expected {list(w.shape)}"}
        if w.size == 0:
            continue
        w64, g64 = w.astype(np.float64), g.astype(np.float64)
        if not np.all(np.isfinite(g64) == np.isfinite(w64)):
            return {"ok": False, "why": f"output {i}: non-finite values differ"}
        fin = np.isfinite(w64)
        d = float(np.max(np.abs(w64[fin] - g64[fin]), initial=0.0))
        scale = float(np.max(np.abs(w64[fin]), initial=0.0))
        worst_abs = max(worst_abs, d)
        worst_rel = max(worst_rel, d / scale if scale > 0 else (0.0 if d == 0 else float("inf")))
    ok = worst_abs <= atol or worst_rel <= rtol
    res = {"ok": ok, "max_abs": float(f"{worst_abs:.3g}"), "max_rel": float(f"{worst_rel:.3g}")}
    if not ok:
        res["why"] = f"max error {worst_rel:.3g} of the largest magnitude"
    return res


def first_line(exc):
    """One line for a failure: an EngineError's message (its first line,
    and its last when the engine said more, as pnnx's log ends with what
    stopped it), else the exception's first line."""
    if isinstance(exc, EngineError):
        lines = [l.strip() for l in exc.message.splitlines() if l.strip()]
        text = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
    else:
        lines = [l.strip() for l in f"{type(exc).__name__}: {exc}".splitlines() if l.strip()]
        text = lines[0] if lines else type(exc).__name__
    return text[:400]


def _numbered(npz, prefix):
    """npz's arrays prefix0, prefix1, ... in order."""
    n = len([k for k in npz.files if k.startswith(prefix)])
    return [npz[f"{prefix}{i}"] for i in range(n)]


def explain(engine, sample_path, files):
    """For `torchrw explain`: each file run in engine on the sample's
    inputs and held against its PyTorch outputs; one dict per file."""
    sample = np.load(sample_path)
    inputs, want = (_numbered(sample, prefix) for prefix in ("in_", "out_"))
    results = []
    for path in files:
        res = {"file": str(path)}
        try:
            names, _ = _input_names(path)
            if len(names) != len(inputs):
                raise ValueError(f"the file has {len(names)} inputs, the export's example "
                                 f"{len(inputs)}")
            got = run(engine, path, dict(zip(names, inputs)))
        except Exception as e:  # noqa: BLE001 - the engine's failure is the answer
            res.update(stage=getattr(e, "stage", "run"), error=first_line(e))
        else:
            res.update(stage="match", **scaled_error(got, want))
        results.append(res)
    return results


def main(argv):
    import json

    if len(argv) < 4 or argv[0] != "explain":
        sys.stderr.write("usage: engines.py explain ENGINE SAMPLE.npz FILE...\n")
        return 2
    engine = argv[1]
    reason = missing(engine)
    if reason is not None:
        print(json.dumps({"missing": reason}))
        return 0
    for res in explain(engine, argv[2], argv[3:]):
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
