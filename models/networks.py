"""The networks of the two papers, built from a plain description ``{"name", "kwargs"}``.

- :class:`PMDCNN` (Shvetsov-Shilovski & Lein, PRA 2023, Sec. II A): 5 x [3x3 conv (32 filters, same
  padding), batch norm, ReLU, 2x2 average pool], dropout 0.2, one fully connected layer; ``outputs`` regression
  targets (R; R and I) or class scores (the 7-class R classifier).
- :class:`CNN1D` (Shvetsov-Shilovski & Lein, PRA 2023, Sec. III): the same with 3x1 filters and 2x1 pooling on dP/dkx.
- :class:`MLP1D` (Shvetsov-Shilovski & Lein, PRA 2023, Sec. III): 4 fully connected layers (3 hidden of 512 with batch
  norm and ReLU, then the output layer) on dP/dkx.
- :class:`ResNetTanh` (Stielow et al., MLST 2020, Sec. 3): 7x7/2 conv (64) -> 2x2 max pool -> residual stacks
  (3, 4, 6, 3 basic blocks of 64, 128, 256, 512 filters; the first conv of each stack has
  stride 2 with a 1x1 projection shortcut) -> global average pool -> fully connected -> 5
  (radius + quaternion); every activation is tanh.

Every network starts with :class:`Standardize` (a fixed affine map of the input whose two
numbers are set from the training images and saved with the weights), takes images of
shape ``(batch, *input_shape)`` as stored in a processed store, and exposes
``feature_blocks()`` (the ordered convolutional / hidden stages) so that transfer learning
can freeze the first ``k`` of them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` with two fixed numbers (buffers, saved with the weights)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def set(self, mean: float, std: float) -> None:
        self.mean.fill_(float(mean))
        self.std.fill_(float(std) if std > 0 else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _Net(nn.Module):
    """Common parts: input standardisation, freezing of the first k feature blocks."""

    def __init__(self):
        super().__init__()
        self.norm = Standardize()
        self.frozen = 0

    def feature_blocks(self) -> list[nn.Module]:  # pragma: no cover - overridden
        raise NotImplementedError

    def freeze(self, k: int) -> None:
        """Freeze the first ``k`` feature blocks: no gradients, batch norm kept in eval mode."""
        blocks = self.feature_blocks()
        if not 0 <= k <= len(blocks):
            raise ValueError(f"freeze = {k}: this network has {len(blocks)} feature blocks (0..{len(blocks)})")
        self.frozen = k
        for i, block in enumerate(blocks):
            for p in block.parameters():
                p.requires_grad_(i >= k)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for block in self.feature_blocks()[: self.frozen]:
            block.eval()
        return self


def _pool_out(n: int, times: int) -> int:
    for _ in range(times):
        n //= 2
    return n


class PMDCNN(_Net):
    """The CNN for 2D PMDs of Shvetsov-Shilovski & Lein, PRA 2023 (rows = ky, columns = kx; the paper's
    256 x 128 image)."""

    def __init__(self, input_shape=(128, 256), filters: int = 32, blocks: int = 5, dropout: float = 0.2,
                 outputs: int = 1, conv_bias: bool = True):
        super().__init__()
        h, w = (int(s) for s in input_shape)
        if min(h, w) < 2**blocks:
            raise ValueError(f"input {h} x {w} is too small for {blocks} 2x2 poolings (need >= {2**blocks})")
        layers, c_in = [], 1
        for _ in range(blocks):
            layers.append(nn.Sequential(
                nn.Conv2d(c_in, filters, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(filters),
                nn.ReLU(inplace=True), nn.AvgPool2d(2),
            ))
            c_in = filters
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(filters * _pool_out(h, blocks) * _pool_out(w, blocks), outputs)

    def feature_blocks(self):
        return list(self.features)

    def forward(self, x):
        x = self.features(self.norm(x).unsqueeze(1))
        return self.head(self.dropout(torch.flatten(x, 1)))


class CNN1D(_Net):
    """The 1D CNN on dP/dkx of Shvetsov-Shilovski & Lein, PRA 2023: 3x1 filters, 2x1 average pooling."""

    def __init__(self, input_shape=(256,), filters: int = 32, blocks: int = 5, dropout: float = 0.2,
                 outputs: int = 1, conv_bias: bool = True):
        super().__init__()
        (n,) = (int(s) for s in input_shape)
        if n < 2**blocks:
            raise ValueError(f"input length {n} is too short for {blocks} 2x1 poolings (need >= {2**blocks})")
        layers, c_in = [], 1
        for _ in range(blocks):
            layers.append(nn.Sequential(
                nn.Conv1d(c_in, filters, 3, padding=1, bias=conv_bias), nn.BatchNorm1d(filters),
                nn.ReLU(inplace=True), nn.AvgPool1d(2),
            ))
            c_in = filters
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(filters * _pool_out(n, blocks), outputs)

    def feature_blocks(self):
        return list(self.features)

    def forward(self, x):
        x = self.features(self.norm(x).unsqueeze(1))
        return self.head(self.dropout(torch.flatten(x, 1)))


class MLP1D(_Net):
    """The fully connected network on dP/dkx of Shvetsov-Shilovski & Lein, PRA 2023: ``layers`` linear
    layers, the hidden ones ``hidden`` wide with batch norm and ReLU (the paper: 4 layers, 512)."""

    def __init__(self, input_shape=(256,), hidden: int = 512, layers: int = 4, outputs: int = 1):
        super().__init__()
        (n,) = (int(s) for s in input_shape)
        if layers < 2:
            raise ValueError(f"layers = {layers}: need at least one hidden layer and the output layer")
        stages, d = [], n
        for _ in range(layers - 1):
            stages.append(nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)))
            d = hidden
        self.hidden = nn.Sequential(*stages)
        self.head = nn.Linear(d, outputs)

    def feature_blocks(self):
        return list(self.hidden)

    def forward(self, x):
        return self.head(self.hidden(self.norm(x)))


class BasicBlockTanh(nn.Module):
    """Two 3x3 conv + batch norm with a (projection) shortcut; tanh activations."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.tanh(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.tanh(y + self.shortcut(x))


