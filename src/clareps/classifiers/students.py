"""Student classifiers: inputs in [0, 1], normalisation inside, a named feature layer.

Every student has ``normalize``, a ``features`` module that ends in a pooled, flattened
vector of size ``feature_dim`` (its module path is ``feature_path``: the distillation hook
reads it there) and a plain linear ``head``. ``width`` sets each family's base channels.
"""

from __future__ import annotations

import torch
from torch import nn

from clareps.errors import ClarepsError


class Normalize(nn.Module):
    def __init__(self, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _normalize(in_channels: int) -> Normalize:
    return Normalize((0.5,) * in_channels, (0.25,) * in_channels)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class PooledStudent(nn.Module):
    """What every student shares: ``normalize``, then ``features`` (the family's layers, global average
    pooling, flattening: ``feature_dim`` values), then a linear ``head``."""

    feature_path = "features"

    def _finish(self, in_channels: int, layers: list[nn.Module], dim: int, num_classes: int) -> None:
        self.normalize = _normalize(in_channels)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(dim, num_classes)
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))


class SmallCNN(PooledStudent):
    """A fast CNN for 32x32 inputs; ``features`` (pooled, width ``4*width``) feeds the head."""

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3):
        super().__init__()
        layers = [_conv_bn(in_channels, width), _conv_bn(width, width), nn.MaxPool2d(2),
                  _conv_bn(width, 2 * width), _conv_bn(2 * width, 2 * width), nn.MaxPool2d(2),
                  _conv_bn(2 * width, 4 * width), _conv_bn(4 * width, 4 * width)]
        self._finish(in_channels, layers, 4 * width, num_classes)


class FastCNN(PooledStudent):
    """A CNN that trains in seconds on a CPU at 32x32: a 2x2 stem, then three stages that convolve before
    they pool (conv, max-pool, BN, ReLU, conv, BN, ReLU), the shape of the CIFAR-10 speed-run networks.
    Stages of ``width``, 2x and 4x channels, the stem 2/3 of ``width``; ``features`` ends pooled (4 ``width``)."""

    def __init__(self, num_classes: int = 10, width: int = 24, in_channels: int = 3):
        super().__init__()
        stem = max(1, 2 * width // 3)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 2, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
        cin = stem
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout),
                       nn.ReLU(), *_conv_bn(cout, cout)]
            cin = cout
        self._finish(in_channels, layers, cin, num_classes)


class BasicBlock(nn.Module):
    """The ResNet-18 block: two 3x3 convs with a (projected) identity shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(PooledStudent):
    """ResNet-18 with the CIFAR stem (one 3x3 conv, no max-pool), for 32x32 inputs."""

    def __init__(self, num_classes: int = 10, width: int = 64, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU()]
        cin = width
        for stage, mult in enumerate((1, 2, 4, 8)):
            cout = width * mult
            layers += [BasicBlock(cin, cout, 1 if stage == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self._finish(in_channels, layers, cin, num_classes)


class WideBlock(nn.Module):
    """The pre-activation wide-ResNet block (BN-ReLU-conv twice)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(PooledStudent):
    """WRN-depth-k; ``width`` is the first stage's channels (16 k), so WRN-28-2 has width 32."""

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3, depth: int = 28):
        super().__init__()
        if (depth - 4) % 6:
            raise ClarepsError(f"wide-resnet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        stem = width // 2  # 16 channels for the standard WRN-28-2 (16 * k with k = 2 gives width 32)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)]
        cin = stem
        for stage, mult in enumerate((1, 2, 4)):
            cout = width * mult
            for i in range(n):
                layers.append(WideBlock(cin, cout, 2 if stage and i == 0 else 1))
                cin = cout
        layers += [nn.BatchNorm2d(cin), nn.ReLU()]
        self._finish(in_channels, layers, cin, num_classes)


def spatial_path(model: nn.Module) -> str:
    """The module path of a student's last feature map: the module just before the global pooling."""
    children = list(model.features.children())
    pools = [i for i, m in enumerate(children) if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools or pools[0] == 0:
        raise ClarepsError(f"{type(model).__name__} has no feature map before a global pooling")
    return f"features.{pools[0] - 1}"


STUDENTS = {"small-cnn": SmallCNN, "fast-cnn": FastCNN, "resnet18": ResNet18, "wrn-28-2": WideResNet}


def training_memory_format(model: nn.Module) -> torch.memory_format:
    """Channels-last (a CPU training step 1.2x to 1.4x faster), except for a model with a strided 1x1
    convolution on fewer than 8 channels (a ResNet at width < 8): oneDNN 3.12's AVX2 kernel for that
    convolution's weight gradient in channels-last corrupts memory (the process aborts)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) and m.in_channels < 8:
            return torch.contiguous_format
    return torch.channels_last


def make_student(name: str, num_classes: int, **kwargs) -> nn.Module:
    """The student ``name`` (see ``STUDENTS``); ``width=None`` keeps the family's default."""
    if name not in STUDENTS:
        raise ClarepsError(f"unknown student '{name}' (known: {', '.join(sorted(STUDENTS))})")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return STUDENTS[name](num_classes=num_classes, **kwargs)
