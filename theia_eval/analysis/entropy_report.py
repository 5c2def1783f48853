"""The feature-norm-entropy report: per-encoder entropy (bins and token set explicit), bin-count
sensitivity, norm histograms, and the correlation of entropy with the leaderboard score.

Images (IMAGE_SOURCES): `demos:DIR` (frames sampled evenly from every demo file under DIR: the frames the
policies see), `skimage` (scikit-image's colour photos, 224 px), or a folder of .png/.jpg files.
Token sets (TOKEN_SETS): `all` spatial tokens, or `interior` (the outer ring of the grid dropped).
Records are cached in entropy.json by (encoder, weights hash, images fingerprint, token set, bins), so a
re-run encodes nothing that it has already measured.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from theia_eval.analysis.correlation import CORRELATIONS, bootstrap, verdict
from theia_eval.analysis.entropy import bin_sensitivity, norm_entropy
from theia_eval.analysis.tables import Table, fmt
from theia_eval.errors import InputError, unknown_name
from theia_eval.provenance import portable

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


# ------------------------------------------------------------------------------------------- images
@dataclass
class Images:
    """uint8 images (N, H, W, 3) and a fingerprint of where they came from."""

    array: np.ndarray
    fingerprint: str
    description: str


def demo_images(arg: str, count: int) -> Images:
    """`count` frames evenly spaced over all demos of every .hdf5 file under a folder (or of one .hdf5 file)."""
    files = [Path(arg)] if Path(arg).is_file() else sorted(Path(arg).rglob("*.hdf5"))
    if not files:
        raise InputError(f"no demo files (*.hdf5) under {arg}: record demos first (`theia-eval demos ...`).")
    return demo_frames(files, count, f"under {arg}" if Path(arg).is_dir() else "")


def demo_frames(files: list[Path], count: int, where: str = "") -> Images:
    """`count` frames evenly spaced over all demos of the given demo files (in that order)."""
    from theia_eval.envs.dataset import DemoFile

    index = []
    for f in files:
        if not Path(f).is_file():
            raise InputError(f"demo file {f} does not exist: record its demos first (`theia-eval demos ...` or the "
                             "sweep's demos stage).")
        with DemoFile(f) as demos:
            index += [(f, name, t) for name, n in zip(demos.names, demos.lengths) for t in range(n)]
    if not index:
        raise InputError(f"the demo files {', '.join(map(str, files))} hold no frames: record demos again.")
    picks = sorted({int(i) for i in np.linspace(0, len(index) - 1, min(count, len(index)))})
    frames = []
    for f in files:
        wanted = [(name, t) for (g, name, t) in (index[i] for i in picks) if g == f]
        if wanted:
            with DemoFile(f) as demos:
                frames += [demos[name].frames(t, t + 1)[0] for name, t in wanted]
    stat = [(str(f), Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    names = where or ", ".join(portable(str(f)) for f in files)
    return Images(np.stack(frames), json.dumps([stat, count]),
                  f"{len(frames)} demo frames from {len(files)} file(s) {names}".rstrip())


def skimage_images(arg: str, count: int) -> Images:
    """scikit-image's bundled colour photos, center-cropped square and resized to 224 px."""
    from skimage import data
    from skimage.transform import resize

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()][:count]
    out = []
    for p in photos:
        side = min(p.shape[:2])
        y, x = (p.shape[0] - side) // 2, (p.shape[1] - side) // 2
        out.append((resize(p[y:y + side, x:x + side], (224, 224), anti_aliasing=True) * 255).round().astype(np.uint8))
    return Images(np.stack(out), f"skimage:{len(out)}", f"{len(out)} scikit-image photos (224 px)")


