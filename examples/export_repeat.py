"""A plain export script: nothing in it knows about torchrw.

The model tiles a 1-D tensor with x.repeat(n); under TORCHRW_BACKEND=tensorrt
torchrw exports it as Unsqueeze -> Tile -> Squeeze, as mmdeploy's tensorrt
rewriter does.  TensorRT's ONNX parser takes both graphs (docs/backends.md).

usage: PYTHON export_repeat.py OUT.onnx   (an interpreter that has torch)
"""
import inspect
import sys

import onnx
import torch


class PositionTiler(torch.nn.Module):
    """Tiles a 1-D position table over a sequence, then scales it."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, pos):
        return pos.repeat(4) * self.scale


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "model.onnx"
    model = PositionTiler().eval()
    pos = torch.linspace(0, 1, 8)
    # torch 2.9 and later export through torch.export by default; this
    # example uses the TorchScript exporter on every torch.
    params = inspect.signature(torch.onnx.export).parameters
    kw = {"dynamo": False} if "dynamo" in params else {}
    torch.onnx.export(model, (pos,), out, opset_version=11,
                      input_names=["pos"], output_names=["tiled"], **kw)
    ops = [n.op_type for n in onnx.load(out).graph.node]
    print(f"{out} (torch {torch.__version__}): {' '.join(ops)}")


if __name__ == "__main__":
    main()
