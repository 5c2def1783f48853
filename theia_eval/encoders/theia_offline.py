"""`theia-offline`: a nano Theia student distilled on this machine with the offline recipe, shipped in the package.

Teachers: efficientnet-lite0 (real ImageNet weights) + sim-depth + sim-segmentation (exact MuJoCo depth and
segmentation), on rendered Meta-World frames; the exact command, data, steps, wall time and per-teacher fit
are in theia_eval/assets/theia-offline/CARD.md. Stored in the official Theia layout in float16 (the loader
upcasts to float32); loaded through the same reader as official checkpoints.
"""
from __future__ import annotations

from pathlib import Path

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.registry import register_encoder
from theia_eval.encoders.theia import DEFAULT_REDUCE, check_reduce, from_checkpoint, seeded_student, student_config, wrap
from theia_eval.encoders.theia_format import STUDENT_SIZES, WEIGHTS_FILE
from theia_eval.encoders.weights import parse_weights
from theia_eval.errors import WeightsNotFoundError

ASSET = Path(__file__).resolve().parent.parent / "assets" / "theia-offline"

CONFIG = student_config(
    "theia-offline", STUDENT_SIZES["nano"], source="package asset theia_eval/assets/theia-offline",
    offline=(ASSET / WEIGHTS_FILE).is_file(),
    notes="Nano student (width 128, 6 layers) distilled offline from efficientnet-lite0 + sim-depth + "
          "sim-segmentation on rendered Meta-World frames; see assets/theia-offline/CARD.md. weights=None uses "
          "the shipped asset; 'random[:SEED]' gives the same architecture untrained.",
    extra={"weights_file": str(ASSET / WEIGHTS_FILE)})  # its hash identifies the shipped weights in sweep cells


@register_encoder(CONFIG)
def build_theia_offline(config: EncoderConfig, weights=None, device="cpu", dtype="float32",
                        feature_reduce=DEFAULT_REDUCE, **kwargs) -> FrozenEncoder:
    check_reduce(feature_reduce)
    if parse_weights(weights).random:
        seed = parse_weights(weights).seed
        return wrap(config, seeded_student("nano", seed), STUDENT_SIZES["nano"], feature_reduce, f"random:{seed}",
                    device, dtype, kwargs)
    path = Path(weights).expanduser() if weights else ASSET
    if not (path / WEIGHTS_FILE).is_file() and not (path.is_file() and path.suffix == ".safetensors"):
        raise WeightsNotFoundError(
            f"theia-offline weights not found at {path}: the package asset is missing (a source checkout without "
            "the asset, or a trimmed install). Re-create it with the command in docs/distill.md ('Bundled "
            "student'), or pass weights=PATH to an export directory.")
    return from_checkpoint(config, path, feature_reduce, None, str(path), device, dtype, kwargs)
