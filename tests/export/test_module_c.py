"""Module rewriters written in C (issue 4): the built-in FrozenBatchNorm2d
rewriter on torchvision's module, and the C module API through
tests/plugins/mod_plugin.c."""
from pathlib import Path

import numpy as np

from conftest import PLUGINS, ort_run, run_script

HERE = Path(__file__).resolve().parent
MOD_PLUGIN = PLUGINS / "mod_plugin.so"

FROZEN_BN = """
import numpy as np, torch
from torchvision.ops.misc import FrozenBatchNorm2d
torch.manual_seed(0)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, bias=False)
        self.bn = FrozenBatchNorm2d(8)
        for b in (self.bn.weight, self.bn.bias, self.bn.running_mean):
            b.uniform_(-1, 1)
        self.bn.running_var.uniform_(0.5, 2)
    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))
m = Net().eval()
x = torch.randn(2, 3, 10, 10)
torch.onnx.export(m, (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), y=m(x).detach().numpy())
"""


def test_frozen_batch_norm_folds_into_the_convolution_for_tensorrt(tmp_path):
    run = run_script(tmp_path, FROZEN_BN, backend="tensorrt", TORCHRW_LOG="info").check()
    assert run.ops() == ["Conv", "Relu"]
    assert "fired builtin:torchvision.ops.misc.FrozenBatchNorm2d@tensorrt x1 (rewriters/frozen_bn.c:" in run.stderr
    io = np.load(run.path("io.npz"))
    (y,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5)


def test_frozen_batch_norm_untouched_elsewhere(tmp_path):
    run = run_script(tmp_path, FROZEN_BN, backend="onnxruntime").check()
    assert run.ops() == ["Conv", "Mul", "Add", "Relu"]


SRCNN = """
import copy, sys, numpy as np, torch
sys.path.insert(0, HERE)
from userpkg.models import SRCNN
torch.manual_seed(0)
m = SRCNN().eval()
m.init_weights()
ref = copy.deepcopy(m)
ref.img_upsampler = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
x = torch.rand(1, 3, 6, 6)
torch.onnx.export(m, (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), y=ref(x).detach().numpy())
print("FORWARD", type(m).forward.__qualname__)
"""


def test_c_module_rewriter_reads_attributes_and_calls_submodules(tmp_path):
    run = run_script(tmp_path, SRCNN.replace("HERE", repr(str(HERE))), backend="ncnn",
                     TORCHRW_PLUGINS=MOD_PLUGIN).check()
    resize = [n for n in run.model().graph.node if n.op_type == "Resize"][0]
    assert {a.name: a.s for a in resize.attribute}["mode"] == b"linear"
    assert run.ops().count("Conv") == 3
    assert run.stdout.strip().endswith("FORWARD SRCNN.forward")
    io = np.load(run.path("io.npz"))
    (y,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5)


def test_c_module_rewriter_error_names_rewriter_and_attribute(tmp_path):
    code = """
import sys, torch
sys.path.insert(0, HERE)
from userpkg.models import Derived
try:
    torch.jit.trace(Derived(), (torch.ones(1),))
except RuntimeError as e:
    print("ERROR", e)
""".replace("HERE", repr(str(HERE)))
    run = run_script(tmp_path, code, backend="ncnn", TORCHRW_PLUGINS=MOD_PLUGIN).check()
    assert "userpkg.models.Base@ncnn (tests/plugins/mod_plugin.c:" in run.stdout
    assert "no attribute 'gain_that_is_not_there'" in run.stdout
