"""Built-in rewriters of rewriters/topk.c: a k that follows dynamic sizes
(default), the same with k at most 3840 (tensorrt, 8.6 and later) and a
constant k of at most 3840 (tensorrt:<8.6)."""
import subprocess

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import BUILD, DYNAMIC_SIZES, ort_run, run_script, torchscript_only

DYNAMIC = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x):
        v, i = torch.topk(x, 5, dim=1)
        w, j = x.topk(2, largest=False)
        return v, i, w, j

g = torch.Generator().manual_seed(0)
x = torch.randn(3, 8, generator=g)
small = torch.randn(3, 4, generator=g)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["v", "i", "w", "j"],
                  dynamic_axes={"x": {0: "n", 1: "m"}}, **TS)
# At run time a row of 4 has fewer than k = 5 elements: PyTorch's answer
# for k = min(5, 4).
v, i = torch.topk(small, 4, dim=1)
w, j = small.topk(2, largest=False)
np.savez("io.npz", x=x.numpy(), small=small.numpy(), v=v.numpy(), i=i.numpy(),
         w=w.numpy(), j=j.numpy())
"""


def _k_inputs(model):
    """For each TopK, the constant K if it is one, else None."""
    consts = {}
    for n in model.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    for t in model.graph.initializer:
        consts[t.name] = numpy_helper.to_array(t)
    return [consts.get(n.input[1]) for n in model.graph.node if n.op_type == "TopK"]


@torchscript_only(DYNAMIC_SIZES)
def test_default_k_follows_a_smaller_input(tmp_path):
    run = run_script(tmp_path, DYNAMIC, backend="onnxruntime").check()
    ks = _k_inputs(run.model())
    assert ks and all(k is None for k in ks), ks  # computed, not constant
    assert "Shape" in run.ops()
    io = np.load(run.path("io.npz"))
    v, i, w, j = ort_run(run.path("model.onnx"), {"x": io["small"]})
    np.testing.assert_allclose(v, io["v"], rtol=1e-6)
    np.testing.assert_array_equal(i, io["i"])
    np.testing.assert_allclose(w, io["w"], rtol=1e-6)
    np.testing.assert_array_equal(j, io["j"])
    # The example's own size still gets the full k.
    x = io["x"]
    v, i, _, _ = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(v, -np.sort(-x, axis=1)[:, :5], rtol=1e-6)


def test_without_the_rewriter_k_is_a_constant(tmp_path):
    run = run_script(tmp_path, DYNAMIC, backend="onnxruntime",
                     TORCHRW_DISABLE="builtin:torch.topk@default").check()
    assert [int(k[0]) for k in _k_inputs(run.model())] == [5, 2]


LARGE = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x):
        return torch.topk(x, 4000, dim=1)[0], torch.topk(x, 7)[1]

x = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["v", "i"], dynamic_axes={"x": {0: "n"}}, **TS)
np.savez("io.npz", x=x.numpy(), v=torch.topk(x, 3840, dim=1)[0].numpy(),
         i=torch.topk(x, 7)[1].numpy())
"""


def _check(run, backend):
    return subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(run.path("model.onnx")),
                           "--backend", backend], capture_output=True, text=True)


def _assert_3840(run):
    assert "3840" in run.stderr and "4000" in run.stderr  # the warning
    io = np.load(run.path("io.npz"))
    v, i = ort_run(run.path("model.onnx"), {"x": io["x"]})
    assert v.shape == (2, 3840)
    np.testing.assert_allclose(v, io["v"], rtol=1e-6)
    np.testing.assert_array_equal(i, io["i"])


def test_tensorrt_8_5_k_is_a_constant_of_at_most_3840(tmp_path):
    run = run_script(tmp_path, LARGE, backend="tensorrt:8.5").check()
    ks = _k_inputs(run.model())
    assert [int(np.ravel(k)[0]) for k in ks] == [3840, 7], ks
    _assert_3840(run)
    check = _check(run, "tensorrt:8.5")
    assert check.returncode == 0, check.stdout + check.stderr


@torchscript_only(DYNAMIC_SIZES)
def test_tensorrt_k_follows_the_input_and_is_at_most_3840(tmp_path):
    # 8.6 and 10.x take a computed K: the default's min(k, size), clamped.
    run = run_script(tmp_path, LARGE, backend="tensorrt").check()
    assert _k_inputs(run.model()) == [None, None]
    _assert_3840(run)
    check = _check(run, "tensorrt")
    assert check.returncode == 0, check.stdout + check.stderr
    # 8.5's parser refuses that K, and says which rewriter makes it constant.
    old = _check(run, "tensorrt:8.5")
    assert old.returncode == 1 and "builtin:torch.topk@tensorrt:<8.6" in old.stdout, old.stdout


TRACED_K = """
import torch

class M(torch.nn.Module):
    def forward(self, x):
        # k taken from the traced input size: torch records it as computed.
        return torch.topk(x, x.size(1) // 2, dim=1)[0]

torch.onnx.export(M(), (torch.randn(2, 10),), "model.onnx", opset_version=11,
                  input_names=["x"], output_names=["v"],
                  dynamic_axes={"x": {1: "m"}}, **TS)
"""


@torchscript_only(DYNAMIC_SIZES)
def test_tensorrt_8_5_makes_a_traced_k_constant(tmp_path):
    run = run_script(tmp_path, TRACED_K, backend="tensorrt:8.5").check()
    assert [int(np.ravel(k)[0]) for k in _k_inputs(run.model())] == [5]
    # Without torchrw, k is computed from Shape.
    plain = run_script(tmp_path, TRACED_K, preload=False).check()
    assert _k_inputs(plain.model()) == [None]


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_default_and_tensorrt_keep_a_traced_k(tmp_path, backend):
    run = run_script(tmp_path, TRACED_K, backend=backend).check()
    assert _k_inputs(run.model()) == [None]
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    (v,) = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(v, -np.sort(-x, axis=1)[:, :3], rtol=1e-6)
