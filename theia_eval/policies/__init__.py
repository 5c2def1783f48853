"""Policy learning on frozen embeddings: heads, history fusion, the embedding cache, behaviour cloning.

- heads:   registry of policy heads (`mlp`, `conv`, `attn`) built from `PolicyShapes`;
- history: FLARE / stack fusion, offline windows by index, the online `HistoryBuffer`;
- cache:   float16 memory-mapped embedding cache keyed by encoder + dataset content;
- bc:      `WindowDataset`, `BCConfig`, `train_bc` with atomic checkpoints and exact resume;
- stats:   Wilson interval and mean +- s.e.
See docs/policies.md.
"""
from theia_eval.policies.bc import BCConfig, BCPolicy, BCResult, WindowDataset, load_policy, train_bc
from theia_eval.policies.cache import (
    ArrayDemoSource,
    DemoSource,
    EmbeddingCache,
    HDF5DemoSource,
    get_or_build_cache,
    match_cache_precision,
)
from theia_eval.policies.heads import PolicyShapes, create_head, head_input_kind, list_heads, register_head
from theia_eval.policies.history import HistoryBuffer, fuse, window_indices
from theia_eval.policies.stats import mean_sem, wilson_interval

__all__ = ["ArrayDemoSource", "BCConfig", "BCPolicy", "BCResult", "DemoSource", "EmbeddingCache", "HDF5DemoSource",
           "HistoryBuffer", "PolicyShapes", "WindowDataset", "create_head", "fuse", "get_or_build_cache",
           "head_input_kind", "list_heads", "load_policy", "match_cache_precision", "mean_sem", "register_head", "train_bc",
           "wilson_interval", "window_indices"]
