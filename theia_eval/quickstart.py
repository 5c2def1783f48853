"""`theia-eval quickstart`: encode real images with every offline encoder; registry, token stats, entropy.

Outputs (in out_dir): encoders.json (every number with its config), encoders.md (table), norm_hist.png.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from theia_eval.analysis.entropy import bin_sensitivity, norm_entropy, token_norms
from theia_eval.config import compose, split_args
from theia_eval.encoders import create_encoder, get_encoder_config, list_encoders
from theia_eval.encoders.commands import format_table, registry_rows
from theia_eval.encoders.weights import weights_available
from theia_eval.errors import InputError, unknown_name
from theia_eval.io import atomic_write_text


def skimage_images(cfg: DictConfig) -> np.ndarray:
    """scikit-image's bundled colour photos, center-cropped square and resized to 224."""
    import torch

    from skimage import data
    from theia_eval.encoders.images import Preprocess

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    pre = Preprocess(resize=224, crop=224, mean=(0, 0, 0), std=(1 / 255,) * 3, scale=1.0)
    batch = [pre(torch.from_numpy(p).permute(2, 0, 1)[None]).round().clamp(0, 255).byte() for p in photos]
    return torch.cat(batch).permute(0, 2, 3, 1).numpy()


def metaworld_images(cfg: DictConfig) -> np.ndarray:
    """Frames rendered from Meta-World expert rollouts (fast preset, 224 px)."""
    from theia_eval.envs.frames import render_expert_frames

    return np.concatenate([render_expert_frames(t, cfg.frames_per_task, seed=cfg.seed) for t in cfg.tasks])


IMAGE_SOURCES: dict[str, Callable[[DictConfig], np.ndarray]] = {"skimage": skimage_images,
                                                                 "metaworld": metaworld_images}


def offline_encoders(spec) -> list[str]:
    if spec == "offline":
        return [n for n in list_encoders() if weights_available(get_encoder_config(n))]
    return list(spec)


def encoder_record(name: str, images: np.ndarray, cfg: DictConfig) -> tuple[dict, np.ndarray]:
    """Encode once to warm up, time a second pass, and compute token statistics and entropy."""
    enc = create_encoder(name, device=cfg.device)
    enc(images[:2])
    t0 = time.perf_counter()
    out = enc(images)
    ms = 1000 * (time.perf_counter() - t0) / len(images)
    norms = token_norms(out.tokens)
    ent = norm_entropy(norms, cfg.entropy_bins)
    return {"encoder": name, "weights": enc.weights_id, "tokens": list(out.tokens.shape[1:]),
            "summary_dim": out.summary.shape[1], "ms_per_img": round(ms, 2),
            "norm_mean": float(norms.mean()), "norm_std": float(norms.std()),
            "entropy": ent.to_dict(), "entropy_by_bins": bin_sensitivity(norms)}, norms


def write_outputs(out_dir: Path, records: list[dict], norms: dict[str, np.ndarray], cfg: DictConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"config": OmegaConf.to_container(cfg, resolve=True), "records": records}
    atomic_write_text(out_dir / "encoders.json", json.dumps(payload, indent=2))
    rows = [{"encoder": r["encoder"], "tokens": "x".join(map(str, r["tokens"])), "ms/img": r["ms_per_img"],
             "norm mean": f"{r['norm_mean']:.3f}", f"entropy ({cfg.entropy_bins} bins)": f"{r['entropy']['entropy']:.3f}"}
            for r in records]
    atomic_write_text(out_dir / "encoders.md", format_table(rows, tuple(rows[0])) + "\n")
    plot_norm_histograms(norms, out_dir / "norm_hist.png", cfg.entropy_bins)


def plot_norm_histograms(norms: dict[str, np.ndarray], path: Path, bins: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(norms), figsize=(3.2 * len(norms), 2.8), squeeze=False)
    for ax, (name, n) in zip(axes[0], norms.items()):
        ax.hist(n, bins=bins, color="tab:blue")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("token L2 norm")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run(argv: list[str]) -> int:
    overrides, rest = split_args(argv)
    argparse.ArgumentParser(prog="theia-eval quickstart", description=__doc__,
                            epilog="Config keys: see configs/quickstart.yaml").parse_args(rest)
    cfg = compose("quickstart", overrides)
    for s in cfg.image_sources:
        if s not in IMAGE_SOURCES:
            raise unknown_name("image source", s, IMAGE_SOURCES)
    print(format_table(registry_rows()), "\n")
    images = np.concatenate([IMAGE_SOURCES[s](cfg) for s in cfg.image_sources])
    names = offline_encoders(cfg.encoders)
    if not names:
        raise InputError("no encoder has weights offline: pass encoders=[pixels,...] or supply weights.")
    print(f"encoding {len(images)} images ({', '.join(cfg.image_sources)}) with: {', '.join(names)}")
    records, norms = [], {}
    for n in names:
        records_n, norms[n] = encoder_record(n, images, cfg)
        records.append(records_n)
    out_dir = Path(cfg.out_dir)
    write_outputs(out_dir, records, norms, cfg)
    print((out_dir / "encoders.md").read_text())
    print(f"wrote {out_dir}/encoders.json, encoders.md, norm_hist.png")
    return 0
