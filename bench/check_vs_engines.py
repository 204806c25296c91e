"""Holds `torchrw check`'s capability tables against the engines themselves.

For every ONNX file given (and, with --node-tests, ONNX's own one-operator
test cases, which carry inputs and expected outputs) and every backend
whose engine runs here (onnxruntime, openvino, ncnn), this runs
`torchrw check --backend B` and the engine (data/engines.py), and sorts
each pair:

    agree-pass     the table passes it; the engine loads, runs (and matches)
    agree-flag     the table reports a violation; the engine rejects it or
                   computes something else
    table-lenient  the table passes it; the engine rejects it or computes
                   something else: the table is wrong
    table-strict   the table reports a violation; the engine runs it right:
                   the table is wrong, or must cite why it is stricter

Files without expected outputs are fed random inputs (floats from a normal
distribution, integers 1 to 3: an index input may then be out of range,
and an engine that refuses it is not wrong) and are "right" when they load
and run (and, for openvino and ncnn, match ONNX Runtime where ONNX Runtime
runs them).  ONNX's node tests bring their own inputs and outputs; cases
of dtypes numpy lacks (bfloat16, float8, ...) are left out.  ncnn runs in a
forked child: its Python module segfaults on some node tests, and a child
that dies counts as the engine rejecting the file.

usage: PYTHON bench/check_vs_engines.py [--build build] [--node-tests [REGEX]]
           [--after NAME] [--table-ops B] [--engine E ...] [--out results.jsonl]
           FILE.onnx|DIR ...
(--after NAME: only the node tests whose names sort after NAME, to go on
with a survey that stopped there; --table-ops B: only the node tests whose
every operator B's table lists as supported, where a lenient table shows.)
(PYTHON: the venv of scripts/setup, which has the engines.)
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "data"), str(HERE)]  # engines.py, then bench's own
import engines  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def check(trw, path, backend):
    """(violations, exit status) of torchrw check."""
    p = subprocess.run([trw, "check", str(path), "--backend", backend, "--json"],
                       capture_output=True, text=True,
                       env=dict(os.environ, TORCHRW_DATA=str(ROOT / "data")))
    if p.returncode not in (0, 1):
        return None, p.stderr.strip()
    d = json.loads(p.stdout)
    return [f"{v['node']}: {v['op']}: {v['rule']}" for v in d["violations"]], None


def random_feeds(path):
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        tt = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 2 for d in tt.shape.dim]
        dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if dt == np.bool_:
            feeds[i.name] = rng.integers(0, 2, shape).astype(bool)
        elif np.issubdtype(dt, np.integer):
            feeds[i.name] = rng.integers(1, 4, shape).astype(dt)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(dt)
    return feeds


def engine_verdict(engine, path, feeds, want, workdir, rtol, atol):
    """("ok"|"wrong"|"reject"|"skip", detail)."""
    try:
        got = engines.run(engine, path, feeds, workdir)
    except engines.EngineError as e:
        said = [l for l in e.message.splitlines() if l.strip() and not l.startswith("Exception from")]
        return "reject", f"{e.stage}: {' | '.join(said)[:300]}"
    except (TypeError, KeyError, ValueError) as e:
        return "skip", f"cannot feed it: {e}"
    if want is None:
        return "ok", "ran (no reference)"
    c = engines.compare(got, want, rtol=rtol, atol=atol, check_dtype=engine != "ncnn")
    return ("ok" if c.ok else "wrong"), str(c).replace("\n", "; ")[:300]


def isolated_verdict(engine, *args):
    """engine_verdict() in a forked child for ncnn, whose Python module can
    crash the process (a segfault on some of ONNX's Split and Slice node
    tests): a child that dies is the engine rejecting the file."""
    if engine != "ncnn" or not hasattr(os, "fork"):
        return engine_verdict(engine, *args)
    import pickle
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, never return
        os.close(r)
        try:
            data = pickle.dumps(engine_verdict(engine, *args))
        except BaseException as e:  # noqa: BLE001 (reported to the parent)
            data = pickle.dumps(("skip", f"the harness failed: {e!r}"))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "reject", f"run: the process running {engine} died of signal " \
                         f"{os.WTERMSIG(status)} ({engine}'s Python module crashed)"
    return pickle.loads(data)


def sort(flags, verdict):
    if verdict == "skip":
        return "skip"
    if flags:
        return "agree-flag" if verdict in ("reject", "wrong") else "table-strict"
    return "agree-pass" if verdict == "ok" else "table-lenient"


def table_ops(backend):
    """The default-domain operators backend's table lists as supported
    (its rules aside), or None when the table takes every operator."""
    d = json.loads((ROOT / "data" / "backends" / f"{backend}.json").read_text())
    ops = d["domains"].get("ai.onnx", {}).get("ops", {})
    if ops == "*":
        return None
    return {o for o, e in ops.items()
            if e is not False and not (isinstance(e, dict) and e.get("supported") is False)}


def node_cases(regex, after=None, ops=None):
    """ONNX's node test cases whose names match regex and sort after
    `after`, and, with ops, whose every node is one of ops (default domain),
    in name order."""
    from onnx.backend.test.case import node
    for c in sorted(node.collect_testcases(), key=lambda c: c.name):
        if regex and not re.search(regex, c.name):
            continue
        if after is not None and c.name <= after:
            continue
        if ops is not None and not all(n.domain in ("", "ai.onnx") and n.op_type in ops
                                       for n in c.model.graph.node):
            continue
        if not c.data_sets:
            continue
        inputs, outputs = c.data_sets[0]
        try:
            inputs, outputs = [_array(a) for a in inputs], [_array(a) for a in outputs]
        except (TypeError, ValueError):
            continue  # a type numpy has no dtype for (bfloat16, float8, ...)
        names = [i.name for i in c.model.graph.input]
        yield c.name, c.model, dict(zip(names, inputs)), list(outputs), c.rtol, c.atol


def _array(a):
    """A test case's value as a numpy array of a dtype numpy has."""
    from onnx import TensorProto, numpy_helper
    a = numpy_helper.to_array(a) if isinstance(a, TensorProto) else np.asarray(a)
    if a.dtype.kind == "V" or a.dtype.name not in np.sctypeDict:
        raise TypeError(f"no numpy dtype for {a.dtype}")
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--node-tests", nargs="?", const="", default=None,
                    help="also ONNX's node test cases (names matching REGEX)")
    ap.add_argument("--after", metavar="NAME",
                    help="only the node test cases whose names sort after NAME")
    ap.add_argument("--table-ops", metavar="BACKEND",
                    help="only the node test cases whose every operator BACKEND's "
                         "table lists as supported")
    ap.add_argument("--engine", action="append", dest="engines",
                    help="default: every engine that runs here")
    ap.add_argument("--out", help="append one JSON line per file and backend")
    args = ap.parse_args()
    trw = str(Path(args.build) / "tools" / "torchrw")
    chosen = args.engines or [e for e in engines.ENGINES if engines.missing(e) is None]

    items = []
    for p in args.paths:
        p = Path(p)
        files = sorted(p.rglob("*.onnx")) if p.is_dir() else [p]
        for f in files:
            items.append((str(f), f, None, None, 1e-4, 1e-5))
    tmp = Path(tempfile.mkdtemp(prefix="torchrw-cve-"))
    if args.node_tests is not None:
        import onnx
        ops = table_ops(args.table_ops) if args.table_ops else None
        for name, model, feeds, outs, rtol, atol in node_cases(args.node_tests, args.after,
                                                               ops):
            f = tmp / f"{name}.onnx"
            onnx.save(model, str(f))
            items.append((name, f, feeds, outs, max(rtol, 1e-4), max(atol, 1e-5)))

    out = open(args.out, "a") if args.out else None
    totals = {}
    for name, f, feeds, want, rtol, atol in items:
        if feeds is None:
            try:
                feeds = random_feeds(f)
            except Exception as e:  # not a loadable ONNX file: nothing to hold
                print(f"{name}: skipped, {e}")
                continue
            try:
                want = engines.run("onnxruntime", f, feeds) if "onnxruntime" not in chosen \
                    else None
            except engines.EngineError:
                want = None
        ref = None
        for engine in chosen:
            flags, err = check(trw, f, engine)
            if flags is None:
                print(f"{name}: torchrw check --backend {engine} failed: {err}")
                continue
            verdict, detail = isolated_verdict(engine, f, feeds, want if want is not None
                                             else ref, tmp / "work" / engine, rtol, atol)
            if engine == "onnxruntime" and want is None and verdict == "ok":
                ref = engines.run("onnxruntime", f, feeds)
            kind = sort(flags, verdict)
            totals[(engine, kind)] = totals.get((engine, kind), 0) + 1
            rec = {"file": name, "backend": engine, "kind": kind, "engine": verdict,
                   "detail": detail, "violations": flags}
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
            if kind in ("table-lenient", "table-strict"):
                print(f"{kind:14} {engine:12} {name}: engine {verdict} ({detail}); "
                      f"table: {'; '.join(flags) or 'passes'}")
    print()
    for engine in chosen:
        row = {k: totals.get((engine, k), 0) for k in
               ("agree-pass", "agree-flag", "table-lenient", "table-strict", "skip")}
        print(engine, " ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
