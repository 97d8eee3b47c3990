"""The CNN: depthwise-separable blocks (MobileNet style) sized for CPU inference:
about 33 MFLOPs per 48x48 image, 0.5 M parameters."""

from __future__ import annotations

import torch
from torch import nn


def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class HandwritingNet(nn.Module):
    def __init__(self, classes: int = 801) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1, bias=False),  # 48x48
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            separable(32, 64, 2),  # 24x24
            separable(64, 64, 1),
            separable(64, 128, 2),  # 12x12
            separable(128, 128, 1),
            separable(128, 256, 2),  # 6x6
            separable(256, 256, 1),
            separable(256, 256, 1),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)  # type: ignore[no-any-return]


def flops(model: nn.Module, size: int = 48) -> float:
    """Multiply-adds x 2 of one forward pass on a size x size image."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    for h in handles:
        h.remove()
    return 2.0 * total
