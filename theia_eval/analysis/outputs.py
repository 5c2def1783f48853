"""The files `theia-eval leaderboard` and `theia-eval entropy` write (also for the sweep, quickstart and publish),
and the report page that gathers them.

Outputs in out_dir:
  leaderboard.md / .csv / .html, score_vs_gflops[_N].png, results.parquet, leaderboard.json  (leaderboard)
  claims.json / .csv  (leaderboard with claims=...)
  entropy.md / .csv / .json, norm_hist.png, entropy_bins.png, entropy_vs_score.png  (entropy)
  report.html  everything above that exists, in one self-contained page (images inlined)
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from theia_eval.analysis import plots
from theia_eval.analysis.claims import (CLAIMS_FORMAT, check_claim_names, claims_markdown, claims_parts,
                                        claims_report, claims_rows, load_claims)
from theia_eval.analysis.leaderboard import MUJOCO_SUITES, Section, build_leaderboard, long_rows
from theia_eval.analysis.report import (CHECKPOINT_NOTE, HtmlPage, deviation_text, empty_message,
                                        leaderboard_html, parts_markdown, score_points, section_parts)
from theia_eval.analysis.uncertainty import Resampling
from theia_eval.analysis.store import load_many, load_results, now, result_paths
from theia_eval.analysis.tables import to_csv
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json, atomic_write_text
from theia_eval.provenance import portable


REPORT = "report.html"


CLAIMS_JSON = "claims.json"


SETTINGS_JSON = "leaderboard.json"


ENTROPY_JSON = "entropy.json"


ENTROPY_FORMAT = 2  # of entropy.json; report.html skips an entropy.json of another format (re-run `entropy`)


def resampling_from(spec) -> Resampling:
    """A Resampling from the `uncertainty:` block ({resamples, seed, resample: [tasks, seeds, episodes]})."""
    if spec is None:
        return Resampling()
    if isinstance(spec, Resampling):
        return spec
    spec = dict(OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec)
    unknown = set(spec) - {"resamples", "seed", "resample"}
    if unknown:
        raise InputError(f"unknown uncertainty keys {sorted(unknown)}; valid: resamples, seed, resample.")
    d = Resampling()
    return Resampling(int(spec.get("resamples", d.resamples)), int(spec.get("seed", d.seed)),
                      tuple(spec.get("resample", d.levels)))


def leaderboard_data(results, sweep_name: str | None = None, mujoco: tuple[str, ...] = MUJOCO_SUITES,
                     resampling: Resampling | None = None, runs_root: str | Path | None = None,
                     pools: Mapping[str, Sequence[str]] | None = None) -> tuple[list[Section], dict]:
    """Sections of the leaderboard of one results file or several read together (optionally one sweep's rows;
    `pools` joins sweeps into one section, see leaderboard.sections) and provenance.

    Per-episode outcomes are read from each row's run directory, looked for as stored, then under the folders
    of the results files and under runs_root (see episodes.find_eval_file).
    """
    from theia_eval.provenance import code_version

    paths = result_paths(results)
    df = load_many(paths)
    before = len(df)
    df = df.drop_duplicates(["config_hash", "checkpoint", "recorded_at"])  # one cell found in two stores
    shared = before - len(df)
    if sweep_name:
        df = df[df["sweep"] == sweep_name]
    roots = [p.parent for p in paths] + ([Path(runs_root)] if runs_root else [])
    sections, dropped = build_leaderboard(df, tuple(mujoco), resampling=resampling, roots=roots, pools=pools)
    meta = {"results": ", ".join(map(str, paths)), "rows": len(df), "dropped": dropped, "generated": now(),
            "code_version": code_version(), "shared": shared}
    return sections, meta


def plot_path(out_dir: Path, index: int) -> Path:
    """score_vs_gflops.png for the first section, score_vs_gflops_<i>.png for the others."""
    return out_dir / ("score_vs_gflops.png" if index == 0 else f"score_vs_gflops_{index}.png")


def leaderboard_plots(sections: list[Section], out_dir: Path) -> dict[str, Path]:
    """The score-vs-GFLOPs figure of every section that has scores."""
    out = {}
    for i, sec in enumerate(sections):
        points = score_points(sec)
        if points:
            scope = sorted({label for _, label in sec.overall.values()})
            out[sec.title] = plots.score_vs_gflops(points, plot_path(out_dir, i), f"score ({' / '.join(scope)})",
                                                   sec.title)
    return out


def leaderboard_markdown(sections: list[Section], meta: dict, claims: dict | None = None) -> str:
    lines = ["# Leaderboard", "", f"Results: `{meta['results']}` ({meta['rows']} rows), generated {meta['generated']} "
             f"by theia-eval {meta['code_version']}.", ""]
    if meta.get("shared"):
        lines += [f"{meta['shared']} row(s) found in more than one results file, counted once.", ""]
    if meta.get("dropped"):
        lines += [f"{meta['dropped']} superseded row(s) left out (newest kept).", ""]
    for sec in sections:
        lines += [f"## {sec.title}", "", deviation_text(sec), ""]
        lines += parts_markdown(section_parts(sec))
    if claims:
        lines += ["", claims_markdown(claims)]
    lines += ["", CHECKPOINT_NOTE, ""]
    return "\n".join(lines)


def write_settings(out_dir: Path, resampling: Resampling, runs_root: str | Path | None,
                   pools: Mapping[str, Sequence[str]] | None = None) -> None:
    """leaderboard.json: how the leaderboard drew its intervals and pooled sweeps, so report.html (rewritten by
    `entropy`) agrees."""
    atomic_write_json(out_dir / SETTINGS_JSON, {"resamples": resampling.resamples, "seed": resampling.seed,
                                                "resample": list(resampling.levels),
                                                "runs_root": str(runs_root) if runs_root else None,
                                                "pools": {k: list(v) for k, v in (pools or {}).items()} or None})


def read_settings(out_dir: Path) -> tuple[Resampling, str | None, dict | None]:
    data = read_json(Path(out_dir) / SETTINGS_JSON)
    runs_root = data.pop("runs_root", None)
    pools = data.pop("pools", None)
    return resampling_from(data or None), runs_root, pools


def write_leaderboard(results, out_dir: str | Path, sweep_name: str | None = None,
                      mujoco: tuple[str, ...] = MUJOCO_SUITES, export: str | None = "parquet", claims=None,
                      uncertainty=None, runs_root: str | Path | None = None,
                      pools: Mapping[str, Sequence[str]] | None = None,
                      results_label: str | None = None) -> dict[str, Path]:
    """Write leaderboard.md/.csv/.html (+ plots, + the results export, + claims.json/.csv); returns the paths.

    claims: a name in configs/claim_sets/, a YAML file or a list (claims.load_claims); uncertainty: the
    `uncertainty:` block of configs/leaderboard.yaml or a Resampling; results_label: how the pages name the
    results (default: their paths; a publication built in a temporary folder names its final file).
    """
    out_dir = Path(out_dir)
    resampling = resampling_from(uncertainty)
    claim_list = load_claims(claims)  # bad claims, like a bad results file, fail before any write
    sections, meta = leaderboard_data(results, sweep_name, mujoco, resampling, runs_root, pools)
    if results_label:
        meta["results"] = results_label
    check_claim_names(claim_list, sections)  # before any write
    out_dir.mkdir(parents=True, exist_ok=True)
    write_settings(out_dir, resampling, runs_root, pools)
    paths = {"md": out_dir / "leaderboard.md", "csv": out_dir / "leaderboard.csv",
             "html": out_dir / "leaderboard.html", "report": out_dir / REPORT}
    claims_data = write_claims(out_dir, claim_list, sections, meta, paths)
    if not sections:
        msg = empty_message(meta["results"])
        atomic_write_text(paths["md"], f"# Leaderboard\n\n{msg}\n")
        atomic_write_text(paths["csv"], "")
        page = HtmlPage("theia-eval leaderboard")
        page.paragraph(msg, "warn")
        atomic_write_text(paths["html"], page.render())
        write_report(out_dir, results, sweep_name, mujoco)
        return {**paths, "empty": True}
    figs = leaderboard_plots(sections, out_dir)
    atomic_write_text(paths["md"], leaderboard_markdown(sections, meta, claims_data))
    atomic_write_text(paths["csv"], to_csv([r for s in sections for r in long_rows(s)]))
    page = HtmlPage("theia-eval leaderboard")
    leaderboard_html(page, sections, figs, meta)
    if claims_data:
        claims_html(page, claims_data)
    atomic_write_text(paths["html"], page.render())
    stores = result_paths(results)
    if export and (len(stores) > 1 or stores[0].suffix not in (".parquet", ".csv")):
        from theia_eval.analysis.store import export_frame

        paths["export"] = export_frame(load_many(stores), out_dir / f"results.{export}")
    write_report(out_dir, results, sweep_name, mujoco, (sections, meta))
    return {**paths, **{f"plot:{k}": v for k, v in figs.items()}}


def write_claims(out_dir: Path, claims: list, sections: list[Section], meta: dict, paths: dict) -> dict | None:
    """claims.json and claims.csv when claims are given; an old pair is removed when none are."""
    files = {"claims_json": out_dir / CLAIMS_JSON, "claims_csv": out_dir / "claims.csv"}
    if not claims:
        for f in files.values():
            f.unlink(missing_ok=True)
        return None
    data = claims_report(claims, sections, meta)
    atomic_write_json(files["claims_json"], data)
    atomic_write_text(files["claims_csv"], to_csv(claims_rows(data)))
    paths.update(files)
    return data


def claims_html(page: HtmlPage, data: dict) -> None:
    page.heading("Claims")
    for part in claims_parts(data):
        page.add(part)


def entropy_encoders(spec, results: str | None) -> list[dict]:
    """[{label, name, weights}] from a list of names/mappings, or every encoder of the results store."""
    from theia_eval.encoder_entry import parse_encoder

    if spec == "results":
        if not results:
            raise InputError("encoders=results needs results=PATH (the store whose encoders to measure); or pass "
                             "encoders=[name,...].")
        df = load_results(results)
        if df.empty:
            raise InputError(empty_message(str(results)))
        firsts = df.drop_duplicates("encoder")
        return [{"label": r.encoder, "name": r.encoder_name,
                 "weights": r.weights if isinstance(r.weights, str) else None} for r in firsts.itertuples()]
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    entries = [parse_encoder(i) for i in items]
    return [{"label": e.label, "name": e.name, "weights": e.weights} for e in entries]


def score_lookup(results: str | None, cfg: DictConfig) -> tuple[dict[str, tuple[float, float]], str]:
    """encoder -> (overall score, s.e.) for the configured head/checkpoint, and what that score is."""
    if not results or not Path(results).is_file():
        return {}, ""
    sections, _ = leaderboard_data(results, cfg.score.sweep, tuple(cfg.mujoco_suites))
    if not sections:
        return {}, ""
    sec = sections[0]
    head = cfg.score.head or pick_head(sec)
    ckpt = cfg.score.checkpoint
    scores = {e: (v[0].mean, v[0].sem) for (e, h, c), v in sec.overall.items()
              if h == head and c == ckpt and v[0].n and not math.isnan(v[0].mean)}
    scope = sorted({v[1] for (e, h, c), v in sec.overall.items() if h == head and c == ckpt})
    return scores, f"{' / '.join(scope)} score, {head} head, {ckpt} checkpoint, {sec.title}"


def pick_head(sec: Section) -> str:
    """The spatial head with the most encoders (conv first), else the first head."""
    from theia_eval.analysis.leaderboard import SPATIAL

    spatial = [h for h in sec.heads if sec.head_input.get(h) == SPATIAL]
    return ("conv" if "conv" in spatial else (spatial or sec.heads)[0])


def compute_entropy(cfg: DictConfig, echo=print) -> dict:
    """Measure every encoder (reusing cached records), correlate with scores; returns the report dict."""
    from theia_eval.analysis.entropy_report import (TOKEN_SETS, correlate, entropy_record, load_images,
                                                    ranking_stability, record_key)
    from theia_eval.encoders import create_encoder
    from theia_eval.errors import unknown_name
    from theia_eval.hashing import weights_hash

    if cfg.token_set not in TOKEN_SETS:
        raise unknown_name("token set", cfg.token_set, TOKEN_SETS)
    bins, bins_list = int(cfg.bins), sorted({int(b) for b in cfg.bins_list} | {int(cfg.bins)})
    if cfg.get("sweep_dir"):
        return compute_sweep_entropy(cfg, bins, bins_list, echo)
    encoders = entropy_encoders(OmegaConf.to_container(cfg.encoders) if OmegaConf.is_config(cfg.encoders)
                                else cfg.encoders, cfg.results)
    if cfg.images == "plan":
        raise InputError("images=plan (each task's demo frames) needs sweep_dir=DIR, the sweep whose plan names the "
                         "tasks; or pass images=demos:DIR | skimage | folder:DIR.")
    images = load_images(cfg.images or "skimage", int(cfg.num_images))
    cached = cached_records(Path(cfg.out_dir))
    records = []
    for e in encoders:
        key = record_key(e["label"], weights_hash(e["weights"] or e["name"]), images, cfg.token_set, bins, bins_list)
        if key not in cached:
            echo(f"entropy: encoding {len(images.array)} images with {e['label']}")
            enc = create_encoder(e["name"], weights=e["weights"], device=cfg.device)
            cached[key] = {**entropy_record(e["label"], enc, images, cfg.token_set, bins, bins_list), "key": key}
        records.append(cached[key])
    scores, label = score_lookup(cfg.results, cfg)
    report = entropy_header(cfg, bins, bins_list, images)
    report |= {"records": records, "ranking_stability": ranking_stability(records, bins, bins_list)}
    if scores:
        corr = correlate(records, scores, bins_list, int(cfg.bootstrap), int(cfg.seed), int(cfg.min_encoders),
                         float(cfg.min_relative_spread))
        report["correlation"] = {**corr, "score_label": label}
    else:
        report["correlation"] = None
        report["no_scores"] = ("no scores to correlate with: pass results=PATH of a store holding these encoders."
                               if not cfg.results else f"the results at {cfg.results} have no scores for these "
                                                       "encoders.")
    return report


def entropy_header(cfg: DictConfig, bins: int, bins_list: list[int], images) -> dict:
    from theia_eval.analysis.entropy_report import TOKEN_SETS

    return {"format": ENTROPY_FORMAT, "generated": now(), "bins": bins, "bins_list": bins_list,
            "token_set": cfg.token_set, "min_relative_spread": float(cfg.min_relative_spread),
            "token_set_description": TOKEN_SETS[cfg.token_set][1],
            "images": {"spec": str(cfg.images or "skimage"), "count": len(images.array), "description": images.description}}


def cached_records(out_dir: Path) -> dict[str, dict]:
    """Records of a previous entropy.json of this format (pooled and per task), by key."""
    previous = read_json(out_dir / ENTROPY_JSON)
    if previous.get("format") != ENTROPY_FORMAT:
        return {}
    records = list(previous.get("records", []))
    for part in previous.get("per_task") or []:
        records += part.get("records", [])
    return {r["key"]: r for r in records if "key" in r}


def compute_sweep_entropy(cfg: DictConfig, bins: int, bins_list: list[int], echo=print) -> dict:
    """The report over one sweep's plan: entropy on each task's demo frames vs success on that task, and on the
    frames of all its tasks together vs the mean success over them (pooled, the report's headline)."""
    import numpy as np

    from theia_eval.analysis.entropy_report import (Images, correlate, demo_frames, encode_norms, ranking_stability,
                                                    record_from_norms, record_key)
    from theia_eval.analysis.entropy_sweep import load_scores, sweep_scope
    from theia_eval.encoders import create_encoder
    from theia_eval.hashing import weights_hash

    if OmegaConf.is_config(cfg.encoders) or cfg.encoders != "results":
        raise InputError("sweep_dir=DIR measures the encoders of the sweep's plan: leave encoders at its default "
                         "(results), or drop sweep_dir to pass a list of encoders.")
    if cfg.images not in (None, "plan"):
        raise InputError(f"sweep_dir=DIR measures each task's own demo frames (images=plan); images={cfg.images} "
                         "would measure other frames. Drop images=, or drop sweep_dir.")
    scope = load_scores(sweep_scope(cfg.sweep_dir, cfg.score.head, str(cfg.score.checkpoint), cfg.results))
    count = int(cfg.num_images)
    per_task_images = {t: demo_frames([Path(f)], count) for t, f in scope.task_files.items()}
    pooled = Images(np.concatenate([im.array for im in per_task_images.values()]),
                    json.dumps([im.fingerprint for im in per_task_images.values()]),
                    f"{count} demo frames of each of {len(per_task_images)} task(s) "
                    f"({', '.join(per_task_images)}), {sum(len(im.array) for im in per_task_images.values())} "
                    "in all")
    cached = cached_records(Path(cfg.out_dir))
    records, per_task = [], {t: [] for t in per_task_images}
    for e in scope.encoders:
        wh = weights_hash(e["weights"] or e["name"])
        keys = {t: record_key(e["label"], wh, im, cfg.token_set, bins, bins_list) for t, im in per_task_images.items()}
        pooled_key = record_key(e["label"], wh, pooled, cfg.token_set, bins, bins_list)
        if any(k not in cached for k in [*keys.values(), pooled_key]):
            echo(f"entropy: encoding {len(pooled.array)} demo frames with {e['label']}")
            enc = create_encoder(e["name"], weights=e["weights"], device=cfg.device)
            norms = {t: encode_norms(enc, im.array, cfg.token_set) for t, im in per_task_images.items()}
            for t, im in per_task_images.items():
                cached[keys[t]] = {**record_from_norms(e["label"], enc, norms[t], len(im.array), cfg.token_set, bins,
                                                       bins_list), "key": keys[t]}
            cached[pooled_key] = {**record_from_norms(e["label"], enc, np.concatenate(list(norms.values())),
                                                      len(pooled.array), cfg.token_set, bins, bins_list),
                                  "key": pooled_key}
        records.append(cached[pooled_key])
        for t in per_task:
            per_task[t].append(cached[keys[t]])

    def correlation(recs: list[dict], scores: dict, label: str) -> dict:
        return {**correlate(recs, scores, bins_list, int(cfg.bootstrap), int(cfg.seed), int(cfg.min_encoders),
                            float(cfg.min_relative_spread)), "score_label": label}

    report = entropy_header(cfg, bins, bins_list, pooled)
    report["images"]["spec"] = "plan"
    report |= {"records": records, "ranking_stability": ranking_stability(records, bins, bins_list),
               "correlation": correlation(records, scope.pooled_scores(), scope.label()),
               "scope": {"sweep": scope.name, "sweep_dir": portable(str(scope.sweep_dir)),
                         "store": portable(str(scope.store)), "head": scope.head, "checkpoint": scope.checkpoint,
                         "tasks": list(scope.task_files), "cells": sum(len(h) for h in scope.cells.values()),
                         "missing_scores": scope.missing(), "not_distilled": scope.not_distilled},
               "per_task": [{"task": t, "images": {"spec": f"plan:{t}", "count": len(per_task_images[t].array),
                                                   "description": per_task_images[t].description},
                             "records": per_task[t],
                             "correlation": correlation(per_task[t], scope.task_scores(t), scope.label(t))}
                            for t in per_task]}
    return report


def read_json(path: Path) -> dict:
    """A JSON record of an output folder ({} when absent); a damaged one is an InputError that names it."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}): it was damaged, e.g. by a killed job. Delete it (it is "
                         "written again) and run again.") from exc


def entropy_plots(report: dict, out_dir: Path) -> dict[str, Path]:
    figs = {"norm_hist": plots.norm_histograms({r["encoder"]: r["hist"] for r in report["records"]},
                                               out_dir / "norm_hist.png"),
            "bins": plots.bin_sensitivity({r["encoder"]: {int(b): v for b, v in r["by_bins"].items()}
                                           for r in report["records"]}, out_dir / "entropy_bins.png")}
    xlabel = f"feature-norm entropy (nats, {report['bins']} bins, {report['token_set']} tokens)"
    corr = report.get("correlation")
    if corr and corr["points"]:
        figs["scatter"] = plots.entropy_vs_score(corr["points"], out_dir / "entropy_vs_score.png", xlabel,
                                                 "score (0-100)", f"Entropy vs score (n = {corr['n']}): "
                                                                  f"{corr['score_label']}")
    for part in report.get("per_task") or []:
        corr = part["correlation"]
        if corr["points"]:
            slug = part["task"].replace("/", "_")
            figs[f"scatter_{slug}"] = plots.entropy_vs_score(
                corr["points"], out_dir / f"entropy_vs_score_{slug}.png", xlabel + f", {part['task']} frames",
                "success (%)", f"Entropy vs success on {part['task']} (n = {corr['n']})")
    return figs


def entropy_markdown(report: dict) -> str:
    from theia_eval.analysis.entropy_report import entropy_tables

    lines = ["# Feature-norm entropy", "", f"Images: {report['images']['description']}. Bins: {report['bins']}; "
             f"token set: {report['token_set_description']}.", ""]
    scope = report.get("scope")
    if scope:
        lines += [f"Scope: the {scope['cells']} {scope['head']}-head cells of sweep {scope['sweep']} "
                  f"({scope['sweep_dir']}; scores from {scope['store']}, {scope['checkpoint']} checkpoint); "
                  f"tasks {', '.join(scope['tasks'])}. Each task's entropy is measured on that task's demo frames; "
                  "pooled, on the frames of all of them against the mean success over them."
                  + (f" Not yet scored: {', '.join(scope['missing_scores'])}." if scope["missing_scores"] else "")
                  + (f" Not distilled yet (not measured): {', '.join(scope['not_distilled'])}."
                     if scope.get("not_distilled") else ""),
                  ""]
    lines += [t.markdown() for t in entropy_tables(report)]
    corr = report.get("correlation")
    lines += ["", "**Conclusion" + (" (pooled)" if scope else "") + ":** "
              + (corr["verdict"] if corr else report.get("no_scores", "")), ""]
    for part in report.get("per_task") or []:
        lines += [f"**{part['task']}:** {part['correlation']['verdict']}", ""]
    return "\n".join(lines)


def write_entropy(cfg: DictConfig, echo=print) -> dict[str, Path]:
    """Compute (or reuse) the entropy report and write entropy.md/.csv/.json, its plots and report.html."""
    out_dir = Path(cfg.out_dir)
    report = compute_entropy(cfg, echo)  # bad input fails here, before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = entropy_plots(report, out_dir)
    paths = {"json": out_dir / ENTROPY_JSON, "md": out_dir / "entropy.md", "csv": out_dir / "entropy.csv"}
    atomic_write_json(paths["json"], report)
    atomic_write_text(paths["md"], entropy_markdown(report))
    scoped = [("pooled" if report.get("per_task") else "", r) for r in report["records"]]
    scoped += [(part["task"], r) for part in report.get("per_task") or [] for r in part["records"]]
    rows = [({"frames": where} if report.get("per_task") else {})
            | {k: v for k, v in r.items() if k not in ("hist", "by_bins", "range")}
            | {f"entropy_{b}_bins": v for b, v in r["by_bins"].items()} for where, r in scoped]
    atomic_write_text(paths["csv"], to_csv(rows))
    results = cfg.results or (report.get("scope") or {}).get("store")
    paths["report"] = write_report(out_dir, results, cfg.score.sweep, tuple(cfg.mujoco_suites))
    return {**paths, **figs}


def write_report(out_dir: Path, results: str | Path | None, sweep_name: str | None = None,
                 mujoco: tuple[str, ...] = MUJOCO_SUITES, built: tuple[list[Section], dict] | None = None) -> Path:
    """report.html: the leaderboard (when results exist), the claims (claims.json) and the entropy section
    (entropy.json). `built` reuses sections already computed; else they are rebuilt with the interval settings
    the leaderboard recorded in leaderboard.json."""
    from theia_eval.analysis.entropy_report import entropy_tables

    out_dir = Path(out_dir)
    page = HtmlPage("theia-eval report")
    if results and all(p.is_file() for p in result_paths(results)):
        if built is None:
            resampling, runs_root, pools = read_settings(out_dir)
            built = leaderboard_data(results, sweep_name, mujoco, resampling, runs_root, pools)
        sections, meta = built
        page.heading("Leaderboard")
        if sections:
            figs = {s.title: plot_path(out_dir, i) for i, s in enumerate(sections) if plot_path(out_dir, i).is_file()}
            leaderboard_html(page, sections, figs, meta)
        else:
            page.paragraph(empty_message(meta["results"]), "warn")
    claims = read_json(out_dir / CLAIMS_JSON)
    if claims and claims.get("format") == CLAIMS_FORMAT:
        claims_html(page, claims)
    report = read_json(out_dir / ENTROPY_JSON)
    if report and report.get("format") != ENTROPY_FORMAT:
        page.heading("Feature-norm entropy")
        page.paragraph(f"{out_dir / ENTROPY_JSON} was written by another theia-eval version; re-run "
                       "`theia-eval entropy ...` to include it.", "warn")
    elif report:
        page.heading("Feature-norm entropy")
        page.paragraph(f"Images: {report['images']['description']}. Bins: {report['bins']}; token set: "
                       f"{report['token_set_description']}.")
        corr = report.get("correlation")
        page.paragraph("Conclusion: " + (corr["verdict"] if corr else report.get("no_scores", "")), "warn")
        for t in entropy_tables(report):
            page.table(t)
        for name, alt in (("norm_hist.png", "Token-norm histograms"), ("entropy_bins.png", "Bin-count sensitivity"),
                          ("entropy_vs_score.png", "Entropy vs score")):
            if (out_dir / name).is_file():
                page.image(out_dir / name, alt)
    path = out_dir / REPORT
    atomic_write_text(path, page.render())
    return path
