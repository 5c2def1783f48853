"""Held-out fit of any student on a distillation run's held-out images, in the student's own standardisation.

    python -m theia_eval.distill.heldout SOURCE RUN_DIR --label NAME --out FILE.json

SOURCE is anything `load_theia` reads (a registry name such as theia-offline, a run or export dir). The images
are the run's held-out ones (its data, val_fraction / val_tasks and val_max_images, from run_dir/config.yaml);
the targets come from the run's target cache (set THEIA_EVAL_DATA as the run had it, or the run's cache_dir).
Each target is standardised with the student's own feature statistics, as its training standardised them,
and compared with the student's translator output: the same mean per-image cosine and MSE the run logs, so
an older student (e.g. the previously shipped one) can be compared with a run on the same frames. The
cosine is also given per family (the first part of each key: metaworld, dmc, adroit).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from theia_eval.io import atomic_write_json


@torch.no_grad()
def heldout_fit(source: str, run_dir: str | Path, batch_size: int = 32, per_image: bool = False) -> dict:
    """{"images": n, "teachers": {id: {"cos", "mse"}}} of `source` on the run's held-out images (per_image: also
    "cos_per_image": {id: [cosine of each held-out image]}, for intervals over images)."""
    from omegaconf import OmegaConf

    from theia_eval.distill.cache import CachedTargets, cache_root, teacher_caches
    from theia_eval.distill.data import split_indices
    from theia_eval.distill.loss import image_cosine
    from theia_eval.distill.samples import collate_samples
    from theia_eval.distill.sources import open_source
    from theia_eval.distill.teacher_sets import resolve_teachers
    from theia_eval.distill.teachers import build_teachers
    from theia_eval.encoders.theia_student import load_theia

    cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    data = OmegaConf.to_object(cfg.data) if OmegaConf.is_config(cfg.data) else cfg.data
    images = open_source(data, int(cfg.image_size or 224), bool(cfg.allow_upsample))
    val_tasks = OmegaConf.to_object(cfg.val_tasks) if OmegaConf.is_config(cfg.get("val_tasks")) else cfg.get("val_tasks")
    held = split_indices(images.keys, float(cfg.val_fraction), val_tasks)[1][: int(cfg.train.val_max_images)]
    teachers = build_teachers(resolve_teachers(cfg.teachers, OmegaConf.to_object(cfg.teacher_weights)))
    caches = teacher_caches(cache_root(cfg.cache_dir, images.fingerprint()), teachers, images, cfg.cache_dtype,
                            int(cfg.shard_size))
    cached = CachedTargets(caches, images.keys)
    model = load_theia(source)
    cosines = {t.id: [] for t in teachers}
    squares = {t.id: torch.zeros(2, dtype=torch.float64) for t in teachers}
    for start in range(0, len(held), batch_size):
        idx = held[start:start + batch_size].tolist()
        batch = collate_samples([images.load(i) for i in idx])
        preds = model(batch.images, [t.id for t in teachers])
        for j, t in enumerate(teachers):
            mean, std = model.feature_stats(t.id)
            target = torch.stack([cached.get(images.keys[i])[j] for i in idx]).float()
            target = ((target - mean) / std).reshape(preds[t.id].shape)
            p = preds[t.id].float()
            cosines[t.id] += image_cosine(p, target).tolist()
            squares[t.id] += torch.tensor([float(((p - target) ** 2).sum()), float(p.numel())], dtype=torch.float64)
    families = [images.keys[i].split("/", 1)[0] for i in held]
    by_family = {f: {tid: sum(c for c, g in zip(cs, families) if g == f) / families.count(f)
                     for tid, cs in cosines.items()} | {"images": families.count(f)} for f in sorted(set(families))}
    return {"source": str(source), "run_dir": str(run_dir), "images": len(held),
            "teachers": {tid: {"cos": sum(cosines[tid]) / len(held), "mse": float(squares[tid][0] / squares[tid][1])}
                         for tid in cosines},
            "cos_by_family": by_family} | ({"cos_per_image": cosines} if per_image else {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("run_dir")
    p.add_argument("--label", default=None, help="name of the student in reports (default: SOURCE)")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    result = {"label": args.label or args.source, **heldout_fit(args.source, args.run_dir)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
