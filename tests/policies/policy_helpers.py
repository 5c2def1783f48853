"""Constants shared by the policy tests (a plain module: `conftest` names clash across test folders)."""

# Narrow widths keep CPU tests fast; the architecture (stages, norms, queries) is the default one.
SMALL = {"mlp": {"hidden": (128, 128, 128)},
         "conv": {"channels": 64, "hidden": (128, 128, 128)},
         "attn": {"dim": 32, "heads": 4, "hidden": (128, 128, 128)}}
