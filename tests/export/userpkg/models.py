import torch
import torch.nn as nn

from .ops import MyClamp


class Base(nn.Module):
    def scale(self, x):
        return x * 3

    def forward(self, x):
        return self.scale(x)


class Derived(Base):
    pass


class Scaler(nn.Module):
    def gain(self):
        return 5.0

    def forward(self, x):
        return x * self.gain()


class Clamped(nn.Module):
    def forward(self, x):
        return MyClamp.apply(x, -0.5, 0.5)


class SRCNN(nn.Module):
    """Super-resolution CNN (Dong et al.), small: upsample then three convs."""

    def __init__(self, channels=(3, 8, 4, 3), kernel_sizes=(9, 1, 5), upscale_factor=2):
        super().__init__()
        self.upscale_factor = upscale_factor
        self.img_upsampler = nn.Upsample(scale_factor=upscale_factor, mode="nearest")
        self.conv1 = nn.Conv2d(channels[0], channels[1], kernel_sizes[0], padding=kernel_sizes[0] // 2)
        self.conv2 = nn.Conv2d(channels[1], channels[2], kernel_sizes[1], padding=kernel_sizes[1] // 2)
        self.conv3 = nn.Conv2d(channels[2], channels[3], kernel_sizes[2], padding=kernel_sizes[2] // 2)
        self.relu = nn.ReLU()

    def init_weights(self):
        for m in (self.conv1, self.conv2, self.conv3):
            nn.init.normal_(m.weight, std=0.1)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.img_upsampler(x)
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        return self.conv3(out)


class TinyNet(nn.Module):
    """Holds an SRCNN and a subclass of it, to see the wrapper per instance."""

    def __init__(self):
        super().__init__()
        self.sr = SRCNN()
        self.sr.init_weights()

    def forward(self, x):
        return self.sr(x)
