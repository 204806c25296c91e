"""`torchrw check`'s tables held against the engines themselves (issue 11).

Small models are exported under the preloaded library with each engine's
backend, then each file goes through `torchrw check --backend B` and
through the engine (data/engines.py: ONNX Runtime, OpenVINO, ncnn through
pnnx), in pytest's interpreter (the venv of scripts/setup, which has the
engines; the exporting interpreter, PYTHON, needs only torch).  The rule
every test holds: a file the table passes loads, runs and matches PyTorch
in the engine; a file the table flags is rejected by the engine or computed
wrongly, unless every violation cites why the table is stricter than the
engine ("stricter than the engine" in its source).
"""
import json
import subprocess

import numpy as np
import pytest

from conftest import BUILD, EXPORTER, ROOT, engines, run_script


TRW = BUILD / "tools" / "torchrw"
BACKENDS = ("onnxruntime", "openvino", "ncnn")

# Every model in one script, so each backend costs one export process.
# opset 13 (the TorchScript exporter; what TensorRT and ncnn users pick),
# 17 for LayerNormalization; torch.export's exporter picks its own.
EXPORT = """
import inspect, torch, numpy as np
import torch.nn.functional as F
torch.manual_seed(0)
EXPORTER = %r

class Repeat(torch.nn.Module):          # examples/export_repeat.py's model
    def forward(self, x):
        return x.repeat(4) * 0.5

class ConvUp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    def forward(self, x):
        y = self.conv(x)
        return F.leaky_relu(F.interpolate(y, scale_factor=2, mode="nearest"), 0.1), \\
            F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)

class TopkHalf(torch.nn.Module):         # K from the input's size
    def forward(self, x):
        return x.topk(x.shape[1] // 2)[0]

class GroupNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gn = torch.nn.GroupNorm(2, 4)
    def forward(self, x):
        return self.gn(x)

class LayerNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = torch.nn.LayerNorm(16)
    def forward(self, x):
        return self.ln(x)

class CatBool(torch.nn.Module):
    def forward(self, x):
        return torch.cat([x > 0, x < -1], 1).float()

class Windows(torch.nn.Module):         # maxvit's window partition: 6 dims
    def forward(self, x):
        return (x.reshape(1, 6, 4, 2, 2, 5) * 2).reshape(1, 6, 8, 10) + 1

models = {
    "repeat": (Repeat(), torch.linspace(0, 1, 8), 13),
    "windows": (Windows(), torch.randn(1, 6, 8, 10), 13),
    "convup": (ConvUp(), torch.randn(1, 3, 8, 8), 13),
    "topk": (TopkHalf(), torch.randn(1, 20), 13),
    "groupnorm": (GroupNorm(), torch.randn(1, 4, 6, 6), 13),
    "layernorm": (LayerNorm(), torch.randn(2, 8, 16), 17),
    "catbool": (CatBool(), torch.randn(1, 4, 5), 13),
}
for name, (model, x, opset) in models.items():
    model.eval()
    kw = dict(TS, opset_version=opset) if EXPORTER == "torchscript" else dict(TS)
    torch.onnx.export(model, (x,), name + ".onnx", input_names=["x"], **kw)
    with torch.no_grad():
        out = model(x)
    out = out if isinstance(out, tuple) else (out,)
    np.savez(name + ".npz", x=x.numpy(), *[o.float().numpy() for o in out])
print("EXPORTED")
"""

MODELS = ("repeat", "convup", "topk", "groupnorm", "layernorm", "catbool", "windows")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """backend -> the directory its models were exported into; "plain" is
    the export without torchrw."""
    dirs = {}

    def get(backend):
        if backend not in dirs:
            d = tmp_path_factory.mktemp(backend)
            code = EXPORT % EXPORTER
            if backend == "plain":
                run = run_script(d, code, preload=False)
            else:
                run = run_script(d, code, backend=backend)
            assert run.returncode == 0 and "EXPORTED" in run.stdout, run.stderr[-3000:]
            dirs[backend] = d
        return dirs[backend]
    return get


