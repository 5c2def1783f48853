"""`theia-eval encoders`: print the registry, or encode images with one encoder and show token statistics."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from theia_eval.encoders.base import EncoderConfig
from theia_eval.encoders.registry import create_encoder, get_encoder_config, list_encoders
from theia_eval.encoders.weights import weights_available
from theia_eval.verbs import verb_config, verb_parser
from theia_eval.errors import InputError, TheiaEvalError

COLUMNS = ("name", "family", "params_M", "GFLOPs", "grid", "channels", "input", "weights source", "offline")


def registry_rows(pattern: str = "*") -> tuple[list[dict], list[TheiaEvalError]]:
    """One dict per listed encoder with the facts shown by `theia-eval encoders`, and the errors of those whose
    facts could not be worked out (an installed plugin that fails): they get a row that says so."""
    rows, problems = [], []
    for name in list_encoders(pattern):
        try:
            rows.append(config_row(get_encoder_config(name)))
        except TheiaEvalError as exc:
            problems.append(exc)
            rows.append({**dict.fromkeys((*COLUMNS, "summary_dim", "license", "summary"), "?"), "name": name,
                         "weights source": "error: see below", "error": str(exc)})
    return rows, problems


def config_row(c: EncoderConfig) -> dict:
    return {"name": c.name, "family": c.family, "params_M": round(c.params_m, 2), "GFLOPs": round(c.gflops, 2),
            "grid": f"{c.grid[0]}x{c.grid[1]}", "channels": c.token_dim, "summary_dim": c.summary_dim,
            "input": c.input_size, "weights source": c.source, "offline": "yes" if weights_available(c) else "no",
            "license": c.license, "summary": c.summary}


def format_table(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    """Plain-text table with aligned columns."""
    cells = [[_clip(str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _clip(text: str, width: int = 60) -> str:
    """Shorten long cells (full text stays in --json)."""
    return text if len(text) <= width else text[: width - 3] + "..."


def load_images(paths: list[str]) -> tuple[np.ndarray, list[str]]:
    """Read image files (or scikit-image's bundled 'chelsea' and 'coffee' when none) as one uint8 batch.

    16-bit images are scaled to 8 bits (not wrapped); a file that is not an image is an InputError."""
    from skimage import data as skdata
    from skimage.transform import resize

    from theia_eval.io import read_image

    if not paths:
        images, names = [skdata.chelsea(), skdata.coffee()], ["skimage:chelsea", "skimage:coffee"]
    else:
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise InputError(f"image file not found: {missing[0]}. Pass an existing jpg/png path with --image.")
        images, names = [read_image(p) for p in paths], list(paths)
    images = [np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im[..., :3] for im in images]
    size = images[0].shape[:2]
    same = [im if im.shape[:2] == size else (resize(im, size, preserve_range=True)).astype(np.uint8) for im in images]
    return np.stack(same).astype(np.uint8), names


def token_norm_stats(tokens) -> dict:
    """Per-image statistics of the L2 norms of the spatial tokens."""
    norms = tokens.float().flatten(1, 2).norm(dim=-1)
    return {"mean": norms.mean(1).tolist(), "std": norms.std(1).tolist(), "min": norms.amin(1).tolist(),
            "max": norms.amax(1).tolist()}


def encode_report(name: str, weights, images: np.ndarray, names: list[str], device: str, dtype: str) -> dict:
    enc = create_encoder(name, weights=weights, device=device, dtype=dtype)
    out = enc(images)
    return {"encoder": name, "weights": enc.weights_id, "facts": config_row(enc.config), "images": names,
            "input_shape": list(images.shape),
            "tokens_shape": list(out.tokens.shape), "summary_shape": list(out.summary.shape),
            "token_norms": token_norm_stats(out.tokens)}


def _parser() -> argparse.ArgumentParser:
    p = verb_parser("encoders", "List the frozen-encoder registry, or encode images with one entry.",
                    "Examples: `theia-eval encoders`, `theia-eval encoders 'dinov2*' --json`, "
                    "`theia-eval encoders efficientnet-lite0 --image cat.jpg`. Besides registry names: "
                    "hf:<hub id or save_pretrained dir>, timm:<model name>, py:<module>:<callable> and installed "
                    "plugins.")
    p.add_argument("name", nargs="?", help="encoder to run (a pattern like 'clip*' lists matches instead)")
    p.add_argument("--image", action="append", default=[], help="image file to encode (repeatable); default: "
                   "scikit-image's chelsea and coffee photos")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def run(argv: list[str]) -> int:
    args, cfg = verb_config(_parser(), argv, "encoders")
    name = args.name
    if name is None or any(ch in name for ch in "*?["):
        rows, problems = registry_rows(name or cfg.pattern)
        print(json.dumps(rows, indent=2) if args.json else format_table(rows))
        if problems:  # the table is printed first, so one broken plugin does not hide the others
            raise InputError(f"{len(problems)} listed encoder(s) could not be described: "
                             + " | ".join(str(p) for p in problems)
                             + " Fix or uninstall the package that adds it (entry-point group theia_eval.encoders).")
        return 0
    images, names = load_images(args.image)
    report = encode_report(name, cfg.weights, images, names, cfg.device, cfg.dtype)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def format_report(r: dict) -> str:
    f = r["facts"]
    lines = [f"encoder {r['encoder']} (weights: {r['weights']})",
             f"facts  {f['family']}, {f['params_M']} M params, {f['GFLOPs']} GFLOPs, grid {f['grid']} x {f['channels']}, "
             f"summary {f['summary_dim']} ({f['summary']}), input {f['input']} px",
             f"input  {tuple(r['input_shape'])} uint8",
             f"tokens {tuple(r['tokens_shape'])}", f"summary {tuple(r['summary_shape'])}", "token L2 norms:"]
    s = r["token_norms"]
    for i, img in enumerate(r["images"]):
        lines.append(f"  {img}: mean {s['mean'][i]:.3f}  std {s['std'][i]:.3f}  min {s['min'][i]:.3f}  "
                     f"max {s['max'][i]:.3f}")
    return "\n".join(lines)
