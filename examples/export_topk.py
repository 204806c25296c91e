"""A plain export script whose TopK takes a k computed from a size.

Three layers; the middle one keeps the top half of the batch, k =
batch // 2.  Exported with a dynamic batch, TopK's K is computed in the
graph, which TensorRT 8.5 refuses (its K must be an initializer; 8.6 and
10.x take it); torchrw's builtin:torch.topk@tensorrt:<8.6 makes it the
constant the example gives.

usage: PYTHON export_topk.py OUT.onnx [torchscript|torch.export]
"""
import sys

import torch


class TopHalf(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 16)
        self.fc3 = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.relu(self.fc2(h))
        k = h.shape[0] // 2
        top, _ = h.topk(k, dim=0)
        return self.fc3(top)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "model.onnx"
    exporter = sys.argv[2] if len(sys.argv) > 2 else "torchscript"
    torch.manual_seed(0)  # the same model in every run (torchrw explain runs it twice)
    model, x = TopHalf().eval(), torch.randn(6, 8)
    kw = dict(input_names=["x"], output_names=["y"])
    if exporter == "torch.export":
        batch = torch.export.Dim("batch", min=2, max=64)
        torch.onnx.export(model, (x,), out, opset_version=18, dynamo=True,
                          dynamic_shapes={"x": {0: batch}}, **kw)
    else:
        if int(torch.__version__.split(".")[0]) >= 2:
            kw["dynamo"] = False
        torch.onnx.export(model, (x,), out, opset_version=17, dynamic_axes={"x": {0: "batch"}},
                          **kw)


if __name__ == "__main__":
    main()