class ResNetTanh(_Net):
    """The ResNet-34 of Stielow et al., MLST 2020, with tanh activations and a 5-vector output (radius + quaternion).

    ``stacks`` are the blocks per stack (ResNet-34: 3, 4, 6, 3; the paper's text says 3, 4, 6, 4)
    and ``widths`` their filters; every stack starts with a stride-2 block (as the paper says).
    """

    def __init__(self, input_shape=(128, 128), stacks=(3, 4, 6, 3), widths=(64, 128, 256, 512),
                 stem: int = 64, outputs: int = 5):
        super().__init__()
        h, w = (int(s) for s in input_shape)
        stacks, widths = [int(s) for s in stacks], [int(c) for c in widths]
        if len(stacks) != len(widths) or not stacks or min(stacks) < 1:
            raise ValueError(f"stacks {stacks} and widths {widths} must be non-empty lists of equal length, blocks >= 1")
        if min(h, w) < 2 ** (2 + len(stacks)):
            raise ValueError(f"input {h} x {w} is too small for {len(stacks)} stride-2 stacks")
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem),
                                  nn.Tanh(), nn.MaxPool2d(2))
        blocks, c_in = [], stem
        for n, c in zip(stacks, widths):
            for i in range(n):
                blocks.append(BasicBlockTanh(c_in, c, 2 if i == 0 else 1))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, outputs)

    def feature_blocks(self):
        return [self.stem, *self.blocks]

    def forward(self, x):
        x = self.blocks(self.stem(self.norm(x).unsqueeze(1)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


ARCHITECTURES: dict[str, type[_Net]] = {
    "pmd-cnn": PMDCNN,
    "cnn1d": CNN1D,
    "mlp1d": MLP1D,
    "resnet-tanh": ResNetTanh,
}


def build(name: str, **kwargs: Any) -> _Net:
    """The network ``name`` (a key of :data:`ARCHITECTURES`) with its keyword options."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"architecture {name!r}: {exc}") from None


def from_description(arch: dict[str, Any]) -> _Net:
    """Build from ``{"name": ..., "kwargs": {...}}`` (what a model artefact records)."""
    return build(arch["name"], **arch.get("kwargs", {}))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def paper_pmd_count() -> dict[str, int]:
    """The PMD CNN's parameter budget item by item (the paper, Shvetsov-Shilovski & Lein, PRA 2023,
    lists 37,857; see docs/training.md)."""
    conv_w = 3 * 3 * 1 * 32 + 4 * 3 * 3 * 32 * 32
    return {
        "conv_weights": conv_w,
        "conv_biases": 5 * 32,
        "batchnorm": 5 * 2 * 32,
        "fc_1024": 1024 + 1,
        "paper_fc_384": 384 + 1,
        "ours": conv_w + 5 * 32 + 5 * 64 + 1025,
        "ours_no_conv_bias": conv_w + 5 * 64 + 1025,
        "paper": 37857,
        "paper_reconstructed": conv_w + 5 * 64 + 385,
    }


__all__ = [
    "ARCHITECTURES", "CNN1D", "MLP1D", "PMDCNN", "ResNetTanh", "Standardize",
    "build", "count_parameters", "from_description", "paper_pmd_count",
]
