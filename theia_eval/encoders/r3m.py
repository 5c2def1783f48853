"""R3M (facebookresearch/r3m): torchvision ResNet-18/34/50 with the classifier removed.

Checkpoint format: torch.load(model.pt)['r3m'] is the state dict of the whole R3M module; the
visual encoder's keys carry the prefix 'module.convnet.' (language-reward keys are ignored).
R3M's forward takes 0-255 images, divides by 255 and applies ImageNet mean/std; CortexBench
(eai-vc r3m_transforms) resizes the shorter side to 256 and center-crops 224 first.
Tokens = the layer4 map before pooling (7x7 at 224); summary = its global average (512/512/2048).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from theia_eval.encoders.registry import register_encoder
from theia_eval.encoders.weights import (load_matching, load_torch_file, parse_weights, require_file,
                                         seeded_init)
from theia_eval.errors import CheckpointMismatchError

PREFIX = "module.convnet."
R3M_URL = "https://drive.google.com/uc?id="
# depth -> (blocks per stage, bottleneck blocks, feature width)
RESNETS = {18: ((2, 2, 2, 2), False, 512), 34: ((3, 4, 6, 3), False, 512), 50: ((3, 4, 6, 3), True, 2048)}
# (params M without fc, GFLOPs at 224 counted with torch.utils.flop_counter, multiply-add = 2)
COSTS = {18: (11.18, 3.63), 34: (21.28, 7.33), 50: (23.51, 8.17)}
DRIVE_IDS = {18: "1A1ic-p4KtYlKXdXHcV2QV0cUzI4kn0u-", 34: "15bXD3QRhspIRacOKyWPw5y2HpoWUCEnE",
             50: "1Xu0ssuG0N1zjZS54wmWzJ7-nb0-7XzbA"}
R3M_PREPROCESS = Preprocess(resize=256, crop=224, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD)
NOTES = ("R3M (Ego4D, time-contrastive + language). Preprocess: shorter side to 256 (bilinear, as torchvision "
         "Resize), center crop 224, /255, ImageNet mean/std (eai-vc r3m_transforms + R3M.forward). R3M.forward "
         "alone skips the resize/crop unless told the input is not 224x224; we always apply it, as CortexBench. "
         "params_m excludes the removed ImageNet fc (anchors.md's 25.6 M for ResNet-50 counts it).")


def r3m_entry(depth: int) -> EncoderConfig:
    """Registry config of R3M with a ResNet of this depth."""
    params, gflops = COSTS[depth]
    width = RESNETS[depth][2]
    return EncoderConfig(
        name=f"r3m-{depth}", family="r3m", architecture=f"torchvision resnet{depth}, fc removed", params_m=params,
        gflops=gflops, input_size=224, grid=(7, 7), token_dim=width, summary_dim=width, summary="mean",
        preprocess=R3M_PREPROCESS, source=f"R3M model.pt for ResNet-{depth} ({R3M_URL}{DRIVE_IDS[depth]})",
        license="MIT", offline=False, min_size=32, notes=NOTES, extra={"depth": depth})


def make_resnet(depth: int) -> nn.Module:
    """torchvision ResNet of this depth with the classifier removed (no fc keys in its state dict)."""
    import torchvision

    net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    net.fc = nn.Identity()
    return net


def checkpoint_depth(state: dict[str, torch.Tensor]) -> int | None:
    """The ResNet depth a convnet state dict was saved from (None when it is no standard ResNet)."""
    blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in state
    return next((d for d, (b, bn, _) in RESNETS.items() if (b, bn) == (blocks, bottleneck)), None)


def read_convnet(path: Path, config: EncoderConfig, trust: bool = False) -> dict[str, torch.Tensor]:
    """The 'module.convnet.' part of an R3M checkpoint, prefix stripped."""
    ckpt = load_torch_file(config, path, trust)
    if not isinstance(ckpt, dict) or "r3m" not in ckpt:
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointMismatchError(f"{config.name}: {path} is not an R3M checkpoint: expected a dict with key "
                                      f"'r3m' (R3M's model.pt), found {found}.")
    convnet = {k[len(PREFIX):]: v for k, v in ckpt["r3m"].items() if k.startswith(PREFIX)}
    if not convnet:
        raise CheckpointMismatchError(f"{config.name}: {path}['r3m'] has no keys starting with '{PREFIX}'.")
    return {k: v for k, v in convnet.items() if not k.startswith("fc.")}


def check_depth(state: dict[str, torch.Tensor], config: EncoderConfig, path: Path) -> None:
    """Name the right entry when the checkpoint holds another ResNet depth."""
    depth, want = checkpoint_depth(state), config.extra["depth"]
    if depth is not None and depth != want:
        raise CheckpointMismatchError(
            f"{config.name}: {path} holds a ResNet-{depth} R3M encoder but {config.name} is ResNet-{want}. "
            f"Use create_encoder('r3m-{depth}', weights=...).")


class R3MEncoder(FrozenEncoder):
    """ResNet trunk: tokens = layer4 map (B, 7, 7, C) at 224; summary = its spatial mean."""

    def __init__(self, config: EncoderConfig, net: nn.Module, **kwargs):
        super().__init__(config, **kwargs)
        self.net = net.to(memory_format=torch.channels_last)  # faster oneDNN CPU kernels, same values to 1e-5

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = x.contiguous(memory_format=torch.channels_last)
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return x.permute(0, 2, 3, 1), x.mean(dim=(2, 3))


def build_r3m(config: EncoderConfig, weights: str | None = None, device="cpu", dtype="float32",
              trust_checkpoint: bool = False, **kwargs) -> FrozenEncoder:
    """weights: None (error: not distributed offline), 'random[:SEED]', or R3M's model.pt."""
    depth = config.extra["depth"]
    if parse_weights(weights).random:
        with seeded_init(parse_weights(weights).seed):
            net = make_resnet(depth)
        weights_id = f"random:{parse_weights(weights).seed}"
    else:
        path = require_file(config, weights)
        state = read_convnet(path, config, trust_checkpoint)
        check_depth(state, config, path)
        net = make_resnet(depth)
        load_matching(net, state, f"{config.name} from {path}")
        weights_id = str(weights)
    return R3MEncoder(config, net, device=device, dtype=dtype, weights_id=weights_id, **kwargs).finalize()


R3M_ENTRIES = [r3m_entry(d) for d in RESNETS]
for _entry in R3M_ENTRIES:
    register_encoder(_entry)(build_r3m)
