"""A plain export script of a small ViT-style encoder: patches from a
convolution, then a block of nn.MultiheadAttention (called as torchvision's
vit calls it, need_weights=False), LayerNorm and an MLP.

Exported as ncnn users export (the TorchScript exporter, opset 13), plain
torch cannot write the file at all: its attention goes through
scaled_dot_product_attention, which torch exports from opset 14 only.
Under `torchrw run --backend ncnn` the attention is written out with three
projections and the heads as a dim of their own, no tensor over 4 dims
(builtin:torch.nn.functional.multi_head_attention_forward@ncnn), and ncnn
runs the file.  `torchrw explain --backend ncnn` shows both (scripts/demo).

usage: PYTHON export_attention.py OUT.onnx [torchscript|torch.export]
"""
import sys

import torch


class Encoder(torch.nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.patches = torch.nn.Conv2d(3, dim, kernel_size=8, stride=8)
        self.norm1 = torch.nn.LayerNorm(dim)
        self.attn = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 2 * dim), torch.nn.GELU(),
                                       torch.nn.Linear(2 * dim, dim))
        self.head = torch.nn.Linear(dim, 10)

    def forward(self, image):
        x = self.patches(image).flatten(2).transpose(1, 2)  # (N, tokens, dim)
        h = self.norm1(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(dim=1))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "model.onnx"
    exporter = sys.argv[2] if len(sys.argv) > 2 else "torchscript"
    torch.manual_seed(0)  # the same model in every run (torchrw explain runs it twice)
    model, image = Encoder().eval(), torch.randn(1, 3, 32, 32)
    kw = dict(input_names=["image"], output_names=["logits"])
    if exporter == "torch.export":
        torch.onnx.export(model, (image,), out, opset_version=18, dynamo=True, **kw)
    else:
        if int(torch.__version__.split(".")[0]) >= 2:
            kw["dynamo"] = False
        torch.onnx.export(model, (image,), out, opset_version=13, **kw)


if __name__ == "__main__":
    main()
