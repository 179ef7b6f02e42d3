"""ResNets with a small-image stem, built from torchvision's residual blocks.

For 28–32 px inputs the ImageNet stem (7×7 stride-2 conv + max-pool) throws
away most of the image, so, as in SimCLR's CIFAR setup, the stem is a 3×3
stride-1 conv and the max-pool is dropped. ``resnet18`` and ``resnet50`` have
torchvision's widths and depths; ``resnet_narrow`` (one block per stage,
widths 16–128, ~0.5 M parameters) is small enough for the CPU presets;
``resnet_narrow_x2``, ``_x4`` and ``_x8`` are the same depth at 2, 4 and 8
times its widths (about 4, 16 and 64 times its parameters), the ladder of the
architecture-size study (the SSLMem paper's Table 15).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from .encoder import Encoder


class SmallImageResNet(Encoder):
    """ResNet for small images.

    Parameters
    ----------
    block
        ``torchvision.models.resnet.BasicBlock`` or ``Bottleneck``.
    layers
        Number of blocks per stage.
    widths
        Base width of each stage (the output has ``width * block.expansion`` channels).
    in_chans, img_size, mean, std
        See :class:`~memlib.models.encoder.Encoder`.

    Taps are ``stem`` and every residual block (``layer1.0``, ``layer1.1``, …),
    whose outputs include the residual addition.
    """

    def __init__(self, block, layers, widths, in_chans=3, img_size=32, mean=None, std=None):
        super().__init__(in_chans, img_size, mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        self.inplanes = widths[0]
        stages = []
        for i, (n, w) in enumerate(zip(layers, widths)):
            stages.append(self._make_layer(block, w, n, stride=1 if i == 0 else 2))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pooled_dim = widths[-1] * block.expansion
        self.tap_names = ("stem",) + tuple(f"layer{i + 1}.{j}" for i, n in enumerate(layers) for j in range(n))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride):
        # As torchvision.models.resnet.ResNet._make_layer.
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        mods = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward_features(self, x):
        self.check_input(x)
        x = self.stem(self.normalize(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def pool(self, feats):
        return feats.mean(dim=(2, 3))


def resnet18(**kw) -> SmallImageResNet:
    return SmallImageResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], **kw)


def resnet50(**kw) -> SmallImageResNet:
    return SmallImageResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], **kw)


def resnet_narrow(**kw) -> SmallImageResNet:
    return SmallImageResNet(BasicBlock, [1, 1, 1, 1], [16, 32, 64, 128], **kw)


def _narrow_times(factor: int):
    def build(**kw) -> SmallImageResNet:
        return SmallImageResNet(BasicBlock, [1, 1, 1, 1], [16 * factor, 32 * factor, 64 * factor, 128 * factor], **kw)

    build.__name__ = build.__qualname__ = f"resnet_narrow_x{factor}"
    build.__doc__ = f"``resnet_narrow`` at {factor} times its widths (one block per stage)."
    return build


resnet_narrow_x2 = _narrow_times(2)
resnet_narrow_x4 = _narrow_times(4)
resnet_narrow_x8 = _narrow_times(8)
