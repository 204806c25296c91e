import torch

from .ops import decode as decode_boxes  # an alias under another name


class Head(torch.nn.Module):
    def forward(self, x):
        return decode_boxes(x) + 1
