"""ncnn's rewriters of Python functions (issue 4): Tensor.size/shape as
static ints, F.normalize without expand_as and on a kept batch axis."""
import numpy as np

from conftest import DYNAMIC_SIZES, EXPORTER, ort_run, run_script, torchscript_only

SHAPES = """
import numpy as np, torch
import torch.nn.functional as F
class M(torch.nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        y = x.view(n, c, h * w)
        return F.normalize(y, dim=1) * x.size(3), F.normalize(x, p=1.0, dim=-1, eps=1e-6)
x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(0))
# Dynamic axes: torch's own export computes the view's shape with Shape ops.
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  dynamic_axes={"x": {2: "h", 3: "w"}}, **TS)
a, b = M()(x)
np.savez("io.npz", x=x.numpy(), a=a.numpy(), b=b.numpy())
"""


@torchscript_only(DYNAMIC_SIZES)
def test_ncnn_sizes_are_static_and_normalize_has_no_expand(tmp_path):
    run = run_script(tmp_path, SHAPES, backend="ncnn", TORCHRW_LOG="info").check()
    ops = run.ops()
    assert "Shape" not in ops and "Expand" not in ops and "Gather" not in ops, ops
    for name in ("builtin:torch.Tensor.size@ncnn", "builtin:torch.Tensor.shape@ncnn",
                 "builtin:torch.nn.functional.normalize@ncnn"):
        assert f"fired {name}" in run.stderr
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(a, io["a"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, io["b"], rtol=1e-5, atol=1e-6)


def test_other_backends_keep_dynamic_shapes(tmp_path):
    run = run_script(tmp_path, SHAPES, backend="tensorrt").check()
    assert "Shape" in run.ops()
    io = np.load(run.path("io.npz"))
    x = np.concatenate([io["x"], io["x"]], axis=3)  # another width at run time
    a, _ = ort_run(run.path("model.onnx"), {"x": x})
    assert a.shape == (1, 3, 40)


def test_size_rewriter_can_be_switched_off(tmp_path):
    run = run_script(tmp_path, SHAPES, backend="ncnn",
                     TORCHRW_DISABLE="torch.Tensor.size,torch.Tensor.shape").check()
    assert "Shape" in run.ops()


# torchvision's detection models, written for the tracer's sizes (0-dim
# tensors while tracing): GeneralizedRCNNTransform._onnx_batch_images
# torch.stacks sizes, and code calls .float() / .to() on a size element.
# With sizes as plain ints these failed: "'int' object has no attribute
# 'float'", "expected Tensor as element 0 in argument 0, but got int".
DETECTION_SIZES = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing():
            sizes = torch.stack([x.shape[2], x.shape[3]]).to(torch.float32)
            scale = x.size(3).float() / 4.0
        else:
            sizes = torch.tensor([x.shape[2], x.shape[3]], dtype=torch.float32)
            scale = x.size(3) / 4.0
        n, c, h, w = x.shape
        flat = x.view(n, c, h * w) * scale
        return flat, sizes * torch.max(sizes), torch.zeros(h, w).sum(0)
x = torch.randn(1, 3, 4, 6, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))})
"""


def test_ncnn_static_sizes_act_as_the_tracers_tensors(tmp_path):
    run = run_script(tmp_path, DETECTION_SIZES, backend="ncnn").check()
    if EXPORTER == "torchscript":
        ops = run.ops()
        assert "Shape" not in ops and "Gather" not in ops, ops
    io = np.load(run.path("io.npz"))
    for i, out in enumerate(ort_run(run.path("model.onnx"), {"x": io["x"]})):
        np.testing.assert_allclose(out, io[f"o{i}"], rtol=1e-6, err_msg=f"o{i}")


def test_static_sizes_are_what_the_tracer_gives_as_constants(tmp_path):
    """Under the tracer the sizes are 0-dim tensors, as torch's own, that
    the graph holds as constants; torch.zeros(h, w), range(h), view and
    arithmetic take them as they take the tracer's."""
    run = run_script(tmp_path, """
import torch
class M(torch.nn.Module):
    def forward(self, x):
        n, s, w = x.shape
        if torch.jit.is_tracing():
            assert s == 3 and list(range(s)) == [0, 1, 2]
            assert isinstance(s, torch.Tensor) and s.dim() == 0, type(s)
            assert type(x.shape).__name__ == "Size"
            assert torch.stack([s, x.size(2)]).tolist() == [3, 4]
        return x.view(-1, s * w) + torch.zeros(s * w).sum()
torch.onnx.export(M(), (torch.randn(2, 3, 4),), "model.onnx", opset_version=11,
                  input_names=["x"], dynamic_axes={"x": {1: "c", 2: "w"}}, **TS)
""", backend="ncnn").check()
    if EXPORTER == "torchscript":
        assert "Shape" not in run.ops(), run.ops()


def test_ncnn_size_rewriters_skip_the_exporters_own_calls(tmp_path):
    """The model calls .shape once and .size() once; torch.export's exporter
    (fake tensors, meta functions, decompositions, the ONNX translation)
    calls them hundreds of times, which the rewriters leave alone.  Under
    the tracer each fires once; under torch.export, where sizes are ints,
    each hands the model's one call on unchanged, and a call handed on is
    not counted as fired."""
    run = run_script(tmp_path, SHAPES, backend="ncnn", TORCHRW_LOG="info").check()
    for name in ("shape", "size"):
        rewriter = f"builtin:torch.Tensor.{name}@ncnn"
        if EXPORTER == "torchscript":
            assert f"fired {rewriter} x1 " in run.stderr, run.stderr
        else:
            assert f"fired {rewriter} " not in run.stderr, run.stderr
            left = [line for line in run.stderr.splitlines()
                    if line.startswith(f"torchrw: {rewriter} (") and "sizes are ints already" in line]
            assert len(left) == 1, run.stderr


EMPTY = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        # maskrcnn's heads: what has no detection in the example has 0 rows.
        y = x[x.sum(1) > 1e9]
        n = y.shape[0]
        return y.reshape(n, 2, 3).sum(0) + x.shape[1]
x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), y=M()(x).numpy())
"""


@torchscript_only("under torch.export sizes are the capture's own ints and SymInts")
def test_ncnn_empty_sizes_stay_the_tracers(tmp_path):
    """A constant 0 in a Reshape's shape means 'keep the input's': torch's
    ONNX shape inference asserts on one without -1, which made maskrcnn and
    keypointrcnn fail under ncnn.  A size of 0 stays traced, with a reason;
    the others still become constants."""
    run = run_script(tmp_path, EMPTY, backend="ncnn", TORCHRW_LOG="info").check()
    assert "a size of 0 stays the tracer's" in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    (y,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"])
