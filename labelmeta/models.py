"""Models: MLP and 1-D CNN for MNIST-1D / digits, CIFAR ResNet-18 and a small WideResNet.

Every factory takes ``(input_shape, num_classes, **options)``, where ``input_shape`` is the shape of
one sample (without the batch dimension).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .registry import Registry

MODELS: Registry[nn.Module] = Registry("model")


@MODELS.register("mlp")
class MLP(nn.Module):
    """Fully connected ReLU network over flattened inputs.

    Args:
        hidden: widths of the hidden layers (on the command line: ``100,100``); default ``(100, 100)``.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, hidden: Sequence[int] = (100, 100)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@MODELS.register("cnn1d")
class CNN1d(nn.Module):
    """The MNIST-1D reference CNN: three strided 1-D convolutions and a linear head.

    Args:
        channels: channels of each convolution; default 25 (as in the MNIST-1D paper).
        batch_norm: add BatchNorm after each convolution; default False.

    Accepts ``[B, L]`` or ``[B, 1, L]`` inputs.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, channels: int = 25,
                 batch_norm: bool = False) -> None:
        super().__init__()
        length = input_shape[-1]
        layers: list[nn.Module] = []
        in_ch = 1
        for kernel in (5, 3, 3):
            layers.append(nn.Conv1d(in_ch, channels, kernel, stride=2, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm1d(channels))
            layers.append(nn.ReLU())
            length = (length + 2 - kernel) // 2 + 1
            in_ch = channels
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(channels * length, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.head(self.features(x))


@MODELS.register("resnet18")
def cifar_resnet18(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """torchvision ResNet-18 adapted to 32×32 inputs: 3×3 stride-1 stem, no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class _WideBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(in_ch), nn.BatchNorm2d(out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = None if in_ch == out_ch and stride == 1 else nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(torch.relu(self.bn2(self.conv1(out))))
        return out + shortcut


@MODELS.register("wrn")
class WideResNet(nn.Module):
    """Pre-activation WideResNet (Zagoruyko & Komodakis) for 32×32 images.

    Args:
        depth: ``6n + 4``; default 16.
        width: widening factor; default 4 (WRN-16-4, 2.7 M parameters).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, depth: int = 16, width: int = 4) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False)]
        for stage in range(3):
            for i in range(n):
                in_ch = widths[stage] if i == 0 else widths[stage + 1]
                layers.append(_WideBlock(in_ch, widths[stage + 1], (1 if stage == 0 else 2) if i == 0 else 1))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[3], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def make_model(name: str, input_shape: Sequence[int], num_classes: int, **options) -> nn.Module:
    """Build the registered model ``name`` (see ``MODELS.names()``) with its declared ``options``."""
    return MODELS.build(name, tuple(input_shape), num_classes, options=options)


@MODELS.register("cnn1d-bn")
def cnn1d_bn(input_shape: Sequence[int], num_classes: int, *, channels: int = 25) -> CNN1d:
    """:class:`CNN1d` with BatchNorm after each convolution.

    Args:
        channels: channels of each convolution; default 25.
    """
    return CNN1d(input_shape, num_classes, channels=channels, batch_norm=True)
