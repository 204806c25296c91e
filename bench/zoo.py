"""The model zoo (issue 11): every torchvision model family, exported as a
user would under each backend's profile, once without torchrw (plain) and
once under it, side by side:

    /usr/bin/python3 bench/zoo.py [--torch 2.14] [--exporter torchscript]
        [--backends tensorrt:8.5,ncnn] [--families detection] [--models resnet18]
        [--timeout 600] [--results bench/zoo.jsonl] [--force]
    /usr/bin/python3 bench/zoo.py --table [--results bench/zoo.jsonl]
    /usr/bin/python3 bench/zoo.py ... --keep --workdir DIR   (keep the files)
    /usr/bin/python3 bench/zoo.py ... --recheck --workdir DIR
        (torchrw check again on kept files, after a table changed)

Per model, backend, torch, exporter and mode (plain / torchrw) one row of
the results file (JSON Lines; rows already there are skipped unless
--force, so a run that stops resumes): exported or not and why (the
first line of the error), `torchrw check --backend B` on the file
(violation count and the first rules), and the engine's outputs against
PyTorch's (max abs error, max error relative to the output's largest
value, pass/fail).  Where plain torch's file already gives other outputs
than PyTorch (tied scores, NMS order), the torchrw row is judged by
whether its outputs match plain torch's engine outputs (`vs: plain`).

A model whose seeded outputs do not depend on its input proves nothing
against an engine (vit_b_16's zero-initialised head gives 0 for every
input; untrained BatchNorms, the identity in eval mode, let the signal of
the mobilenets and others vanish).  Where the zoo's comparison passes a
second seeded input's outputs against the zoo input's, the model is
re-initialised, seeded: every all-zero Linear/Conv weight gets a normal of
std 1/sqrt(fan_in), and if that is not enough every BatchNorm's running
statistics become those of a seeded batch (bench/zoo_models.py's
prepare; the row's `reinit` says what was done).  A model whose outputs
still do not depend on its input gets `"degenerate": true` in its rows,
and the table marks it and does not count its numerics as ok.

Every export and every engine run is a process of its own with a
timeout in CPU seconds (a loaded machine stretches wall time, not the
work; wall time is bounded too, against a hang).  A backend's profile is its name, the opset its users pick and
the engine that runs its files on the CPU; TensorRT needs a GPU, so its
files run in ONNX Runtime (the graph's numerics; its check is the
table's).  torch.export's exporter builds at opset 18 and converts down
(under torchrw, torchrw's converter first); when conversion fails it
keeps 18 (the row's `opset_file`).

Interpreters: TORCH113_PYTHON (default /usr/bin/python3, torch 1.13:
TorchScript exporter only), TORCH214_PYTHON (default $VENV/bin/python,
VENV defaulting to .venv: torch 2.14, both exporters), ENGINE_PYTHON
(default $VENV/bin/python: onnxruntime, openvino, ncnn).  The zoo takes
hours and runs outside CI; tests/export/test_zoo.py runs a few models
through the same code.
"""
import argparse
import datetime
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_here, "..", "data"), _here]  # engines.py, then bench's own
import engines  # noqa: E402
from zoo_models import FAMILIES, MODELS, describe_input, unavailable_on  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("VENV", ROOT / ".venv"))
PYTHONS = {
    "1.13": os.environ.get("TORCH113_PYTHON", "/usr/bin/python3"),
    "2.14": os.environ.get("TORCH214_PYTHON", str(VENV / "bin" / "python")),
}
ENGINE_PYTHON = os.environ.get("ENGINE_PYTHON", str(VENV / "bin" / "python"))
EXPORTERS = {"1.13": ["torchscript"], "2.14": ["torchscript", "torch.export"]}

# backend: (opset, engine).  mmdeploy's configs for TensorRT, ncnn and
# OpenVINO export at opset 11; an ONNX Runtime user takes the
# TorchScript exporter's newest default, 17.  TensorRT by engine version
# (docs/backends.md): 8.5 as mmdeploy's configs, and 10.15, whose parser
# takes opsets 9 to 24, at the TorchScript exporter's newest default (17;
# torch.export's exporter builds at 18 and converts down).
PROFILES = {
    "tensorrt:8.5": (11, "onnxruntime"),
    "tensorrt:10.15": (17, "onnxruntime"),
    "ncnn": (11, "ncnn"),
    "openvino": (11, "openvino"),
    "onnxruntime": (17, "onnxruntime"),
}

