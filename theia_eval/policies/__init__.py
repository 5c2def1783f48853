"""Policy learning on frozen embeddings: heads, history fusion, the embedding cache, behaviour cloning.

- heads:   registry of policy heads (`mlp`, `conv`, `attn`) built from `PolicyShapes`;
- history: FLARE / stack fusion, offline windows by index, the online `HistoryBuffer`;
- cache:   float16 memory-mapped embedding cache keyed by encoder + dataset content;
- bc:      `WindowDataset`, `BCConfig`, `train_bc` with atomic checkpoints and exact resume;
- stats:   Wilson interval and mean +- s.e.
See docs/policies.md.
"""
import importlib

_EXPORTS = {
    "bc": ("BCConfig", "BCPolicy", "BCResult", "WindowDataset", "load_policy", "train_bc"),
    "cache": ("ArrayDemoSource", "DemoSource", "EmbeddingCache", "HDF5DemoSource", "get_or_build_cache",
              "match_cache_precision"),
    "heads": ("PolicyShapes", "create_head", "head_input_kind", "list_heads", "register_head"),
    "history": ("HistoryBuffer", "fuse", "window_indices"),
    "stats": ("mean_sem", "wilson_interval"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """Import torch and the submodules on first use (the CLI checks its settings before that)."""
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"theia_eval.policies.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'theia_eval.policies' has no attribute {name!r}")


__all__ = ["ArrayDemoSource", "BCConfig", "BCPolicy", "BCResult", "DemoSource", "EmbeddingCache", "HDF5DemoSource",
           "HistoryBuffer", "PolicyShapes", "WindowDataset", "create_head", "fuse", "get_or_build_cache",
           "head_input_kind", "list_heads", "load_policy", "match_cache_precision", "mean_sem", "register_head", "train_bc",
           "wilson_interval", "window_indices"]