def folder_images(arg: str, count: int) -> Images:
    """The first `count` .png/.jpg files of a folder (sorted by name), as RGB."""
    from theia_eval.io import read_image  # 16-bit images scaled, non-images refused by name

    if not Path(arg).is_dir():
        raise InputError(f"images=folder:{arg}: no such folder.")
    files = sorted(p for p in Path(arg).iterdir() if p.suffix.lower() in IMAGE_EXTS)[:count]
    if not files:
        raise InputError(f"no .png/.jpg images in {arg}.")
    arrays = [read_image(p) for p in files]
    if len({a.shape for a in arrays}) > 1:
        raise InputError(f"images in {arg} have different sizes {sorted({a.shape for a in arrays})}; "
                         "resize them to one size first.")
    stat = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return Images(np.stack(arrays), json.dumps(stat), f"{len(files)} images from {arg}")


IMAGE_SOURCES: dict[str, Callable[[str, int], Images]] = {"demos": demo_images, "skimage": skimage_images,
                                                            "folder": folder_images}


def load_images(spec: str, count: int) -> Images:
    """`demos:DIR`, `skimage`, `folder:DIR` or a bare folder path."""
    kind, _, arg = str(spec).partition(":")
    if kind not in IMAGE_SOURCES:
        if Path(spec).is_dir():
            return folder_images(spec, count)
        raise unknown_name("image source", kind, IMAGE_SOURCES)
    return IMAGE_SOURCES[kind](arg, int(count))


# ------------------------------------------------------------------------------------------- tokens
def all_tokens(tokens: torch.Tensor) -> torch.Tensor:
    return tokens


def interior_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Drop the outer ring of the grid (border tokens see padding/edges); grids under 3x3 are kept whole."""
    h, w = tokens.shape[1:3]
    return tokens[:, 1:h - 1, 1:w - 1] if h >= 3 and w >= 3 else tokens


TOKEN_SETS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "all": (all_tokens, "all spatial tokens"),
    "interior": (interior_tokens, "spatial tokens without the outer ring of the grid"),
}


def encode_norms(encoder, images: np.ndarray, token_set: str, batch: int = 16) -> np.ndarray:
    """L2 norm of every selected token of every image (float64, flat)."""
    if token_set not in TOKEN_SETS:
        raise unknown_name("token set", token_set, TOKEN_SETS)
    select = TOKEN_SETS[token_set][0]
    norms = [select(encoder(images[i:i + batch]).tokens.float()).norm(dim=-1).flatten().double().numpy()
             for i in range(0, len(images), batch)]
    return np.concatenate(norms)


# ------------------------------------------------------------------------------------------- records
def relative_spread(norms: np.ndarray) -> float:
    """(max - min) / mean of the norms: ~1e-7 means constant up to float rounding (e.g. tokens leaving a final
    LayerNorm with unit scale all have norm sqrt(C)), where a range-fitted histogram only bins rounding noise."""
    mean = float(np.mean(norms))
    return float((norms.max() - norms.min()) / mean) if mean > 0 else 0.0


def entropy_record(label: str, encoder, images: Images, token_set: str, bins: int, bins_list: list[int]) -> dict:
    """Entropy, its parameters, the bin-count sensitivity and the histogram, for one encoder."""
    return record_from_norms(label, encoder, encode_norms(encoder, images.array, token_set), len(images.array),
                             token_set, bins, bins_list)


def record_from_norms(label: str, encoder, norms: np.ndarray, num_images: int, token_set: str, bins: int,
                      bins_list: list[int]) -> dict:
    """entropy_record's fields from token norms already computed (e.g. pooled over several image sets)."""
    res = norm_entropy(norms, bins, TOKEN_SETS[token_set][1])
    lo, hi = res.range
    counts, edges = np.histogram(norms, bins=bins, range=(lo, hi if hi > lo else lo + 1e-6))
    return {"encoder": label, "encoder_name": encoder.name, "weights": portable(str(encoder.weights_id)),
            "grid": list(encoder.grid), "token_dim": encoder.token_dim, "images": int(num_images),
            "token_set": token_set, **res.to_dict(), "normalized": res.entropy / res.max_entropy if bins > 1 else 0.0,
            "by_bins": {str(b): v for b, v in bin_sensitivity(norms, tuple(bins_list)).items()},
            "norm_mean": float(norms.mean()), "norm_std": float(norms.std()), "relative_spread": relative_spread(norms),
            "hist": {"counts": counts.tolist(), "edges": edges.tolist(), "entropy": res.entropy}}