# An engine output matches PyTorch's when its largest difference is at
# most this fraction of the output's largest magnitude (or is below ATOL).
RTOL = 1e-3
ATOL = 1e-5

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "zoo.jsonl"


def first_line(text, limit=300):
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[0][:limit] if lines else ""


def last_error_line(stderr):
    """The exception line of a traceback on stderr (its last line that
    names an error), for a process that died without its JSON line."""
    lines = [l.strip() for l in (stderr or "").splitlines() if l.strip()]
    for l in reversed(lines):
        if "Error" in l or "error" in l or "Assert" in l:
            return l[:300]
    return lines[-1][:300] if lines else ""


def last_json(stdout):
    for line in reversed((stdout or "").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def child_env(build, backend=None, **extra):
    """The environment of an export or engine process: no torchrw variables
    from the caller; with backend, the library preloaded for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    env["OMP_NUM_THREADS"] = "1"
    if backend:
        env["LD_PRELOAD"] = str(Path(build) / "lib" / "libtorchrw.so")
        env["TORCHRW_BACKEND"] = backend
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --timeout is CPU time: a loaded machine (the zoo shares it with builds
# and tests) stretches wall time several-fold without the export being any
# slower.  Wall time is only bounded, at this multiple, against a hang.
WALL_FACTOR = 4


def run_limited(cmd, timeout, **kw):
    """subprocess.run with timeout seconds of CPU time (RLIMIT_CPU, for the
    process; its children get their own) and WALL_FACTOR times that of wall
    time.  Returns (proc, None), or (None, why) when a limit ended it."""
    import resource
    import signal

    def limit():
        resource.setrlimit(resource.RLIMIT_CPU, (timeout, timeout + 5))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit,
                              timeout=timeout * WALL_FACTOR, **kw)
    except subprocess.TimeoutExpired:
        return None, f"timeout: {timeout * WALL_FACTOR} s of wall time"
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return None, f"timeout: {timeout} s of CPU time"
    return proc, None


def export(python, model, exporter, opset, outdir, timeout, build, backend=None):
    """Exports model in a process of its own (preloaded for backend, if
    given).  Returns a dict: ok, error, outputs (PyTorch's output names),
    seconds, fired (rewrites the report counted)."""
    outdir.mkdir(parents=True, exist_ok=True)
    for f in ("model.onnx", "io.npz", "report.jsonl"):
        (outdir / f).unlink(missing_ok=True)
    extra = {"TORCHRW_REPORT": outdir / "report.jsonl"} if backend else {}
    cmd = [python, str(HERE / "zoo_export.py"), model, exporter, str(opset), str(outdir)]
    t = time.perf_counter()
    proc, limited = run_limited(cmd, timeout, cwd=outdir, env=child_env(build, backend, **extra))
    seconds = round(time.perf_counter() - t, 1)
    if limited:
        return {"ok": False, "error": limited, "seconds": seconds}
    (outdir / "export.log").write_text(proc.stdout + proc.stderr)
    res = last_json(proc.stdout)
    if res is None:
        why = f"exit {proc.returncode}: {last_error_line(proc.stderr)}"
        return {"ok": False, "error": why, "seconds": seconds}
    out = {"ok": "error" not in res and (outdir / "model.onnx").exists(),
           "error": res.get("error"), "outputs": res.get("outputs"),
           "seconds": seconds, "call_seconds": res.get("export_seconds"),
           "torch_version": res.get("torch"),
           "degenerate": res.get("degenerate"), "reinit": res.get("reinit")}
    if res.get("unavailable"):
        out["unavailable"] = True
    if out["ok"]:
        out["opset_file"] = file_opset(outdir / "model.onnx")
    if backend and (outdir / "report.jsonl").exists():
        out["fired"] = fired_of(outdir / "report.jsonl")
    return out


def file_opset(path):
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def fired_of(report):
    """The rewriters that fired in an export, by name, summed over the
    report's records."""
    fired = {}
    for line in report.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        for f in rec.get("fired", []):
            name = f.get("name") or f.get("stable_name") or str(f)
            fired[name] = fired.get(name, 0) + int(f.get("count", 1))
    return fired


def check(build, onnx_path, backend):
    """torchrw check's verdict: violation count and the first distinct
    rules (operator and rule, without the citation)."""
    proc = subprocess.run([str(Path(build) / "tools" / "torchrw"), "check", str(onnx_path),
                           "--backend", backend], capture_output=True, text=True, timeout=300)
    if proc.returncode not in (0, 1):
        return {"error": first_line(proc.stderr or proc.stdout)}
    # One line per violation; the indented lines under it say where it
    # comes from and what fixes it.
    lines = [l for l in proc.stdout.splitlines() if l.strip() and not l[0].isspace()]
    rules = {}
    for l in lines:
        rule = l.split(": ", 1)[-1].split(" (", 1)[0]
        rules[rule] = rules.get(rule, 0) + 1
    first = sorted(rules, key=lambda r: -rules[r])[:3]
    return {"violations": len(lines), "rules": first}


def engine_run(engine, onnx_path, io_path, out_path, workdir, timeout):
    """Runs the file in engine in a process of its own.  Returns None, or
    the error (first line) with the stage it failed at."""
    workdir.mkdir(parents=True, exist_ok=True)
    out_path.unlink(missing_ok=True)
    cmd = [ENGINE_PYTHON, str(HERE / "zoo_engine.py"), engine, str(onnx_path), str(io_path),
           str(out_path), str(workdir)]
    proc, limited = run_limited(cmd, timeout, env=child_env(None))
    if limited:
        return f"run: {limited}"
    res = last_json(proc.stdout)
    if res is None:
        return f"run: exit {proc.returncode}: {last_error_line(proc.stderr)}"
    if "error" in res:
        return f"{res.get('stage', 'run')}: {res['error']}"
    return None


def load_outputs(path, prefix="out_"):
    data = np.load(path)
    n = len([k for k in data.files if k.startswith(prefix)])
    return [data[f"{prefix}{i}"] for i in range(n)]


def canonical(names, arrays):
    """Detections in one order on both sides: by score (rounded), label and
    box, since engines may order tied detections differently."""
    def find(suffix):
        return next((i for i, n in enumerate(names) if n.endswith(suffix)), None)

    b, s, l = find("boxes"), find("scores"), find("labels")
    if None in (b, s, l) or len(arrays) != len(names):
        return arrays
    n = len(arrays[s])
    if any(a.ndim == 0 or len(a) != n for a in arrays):
        return arrays
    key = np.concatenate([-np.round(arrays[s].astype(np.float64)[:, None], 4),
                          arrays[l].astype(np.float64)[:, None],
                          np.round(arrays[b].astype(np.float64), 1)], axis=1)
    order = np.lexsort(key.T[::-1])
    return [a[order] for a in arrays]


def compare(names, want, got, family):
    """got against want: pass/fail, the largest absolute error, the largest
    error relative to the output's largest magnitude, and why it fails
    (data/engines.py's scaled_error, at the zoo's RTOL and ATOL)."""
    if family == "detection" and len(got) == len(want):
        want, got = canonical(names, want), canonical(names, got)
    return engines.scaled_error(got, want, RTOL, ATOL, names)


class Results:
    """The JSON Lines results file: one row per model, backend, torch,
    exporter, mode and opset asked for; appended row by row."""

    KEY = ("model", "backend", "torch", "exporter", "mode", "opset")

    def __init__(self, path):
        self.path = Path(path)
        self.rows = {}
        self.load()

    def load(self):
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[self.key(row)] = row

    def key(self, row):
        return tuple(row[k] for k in self.KEY)

    def get(self, **k):
        return self.rows.get(tuple(k[x] for x in self.KEY))

    def add(self, row):
        """Records row; rows another zoo process added to the file since
        are kept (the file is read again under a lock)."""
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.load()
            self.rows[self.key(row)] = row
            self.write()

    def write(self):
        order = {m: i for i, m in enumerate(MODELS)}
        rows = sorted(self.rows.values(), key=lambda r: (
            r["torch"], r["exporter"], list(PROFILES).index(r["backend"])
            if r["backend"] in PROFILES else 99, r["opset"], order.get(r["model"], 999),
            r["mode"]))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        tmp.replace(self.path)


class Zoo:
    def __init__(self, args):
        self.args = args
        # Absolute: the exports run in their own directories, and a relative
        # path there preloads nothing (ld.so only warns), which would record
        # plain torch's export as torchrw's.
        self.build = Path(args.build).resolve()
        self.work = Path(args.workdir)
        self.results = Results(args.results)

    def log(self, msg):
        print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {msg}", flush=True)

    def opset(self, backend):
        """The opset asked for: --opset, else the backend's profile's."""
        return self.args.opset or PROFILES[backend][0]

    def model_dir(self, torch, exporter, model):
        return self.work / torch / exporter.replace(".", "_") / model

    def run_model(self, torch, exporter, model, backends):
        python = PYTHONS[torch]
        mdir = self.model_dir(torch, exporter, model)
        todo = [b for b in backends
                if self.args.force or any(self.results.get(model=model, backend=b, torch=torch,
                                                           exporter=exporter, mode=m,
                                                           opset=self.opset(b)) is None
                                          for m in ("plain", "torchrw"))]
        if not todo:
            return
        plain = {}
        for b in todo:
            opset = self.opset(b)
            if opset not in plain:
                pdir = mdir / f"plain-opset{opset}"
                self.log(f"{torch} {exporter} {model}: export plain, opset {opset}")
                plain[opset] = (pdir, export(python, model, exporter, opset, pdir,
                                             self.args.timeout, self.build))
            pdir, pres = plain[opset]
            if pres.get("unavailable"):
                for mode in ("plain", "torchrw"):
                    self.record(model, b, torch, exporter, mode, pres, None, None, opset)
                continue
            prow = self.judge(model, b, torch, exporter, "plain", pdir, pres, None, opset)
            tdir = mdir / f"torchrw-{b}"
            self.log(f"{torch} {exporter} {model}: export under torchrw, backend {b}")
            tres = export(python, model, exporter, opset, tdir, self.args.timeout, self.build,
                          backend=b)
            self.judge(model, b, torch, exporter, "torchrw", tdir, tres, (pdir, prow), opset)
            if not self.args.keep:
                shutil.rmtree(tdir, ignore_errors=True)
        if not self.args.keep:
            shutil.rmtree(mdir, ignore_errors=True)

    def recheck(self, torch, exporter, model, backends):
        """Runs torchrw check again on the files a --keep run left, and
        records the rows with the new verdict (the tables changed; the
        files and the engine did not)."""
        mdir = self.model_dir(torch, exporter, model)
        for b in backends:
            for mode in ("plain", "torchrw"):
                row = self.results.get(model=model, backend=b, torch=torch, exporter=exporter,
                                       mode=mode, opset=self.opset(b))
                if row is None or not row.get("exported"):
                    continue
                sub = f"plain-opset{row['opset']}" if mode == "plain" else f"torchrw-{b}"
                path = mdir / sub / "model.onnx"
                if not path.exists():
                    self.log(f"{torch} {exporter} {model} {b} {mode}: no kept file {path}")
                    continue
                chk = check(self.build, path, b)
                old = (row.get("check") or {}).get("violations")
                self.results.add({**row, "check": chk,
                                  "checked": datetime.date.today().isoformat()})
                self.log(f"{torch} {exporter} {model} {b} {mode}: check {old} -> "
                         f"{chk.get('violations', chk.get('error'))}")

    def judge(self, model, backend, torch, exporter, mode, d, res, plain, opset):
        """Checks and runs one export's file; records and returns its row."""
        engine = PROFILES[backend][1]
        chk = num = None
        if res["ok"]:
            chk = check(self.build, d / "model.onnx", backend)
            out = d / f"engine-{engine}.npz"
            err = None
            if not out.exists():
                err = engine_run(engine, d / "model.onnx", d / "io.npz", out, d / f"{engine}-work",
                                 self.args.timeout)
                shutil.rmtree(d / f"{engine}-work", ignore_errors=True)
            if err:
                num = {"ok": False, "engine_error": err}
            else:
                got = load_outputs(out)
                family = MODELS[model][0]
                num = compare(res["outputs"], load_outputs(d / "io.npz"), got, family)
                num["vs"] = "pytorch"
                # Judged by plain torch's numerics where those already
                # differ from PyTorch's.
                if (not num["ok"] and plain and plain[1] and plain[1].get("numerics")
                        and not plain[1]["numerics"].get("ok")
                        and (plain[0] / f"engine-{engine}.npz").exists()):
                    vs_plain = compare(res["outputs"], load_outputs(plain[0] / f"engine-{engine}.npz"),
                                       got, family)
                    num = {**vs_plain, "vs": "plain", "vs_pytorch": num}
            num["engine"] = engine
        return self.record(model, backend, torch, exporter, mode, res, chk, num, opset)

    def record(self, model, backend, torch, exporter, mode, res, chk, num, opset):
        row = {"model": model, "family": MODELS[model][0], "input": describe_input(model),
               "backend": backend, "opset": opset, "torch": torch,
               "torch_version": res.get("torch_version"), "exporter": exporter, "mode": mode,
               "exported": bool(res.get("ok")), "error": None if res.get("ok") else res.get("error"),
               "export_seconds": res.get("seconds"),
               "onnx_export_seconds": res.get("call_seconds"),
               "date": datetime.date.today().isoformat()}
        if res.get("unavailable"):
            row["unavailable"] = True
        if res.get("opset_file") is not None:
            row["opset_file"] = res["opset_file"]
        if res.get("degenerate") is not None:
            row["degenerate"] = res["degenerate"]
        if res.get("reinit"):
            row["reinit"] = res["reinit"]
        if chk is not None:
            row["check"] = chk
        if num is not None:
            row["numerics"] = num
        if mode == "torchrw":
            row["fired"] = res.get("fired", {})
        self.results.add(row)
        verdict = ("unavailable" if row.get("unavailable") else
                   "exported" if row["exported"] else f"failed: {row['error']}")
        extra = ""
        if chk is not None:
            extra += f", check {chk.get('violations', chk.get('error'))}"
        if num is not None:
            extra += f", numerics {'ok' if num.get('ok') else 'FAIL'}"
        if row.get("degenerate"):
            extra += ", DEGENERATE: PyTorch's outputs do not depend on the input"
        self.log(f"  {mode:7} {backend:11} {verdict[:160]}{extra}")
        return row


def selected(arg, allowed, what):
    if not arg:
        return list(allowed)
    out = [x.strip() for x in arg.split(",") if x.strip()]
    bad = [x for x in out if x not in allowed]
    if bad:
        sys.exit(f"zoo: unknown {what}: {', '.join(bad)} (known: {', '.join(allowed)})")
    return out


# The table.

def verdicts(row):
    """(exported, check-clean, numerics-ok) of a row; None when the step
    did not run, or for the numerics of a degenerate row (PyTorch's
    outputs do not depend on the input, so matching them proves nothing)."""
    if row.get("unavailable"):
        return None, None, None
    exp = row["exported"]
    chk = row.get("check")
    clean = None if not exp or chk is None or "error" in chk else chk["violations"] == 0
    num = row.get("numerics")
    ok = None if not exp or num is None or row.get("degenerate") else bool(num.get("ok"))
    return exp, clean, ok


def cell(row):
    if row is None:
        return "not run"
    if row.get("unavailable"):
        return "not in torchvision"
    if not row["exported"]:
        return "export: " + md(row.get("error") or "failed", 80)
    parts = []
    if row.get("opset_file") not in (None, row.get("opset")):
        parts.append(f"opset {row['opset_file']}")
    chk = row.get("check", {})
    if "error" in chk:
        parts.append("check: " + md(chk["error"], 40))
    elif chk.get("violations"):
        rules = [r.split(" - ", 1)[0] for r in chk["rules"][:2]]
        parts.append(f"check {chk['violations']}: " + md("; ".join(rules), 90))
    else:
        parts.append("check clean")
    num = row.get("numerics") or {}
    if num.get("engine_error"):
        parts.append(f"{num.get('engine')} " + md(num["engine_error"], 90))
    elif num:
        vs = " vs plain" if num.get("vs") == "plain" else ""
        state = "ok" if num.get("ok") else "DIFF"
        rel = num.get("max_rel")
        parts.append(f"{num.get('engine')} {state}{vs}" + (f" ({rel:.1g})" if rel is not None
                                                          else f" ({md(num.get('why', ''), 40)})"))
    return ", ".join(parts)


def changed(row):
    """What torchrw changed in a row's export: the rewriters that fired,
    short ("slice x5, layer_norm<8.6 x2"), or "-"."""
    fired = (row or {}).get("fired") or {}
    names = []
    for name, n in sorted(fired.items()):
        short = name.split(":", 1)[-1]
        target, _, backend = short.partition("@")
        target = target.rsplit("::", 1)[-1].rsplit(".", 1)[-1] if "::" in target or \
            target.startswith("torch.") else target
        version = backend.partition(":")[2]
        names.append(f"{target}{version} x{n}" if n != 1 else f"{target}{version}")
    return ", ".join(names) or "-"


def needless(pair):
    """Whether torchrw changed a graph whose plain file the check and the
    engine already passed (a rewriter that fired for nothing this engine
    needs, as far as the zoo can tell)."""
    t, p = pair.get("torchrw"), pair.get("plain")
    if not t or not (t.get("fired") or {}):
        return False
    if p and p.get("opset_file") not in (None, p.get("opset")):
        return False  # plain torch missed the opset asked for
    pe, pc, pn = verdicts(p) if p else (None, None, None)
    return bool(pe and pc and pn)


def md(text, limit):
    text = (text or "").replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def worse(t, p):
    """Why the torchrw row is worse than the plain row, or None."""
    if t is None or p is None or t.get("unavailable"):
        return None
    te, tc, tn = verdicts(t)
    pe, pc, pn = verdicts(p)
    if pe and not te:
        return "export fails: " + (t.get("error") or "")
    if not te:
        return None
    tv = (t.get("check") or {}).get("violations")
    pv = (p.get("check") or {}).get("violations")
    # Counts of files at different opsets judge different graphs: where
    # plain torch's file missed the opset asked for (torch.export's
    # exporter keeps 18 when it cannot convert) and torchrw's has it, the
    # plain file is not what the user asked for, and its count says
    # nothing of torchrw's.
    comparable = not (p.get("opset_file") not in (None, p.get("opset"))
                      and t.get("opset_file") == t.get("opset"))
    if comparable and tv is not None and pv is not None and tv > pv:
        return f"check {tv} violations, plain {pv}: " + "; ".join(t["check"]["rules"][:2])
    if pn and tn is False:
        num = t.get("numerics", {})
        return "numerics: " + (num.get("engine_error") or num.get("why") or "differ")
    return None


def export_seconds(row, key="onnx_export_seconds"):
    """The seconds of a row's export: key "onnx_export_seconds",
    torch.onnx.export's call alone (zoo_export.py times it; rows from before
    2026-12-04 lack it), or "export_seconds", the export's whole process
    (starting Python, importing torch, building the model, exporting);
    None when the row lacks it or did not export."""
    return row.get(key) if row and row.get("exported") else None


def time_ratio(pair, key="onnx_export_seconds"):
    """torchrw's export time over plain torch's for one model's rows, or
    None where either lacks it (or took no measurable time)."""
    t, p = export_seconds(pair.get("torchrw"), key), export_seconds(pair.get("plain"), key)
    return t / p if t is not None and p else None


def median(values):
    v = sorted(values)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def group_of(r):
    return (r["torch"], r["exporter"], r["backend"], r["opset"])


def table(results, out=None):
    out = out or sys.stdout
    rows = list(results.rows.values())
    groups = sorted({group_of(r) for r in rows},
                    key=lambda g: (g[0], ["torchscript", "torch.export"].index(g[1]),
                                   list(PROFILES).index(g[2]), g[3]))
    print("Opset: asked for (the profile's, or the run's --opset).  torch.export's exporter "
          "builds at 18 and converts down; "
          "where that fails the file keeps 18, and its cell says \"opset 18\".  "
          "**(degenerate)**: PyTorch's outputs do not depend on the input (zoo_models.prepare), "
          "so their numerics are not counted as ok.  Export time: torchrw's over plain torch's, "
          "the median over the group's models that exported both ways, of torch.onnx.export's "
          "call alone (\"call\"; rows recorded before 2026-12-04 lack it) and of the export's "
          "whole process (\"process\": Python, importing torch, building the model, exporting); "
          "a model's cell gives the call's seconds, else the process's (with \"p\").\n",
          file=out)
    print("| torch | exporter | backend (opset, engine) | models | exported torchrw / plain "
          "| check-clean torchrw / plain | numerics-ok torchrw / plain | worse under torchrw "
          "| changed by torchrw (plain already clean and ok) "
          "| export time torchrw / plain |", file=out)
    print("|---|---|---|---|---|---|---|---|---|---|", file=out)
    for group in groups:
        torch, exporter, backend, opset = group
        sel = [r for r in rows if group_of(r) == group]
        models = sorted({r["model"] for r in sel if not r.get("unavailable")})
        tot = {m: [0, 0, 0] for m in ("torchrw", "plain")}
        n_worse = n_changed = n_needless = 0
        ratios, process = [], []
        for model in models:
            pair = {r["mode"]: r for r in sel if r["model"] == model}
            for mode in tot:
                if mode in pair:
                    for i, v in enumerate(verdicts(pair[mode])):
                        tot[mode][i] += bool(v)
            n_worse += worse(pair.get("torchrw"), pair.get("plain")) is not None
            n_changed += bool((pair.get("torchrw") or {}).get("fired"))
            n_needless += needless(pair)
            if time_ratio(pair) is not None:
                ratios.append(time_ratio(pair))
            if time_ratio(pair, "export_seconds") is not None:
                process.append(time_ratio(pair, "export_seconds"))
        engine = PROFILES[backend][1]
        t, p = tot["torchrw"], tot["plain"]
        ratio = "; ".join(f"{what} {median(r):.2f} ({len(r)})"
                          for what, r in (("call", ratios), ("process", process)) if r) or "-"
        print(f"| {torch} | {exporter} | {backend} ({opset}, {engine}) | {len(models)} | "
              f"{t[0]} / {p[0]} | {t[1]} / {p[1]} | {t[2]} / {p[2]} | {n_worse} | "
              f"{n_changed} ({n_needless}) | {ratio} |",
              file=out)
    for group in groups:
        torch, exporter, backend, opset = group
        sel = [r for r in rows if group_of(r) == group]
        at = "" if opset == PROFILES[backend][0] else f", opset {opset}"
        print(f"\n### torch {torch}, {exporter} exporter, {backend} profile{at}\n", file=out)
        print("| model | input | torchrw | torchrw changed | plain | export s torchrw / plain |",
              file=out)
        print("|---|---|---|---|---|---|", file=out)
        for model in [m for m in MODELS if any(r["model"] == m for r in sel)]:
            pair = {r["mode"]: r for r in sel if r["model"] == model}
            any_row = next(iter(pair.values()))
            w = worse(pair.get("torchrw"), pair.get("plain"))
            mark = " **(worse)**" if w else ""
            if any(r.get("degenerate") for r in pair.values()):
                mark += " **(degenerate)**"
            timing = "-"
            for key, mark_ in (("onnx_export_seconds", ""), ("export_seconds", " p")):
                secs = [export_seconds(pair.get(m), key) for m in ("torchrw", "plain")]
                if None not in secs:
                    r = time_ratio(pair, key)
                    timing = (f"{secs[0]:g} / {secs[1]:g}{mark_}"
                              + (f" ({r:.2f})" if r is not None else ""))
                    break
            print(f"| {model}{mark} | {any_row['input']} | {cell(pair.get('torchrw'))} | "
                  f"{md(changed(pair.get('torchrw')), 120)} | {cell(pair.get('plain'))} | "
                  f"{timing} |", file=out)


TABLES_HEADER = ("<!-- Generated by bench/zoo.py --table --output docs/zoo-tables.md from "
                 "bench/zoo.jsonl: do not edit. -->")


def write_tables(results, path):
    """Writes the zoo's tables as the whole of path (a generated file):
    a header saying so, the row count and dates, then table().  0, or 2
    with a message when path cannot be written."""
    import io
    buf = io.StringIO()
    table(results, buf)
    dates = sorted({r["date"] for r in results.rows.values() if r.get("date")})
    span = f"{dates[0]} to {dates[-1]}" if len(dates) > 1 else (dates[0] if dates else "never")
    text = (f"{TABLES_HEADER}\n\n# Model zoo: the tables\n\n"
            f"What each model did, plain and under torchrw ([zoo.md](zoo.md) says how "
            f"it is run and judged).\n\n"
            f"{len(results.rows)} rows of {results.path.name}, recorded {span}.\n\n"
            + buf.getvalue())
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        print(f"zoo.py: {path}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def regressions(results):
    """Every row pair where torchrw does worse than plain torch."""
    out = []
    for r in results.rows.values():
        if r["mode"] != "torchrw":
            continue
        p = results.get(model=r["model"], backend=r["backend"], torch=r["torch"],
                        exporter=r["exporter"], mode="plain", opset=r["opset"])
        w = worse(r, p)
        if w:
            out.append((r["torch"], r["exporter"], r["backend"], r["model"], w))
    return sorted(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", action="store_true", help="print the markdown table and exit")
    ap.add_argument("--output", metavar="PATH",
                    help="with --table: write the tables as the whole of PATH "
                         "(docs/zoo-tables.md, a generated file)")
    ap.add_argument("--regressions", action="store_true",
                    help="list where torchrw does worse than plain torch, and exit")
    ap.add_argument("--results", default=str(DEFAULT_RESULTS))
    ap.add_argument("--models", help="comma-separated model names")
    ap.add_argument("--families", help=f"comma-separated: {', '.join(FAMILIES)}")
    ap.add_argument("--backends", help=f"comma-separated: {', '.join(PROFILES)}")
    ap.add_argument("--torch", help="comma-separated: " + ", ".join(PYTHONS))
    ap.add_argument("--exporter", help="comma-separated: torchscript, torch.export")
    ap.add_argument("--timeout", type=int, default=900,
                    help="CPU seconds per export and per engine run (default 900; wall time "
                         f"is bounded at {WALL_FACTOR} times that)")
    ap.add_argument("--opset", type=int,
                    help="the opset asked for instead of each backend profile's (issue 21 "
                         "tried ncnn at 13 with TorchScript's exporter and 18 with "
                         "torch.export's); rows are kept per opset")
    ap.add_argument("--force", action="store_true", help="redo rows already recorded")
    ap.add_argument("--keep", action="store_true",
                    help="keep the exported files under --workdir (plain-opsetN/, torchrw-B/) "
                         "to study them; by default they are removed once judged")
    ap.add_argument("--recheck", action="store_true",
                    help="only run torchrw check again on the files an earlier --keep run "
                         "left under --workdir, and record the new verdicts")
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                      "torchrw-zoo"))
    args = ap.parse_args(argv)
    results = Results(args.results)
    if args.table and args.output:
        return write_tables(results, Path(args.output))
    if args.table:
        table(results)
        return 0
    if args.regressions:
        for r in regressions(results):
            print(" | ".join(r))
        return 0
    models = selected(args.models, list(MODELS), "model")
    families = selected(args.families, FAMILIES, "family")
    models = [m for m in models if MODELS[m][0] in families]
    backends = selected(args.backends, list(PROFILES), "backend")
    torches = selected(args.torch, list(PYTHONS), "torch")
    exporters = selected(args.exporter, ["torchscript", "torch.export"], "exporter")
    zoo = Zoo(args)
    preload = zoo.build / "lib" / "libtorchrw.so"
    if not args.recheck and not preload.exists():
        print(f"zoo.py: --build {args.build}: no {preload} (build torchrw first)", file=sys.stderr)
        return 2
    for torch in torches:
        for exporter in [e for e in exporters if e in EXPORTERS[torch]]:
            for model in models:
                why = unavailable_on(model, torch)
                if why:
                    zoo.log(f"{torch} {exporter} {model}: skipped: {why}")
                    continue
                if args.recheck:
                    zoo.recheck(torch, exporter, model, backends)
                else:
                    zoo.run_model(torch, exporter, model, backends)
    return 0


if __name__ == "__main__":
    sys.exit(main())
