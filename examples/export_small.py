"""A plain export script for the README's Python rewriters: a model that
tiles a 1-D tensor (x.repeat), upsamples (nn.Upsample) and applies
F.leaky_relu.  Nothing in it knows about torchrw.

usage: PYTHON export_small.py [OUT.onnx]   (an interpreter that has torch)
"""
import inspect
import sys

import onnx
import torch


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, image, pos):
        return torch.nn.functional.leaky_relu(self.up(image), 0.1), pos.repeat(4)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "small.onnx"
    # The TorchScript exporter on every torch (torch.export is the default from 2.9).
    params = inspect.signature(torch.onnx.export).parameters
    kw = {"dynamo": False} if "dynamo" in params else {}
    torch.onnx.export(Small().eval(), (torch.rand(1, 3, 4, 4), torch.linspace(0, 1, 8)), out,
                      opset_version=11, input_names=["image", "pos"], **kw)
    ops = [n.op_type for n in onnx.load(out).graph.node]
    print(f"{out} (torch {torch.__version__}): {' '.join(ops)}")


if __name__ == "__main__":
    main()