def ranking_stability(records: list[dict], bins: int, bins_list: list[int]) -> dict[str, float]:
    """Spearman rho between the encoders' entropy ranking at each bin count and at `bins`."""
    from theia_eval.analysis.correlation import spearman

    if len(records) < 3:
        return {}
    ref = [r["entropy"] for r in records]
    return {str(b): spearman(ref, [r["by_bins"][str(b)] for r in records]) for b in bins_list}


def degenerate(record: dict, min_spread: float) -> bool:
    """Norms constant to within `min_spread` (relative): the entropy is then rounding noise, not a property."""
    return record["relative_spread"] < min_spread


def correlate(records: list[dict], scores: dict[str, tuple[float, float]], bins_list: list[int],
              resamples: int, seed: int, min_encoders: int, min_spread: float = 0.0) -> dict:
    """Pearson and Spearman of entropy vs score (bootstrap CIs), per bin count too, and the verdict.

    Encoders whose norms are constant to within `min_spread` are left out, and listed."""
    constant = [r["encoder"] for r in records if degenerate(r, min_spread)]
    pairs = [(r, scores[r["encoder"]]) for r in records if r["encoder"] in scores and r["encoder"] not in constant]
    x = np.array([r["entropy"] for r, _ in pairs])
    y = np.array([s[0] for _, s in pairs])
    results = [bootstrap(x, y, m, resamples, seed) for m in CORRELATIONS]
    by_bins = {}
    for b in bins_list:
        xb = np.array([r["by_bins"][str(b)] for r, _ in pairs])
        by_bins[str(b)] = {m: (fn(xb, y) if len(pairs) >= 3 else math.nan) for m, fn in CORRELATIONS.items()}
    return {"n": len(pairs), "encoders": [r["encoder"] for r, _ in pairs],
            "points": [{"encoder": r["encoder"], "entropy": r["entropy"], "score": s[0], "sem": s[1]}
                       for r, s in pairs],
            "correlations": [c.to_dict() for c in results], "by_bins": by_bins,
            "verdict": verdict(results, min_encoders), "min_encoders": min_encoders, "constant_norms": constant,
            "missing_scores": [r["encoder"] for r in records if r["encoder"] not in scores]}


def entropy_tables(report: dict) -> list[Table]:
    """The per-encoder table and the correlation table of an entropy report."""
    bins_list = report["bins_list"]
    main = Table(f"Feature-norm entropy ({report['bins']} bins, {report['token_set_description']}; "
                 f"{report['images']['description']})",
                 ["encoder", "weights", "grid", "tokens", "entropy (nats)", "log(bins)", "entropy / log(bins)",
                  "norm mean", "norm std", "(max-min)/mean"] + [f"H @ {b} bins" for b in bins_list],
                 note="Entropy of the normalized histogram of token L2 norms pooled over all images (natural log), the "
                      "histogram spanning the observed min..max. The paper published neither its bin count nor its "
                      "token set; both are stated here. Tokens leaving a final LayerNorm have nearly equal norms "
                      f"(column (max-min)/mean); below {report['min_relative_spread']:g} the norms are constant up "
                      "to rounding, the entropy measures nothing, and the encoder is left out of the correlation.")
    for r in report["records"]:
        main.rows.append([r["encoder"], r["weights"], "x".join(map(str, r["grid"])), str(r["num_tokens"]),
                          fmt(r["entropy"], 3), fmt(r["max_entropy"], 3), fmt(r["normalized"], 3),
                          f"{r['norm_mean']:.4g}", f"{r['norm_std']:.4g}", f"{r['relative_spread']:.2g}"]
                         + [fmt(r["by_bins"][str(b)], 3) for b in bins_list])
    tables = [main]
    stab = report.get("ranking_stability") or {}
    if stab:
        tables.append(Table("Does the entropy ranking of encoders depend on the bin count?",
                            ["bins"] + list(stab), [["Spearman rho vs " + str(report["bins"]) + " bins"]
                                                     + [fmt(v, 2) for v in stab.values()]]))
    corr = report.get("correlation")
    if corr:
        left_out = (f" Left out (constant norms): {', '.join(corr['constant_norms'])}."
                    if corr.get("constant_norms") else "")
        t = Table(f"Entropy vs score ({corr['score_label']}; n = {corr['n']} encoders)",
                  ["method", "value", "95% bootstrap CI", "n"], note=corr["verdict"] + left_out)
        for c in corr["correlations"]:
            t.rows.append([c["method"], fmt(c["value"], 3), f"[{fmt(c['ci95'][0], 2)}, {fmt(c['ci95'][1], 2)}]",
                           str(c["n"])])
        tables.append(t)
        if corr["by_bins"]:
            tables.append(Table("Correlation at other bin counts (a conclusion that flips with the bins is none)",
                                ["bins", "pearson", "spearman"],
                                [[b, fmt(v["pearson"], 3), fmt(v["spearman"], 3)] for b, v in corr["by_bins"].items()]))
    if report.get("per_task"):
        tables += per_task_tables(report)
    return tables


