"""The seed's example: torch.Tensor.repeat on a 1-D tensor for TensorRT."""
import re

import numpy as np

from conftest import EXPORTER, ort_run, run_script

EXPORT = """
import numpy as np
import torch

class Tiler(torch.nn.Module):
    def forward(self, x, y):
        # 1-D with one count: rewritten for tensorrt.  2-D: left alone.
        return x.repeat(3) * 2, y.repeat(2, 1)

model = Tiler().eval()
x = torch.arange(5, dtype=torch.float32) - 2
y = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
torch.onnx.export(model, (x, y), "model.onnx", opset_version=11,
                  input_names=["x", "y"], output_names=["a", "b"], **TS)
a, b = model(x, y)
np.savez("io.npz", x=x.numpy(), y=y.numpy(), a=a.numpy(), b=b.numpy())
"""


def _numerics(run):
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x"], "y": io["y"]})
    np.testing.assert_allclose(a, io["a"], rtol=1e-6)
    np.testing.assert_allclose(b, io["b"], rtol=1e-6)


def _tile_neighbours(ops):
    i = ops.index("Tile")
    return ops[:i], ops[i + 1:]


def test_tensorrt_wraps_1d_repeat_in_unsqueeze_squeeze(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="tensorrt").check()
    ops = run.ops()
    assert ops.count("Tile") == 2
    before, after = _tile_neighbours(ops)
    assert "Unsqueeze" in before and after[0] == "Squeeze", ops
    # The Tile of the rewritten repeat takes a 2-D input.
    _numerics(run)


def test_onnxruntime_keeps_torchs_own_graph(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="onnxruntime").check()
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", EXPORT, preload=False).check()
    assert run.ops() == plain.ops()
    assert "Unsqueeze" not in run.ops() and "Squeeze" not in run.ops()
    _numerics(run)


def test_without_backend_the_shim_changes_nothing(tmp_path):
    plain = run_script(tmp_path, EXPORT, preload=False).check()
    plain_ops = plain.ops()
    run = run_script(tmp_path, EXPORT).check()
    assert run.ops() == plain_ops and "Squeeze" not in plain_ops
    # torch's own warnings, nothing of torchrw's (torch's logging stamps
    # time and pid on each line).
    stamp = re.compile(r"^[DIWEF]\d{4} [\d:.]+ +\d+ ", re.M)
    assert stamp.sub("", run.stderr) == stamp.sub("", plain.stderr)
    _numerics(run)


def test_eager_run_is_not_rewritten(tmp_path):
    code = """
import torch
x = torch.arange(3.0)
# Eager: no trace, so the torchrw key is never in the dispatch set, and
# repeat runs exactly the operators it runs without torchrw.
with torch.autograd.profiler.profile() as prof:
    y = x.repeat(2)
print("EVENTS", [e.name for e in prof.function_events])
print("eager ok", y.tolist())
"""
    plain = run_script(tmp_path, code, preload=False).check()
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_LOG="info").check()
    assert "eager ok" in run.stdout
    assert "fired" not in run.stderr

    def events(r):
        return [l for l in r.stdout.splitlines() if l.startswith("EVENTS")]
    assert events(run) == events(plain) and "aten::repeat" in events(run)[0]


# Counts the model computes from its input's sizes while tracing: torch's
# tracer stashes them as traced values.  Two such calls used to fail
# torch's own assert (`list_trace[idx] == nullptr`, tracer.cpp): the
# rewriter never reached the tracer's kernel that takes the stash, and the
# second call stashed again.  The rewriter leaves them to the original,
# which gets the stash back; a constant count beside them is rewritten.
COMPUTED = """
import numpy as np, torch

class M(torch.nn.Module):
    def forward(self, x):
        n = x.shape[0] % 3 + 1
        a = x.repeat(n)
        return a.repeat(n + 1), x.repeat(2)

g = torch.Generator().manual_seed(0)
x = torch.randn(4, generator=g)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["y", "z"], dynamic_axes={"x": {0: "n"}}, **TS)
x2 = torch.randn(6, generator=g)
np.savez("io.npz", x=x.numpy(), x2=x2.numpy(), y=M()(x)[0].numpy(), z=M()(x)[1].numpy(),
         y2=M()(x2)[0].numpy(), z2=M()(x2)[1].numpy())
"""


def test_counts_from_traced_sizes_go_to_the_original(tmp_path):
    run = run_script(tmp_path, COMPUTED, backend="tensorrt", TORCHRW_LOG="info").check()
    io = np.load(run.path("io.npz"))
    # The computed counts follow the input (dynamic axes): another length
    # repeats by its own count.
    for x, y, z in (("x", "y", "z"), ("x2", "y2", "z2")):
        got_y, got_z = ort_run(run.path("model.onnx"), {"x": io[x]})
        np.testing.assert_allclose(got_y, io[y], rtol=1e-6)
        np.testing.assert_allclose(got_z, io[z], rtol=1e-6)
    if EXPORTER == "torchscript":
        assert run.stderr.count("the repeat count is computed from traced sizes") == 2, run.stderr
        assert "fired builtin:torch.Tensor.repeat@tensorrt" in run.stderr
