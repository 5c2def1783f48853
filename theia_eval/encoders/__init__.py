"""Frozen-encoder registry: every encoder of the study behind one contract.

Family modules register their entries on import; heavy libraries (transformers, timm) are
imported inside builders only. byo_hf, byo_timm and plugins resolve names that are not entries:
hf:<hub id or directory>, timm:<model name>, py:<module>:<callable> and installed plugins.
"""
from theia_eval.encoders.base import EncoderConfig, EncoderOutput, FrozenEncoder
from theia_eval.encoders.registry import (
    create_encoder,
    get_encoder_config,
    list_encoders,
    register_encoder,
)
from theia_eval.encoders import baselines  # noqa: F401  (registers entries)
from theia_eval.encoders import mae  # noqa: F401  (registers entries)
from theia_eval.encoders import r3m  # noqa: F401  (registers entries)
from theia_eval.encoders import efficientnet  # noqa: F401  (registers entries)
from theia_eval.encoders import theia  # noqa: F401  (registers entries)
from theia_eval.encoders import theia_offline  # noqa: F401  (registers theia-offline, the bundled student)
from theia_eval.encoders import hf, hf_depth, hf_sam  # noqa: F401  (registers entries)
from theia_eval.encoders import byo_hf, byo_timm, plugins  # noqa: F401  (hf:, timm:, py: names and installed plugins)

__all__ = ["EncoderConfig", "EncoderOutput", "FrozenEncoder", "create_encoder", "get_encoder_config",
           "list_encoders", "register_encoder"]
