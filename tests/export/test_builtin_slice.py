"""Built-in symbolic of symbolic/slice.c: Slice with constant axes for
TensorRT before 10.15, inside If bodies too, where the parsers of 8.5 and
8.6 (whose support matrices say "'axes' must be an initializer") cannot
read the axes torch 2.x's symbolic leaves computed; 10.15's matrix lists
Slice without that restriction, so for it torch's own symbolic runs."""
import subprocess

import numpy as np

from conftest import BUILD, TORCH, ort_run, run_script, torchscript_only

# A function scripted while tracing (torch.jit._script_if_tracing, as
# torchvision's batched_nms): its branches become an If whose bodies
# constant folding does not reach.
EXPORT = """
import numpy as np, torch

@torch.jit._script_if_tracing
def head(x):
    if bool(x.sum() > 0):
        return x[:, 1:3]
    return x[:, 0:2]

class M(torch.nn.Module):
    def forward(self, x):
        return head(x) * 2

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 5, generator=g)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=13, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), y=M()(x).numpy(), x2=-x.abs().numpy(), y2=M()(-x.abs()).numpy())
"""


def _check(run, backend):
    return subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(run.path("model.onnx")),
                           "--backend", backend], capture_output=True, text=True)


@torchscript_only("torch.export's exporter does not script; its If bodies come from torch.cond")
def test_tensorrt_slice_axes_are_constants_inside_if(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="tensorrt:8.6", TORCHRW_LOG="info").check()
    assert "fired builtin:aten::slice@tensorrt" in run.stderr
    for backend in ("tensorrt:8.5", "tensorrt:8.6", "tensorrt"):
        chk = _check(run, backend)
        assert chk.returncode == 0, chk.stdout + chk.stderr
    io = np.load(run.path("io.npz"))
    for x, y in (("x", "y"), ("x2", "y2")):  # both branches
        np.testing.assert_allclose(ort_run(run.path("model.onnx"), {"x": io[x]})[0], io[y],
                                   rtol=1e-6)
    if TORCH >= (2, 0):
        (tmp_path / "plain").mkdir()
        plain = run_script(tmp_path / "plain", EXPORT, preload=False).check()
        for backend in ("tensorrt:8.5", "tensorrt:8.6"):
            chk = _check(plain, backend)
            assert chk.returncode == 1 and "Slice: input 3" in chk.stdout, chk.stdout
            assert "fixed by: builtin:aten::slice@tensorrt:<10.15" in chk.stdout
        chk = _check(plain, "tensorrt")  # 10.15
        assert chk.returncode == 0, chk.stdout + chk.stderr


@torchscript_only("torch.export's exporter does not script; its If bodies come from torch.cond")
def test_tensorrt_10_15_keeps_torchs_own_slice(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="tensorrt", TORCHRW_LOG="info").check()
    assert "builtin:aten::slice@tensorrt" not in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    np.testing.assert_allclose(ort_run(run.path("model.onnx"), {"x": io["x"]})[0], io["y"],
                               rtol=1e-6)
