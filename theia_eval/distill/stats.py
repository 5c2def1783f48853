"""Per-channel target statistics: they live in encoders/feature_stats.py (students load them with their
weights); distillation computes and saves them through these names."""
from theia_eval.encoders.feature_stats import (REFERENCE_PREFIX, STATS_SUFFIX, RunningStats, Standardizer,
                                               check_finite, find_reference_stats, load_stats,
                                               read_reference_stats, reference_name, reference_paths,
                                               save_feature_stats, save_stats, stats_path)

__all__ = ["REFERENCE_PREFIX", "STATS_SUFFIX", "RunningStats", "Standardizer", "check_finite",
           "find_reference_stats", "load_stats", "read_reference_stats", "reference_name", "reference_paths",
           "save_feature_stats", "save_stats", "stats_path"]