def check(path, backend):
    """The violations of torchrw check, as (rule text, source) pairs."""
    p = subprocess.run([str(TRW), "check", str(path), "--backend", backend, "--json"],
                       capture_output=True, text=True,
                       env={"TORCHRW_DATA": str(ROOT / "data"), "PATH": "/usr/bin:/bin"})
    assert p.returncode in (0, 1), p.stderr
    d = json.loads(p.stdout)
    assert (p.returncode == 1) == (d["count"] > 0)
    return [(f"{v['node']}: {v['op']}: {v['rule']}", v["source"]) for v in d["violations"]]


def engine(backend, path, feeds, want, workdir):
    """("ok" | "wrong" | "rejected", what the engine said or how it differed)."""
    try:
        got = engines.run(backend, path, feeds, workdir)
    except engines.EngineError as e:
        return "rejected", str(e)
    c = engines.compare(got, want, rtol=1e-4, atol=1e-4, check_dtype=backend != "ncnn")
    return ("ok" if c.ok else "wrong"), str(c)


def hold(backend, path, workdir):
    """Holds the table against the engine for one file; returns (violations,
    engine verdict) for the caller's own expectations."""
    io = np.load(str(path).replace(".onnx", ".npz"))
    want = [io[k] for k in sorted((k for k in io.files if k.startswith("arr_")),
                                  key=lambda k: int(k[4:]))]
    violations = check(path, backend)
    verdict, said = engine(backend, path, {"x": io["x"]}, want, workdir)
    if not violations:
        assert verdict == "ok", (f"torchrw check --backend {backend} passes {path.name}, "
                                 f"but the engine: {verdict}: {said}")
    elif verdict == "ok":
        uncited = [v for v, src in violations if "stricter than the engine" not in src]
        assert not uncited, (f"the {backend} table flags {path.name}, which the engine runs "
                             f"right, without saying why it is stricter: {uncited}")
    return [v for v, _ in violations], verdict, said


def external_data(path):
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


def need(backend):
    reason = engines.missing(backend)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_table_agrees_with_engine(exported, backend, name, tmp_path):
    need(backend)
    path = exported(backend) / f"{name}.onnx"
    violations, verdict, said = hold(backend, path, tmp_path)
    # What the engines did with these models (pnnx 20261020, ncnn and
    # OpenVINO 2026.4.1, onnxruntime 1.32.0), so a change shows here.
    if backend == "ncnn" and external_data(path):
        # torch.export's exporter keeps larger weights in model.onnx.data,
        # which pnnx does not read ("FATAL ERROR no external data").
        assert verdict == "rejected" and any("external data" in v for v in violations), \
            (violations, said)
    elif backend in ("onnxruntime", "openvino") or name in ("convup", "groupnorm", "layernorm"):
        assert (violations, verdict) == ([], "ok"), (violations, said)
    else:  # ncnn: repeat (Tile), topk (TopK), catbool (Greater) have no ncnn layer,
        # windows reshapes to 6 dims (ncnn's blobs have at most 4)
        assert verdict == "rejected" and violations, (violations, said)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_repeat_graph(exported, backend, tmp_path):
    # The 1-D repeat exported without torchrw: onnxruntime and OpenVINO run
    # it, ncnn has no layer for its Tile, and each table says so.
    need(backend)
    violations, verdict, said = hold(backend, exported("plain") / "repeat.onnx", tmp_path)
    if backend == "ncnn":
        assert verdict == "rejected" and any("Tile" in v for v in violations), said
    else:
        assert (violations, verdict) == ([], "ok"), (violations, said)


def test_engine_error_names_stage_and_engine_words(tmp_path):
    # A file no engine can take: the error says which engine, at which
    # stage, in the engine's words.
    need("onnxruntime")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(engines.EngineError) as e:
        engines.run("onnxruntime", bad, {})
    assert e.value.engine == "onnxruntime" and e.value.stage == "load"
    assert "protobuf" in e.value.message.lower() or "parse" in e.value.message.lower()


def test_compare_reports_shape_dtype_and_values():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert engines.compare([a], [a.copy()]).ok
    c = engines.compare([a.reshape(3, 2)], [a])
    assert not c.ok and "shape differs" in str(c)
    c = engines.compare([a.astype(np.float64)], [a])
    assert not c.ok and "dtype differs" in str(c)
    assert engines.compare([a.astype(np.float64)], [a], check_dtype=False).ok
    c = engines.compare([a + 1], [a])
    assert not c.ok and "6 of 6 elements differ" in str(c) and "max abs diff 1" in str(c)
    assert not engines.compare([a, a], [a]).ok