def per_task_tables(report: dict) -> list[Table]:
    """A sweep-scoped report's per-task parts: entropy per encoder on each task's frames, and entropy vs success
    per task next to the pooled correlation."""
    parts = report["per_task"]
    tasks = [p["task"] for p in parts]
    by_task = {p["task"]: {r["encoder"]: r for r in p["records"]} for p in parts}
    scores = {p["task"]: {q["encoder"]: q["score"] for q in p["correlation"]["points"]} for p in parts}
    ent = Table(f"Entropy ({report['bins']} bins) and success per task, each task's entropy on its own demo frames",
                ["encoder"] + [f"{h} {t}" for t in tasks for h in ("H", "success")] + ["H pooled"])
    for r in report["records"]:
        row = [r["encoder"]]
        for t in tasks:
            rec = by_task[t].get(r["encoder"])
            s = scores[t].get(r["encoder"])
            row += [fmt(rec["entropy"], 3) if rec else "-", fmt(s, 1) if s is not None else "-"]
        ent.rows.append(row + [fmt(r["entropy"], 3)])
    corr = Table("Entropy vs success: per task and pooled (bootstrap 95% CIs over encoders)",
                 ["frames / score", "n", "pearson [95% CI]", "spearman [95% CI]",
                  *(f"pearson @ {b} bins" for b in report["bins_list"]), "verdict"])
    rows = [(p["task"], p["correlation"]) for p in parts] + [("pooled (all tasks)", report["correlation"])]
    for name, c in rows:
        cs = {x["method"]: x for x in c["correlations"]}
        cells = [f"{fmt(cs[m]['value'], 2)} [{fmt(cs[m]['ci95'][0], 2)}, {fmt(cs[m]['ci95'][1], 2)}]"
                 if m in cs else "-" for m in ("pearson", "spearman")]
        corr.rows.append([name, str(c["n"]), *cells,
                          *(fmt(c["by_bins"].get(str(b), {}).get("pearson", math.nan), 2) for b in report["bins_list"]),
                          c["verdict"]])
    return [ent, corr]


RECORD_FORMAT = 2  # bump when entropy_record gains fields, so cached records are recomputed


def record_key(label: str, weights_hash: str, images: Images, token_set: str, bins: int, bins_list: list[int]) -> str:
    from theia_eval.hashing import stable_hash

    return stable_hash([RECORD_FORMAT, label, weights_hash, images.fingerprint, token_set, int(bins),
                        list(bins_list)], 16)


__all__ = ["IMAGE_SOURCES", "TOKEN_SETS", "Images", "correlate", "demo_frames", "entropy_record", "entropy_tables",
           "load_images", "ranking_stability", "record_from_norms", "record_key"]
