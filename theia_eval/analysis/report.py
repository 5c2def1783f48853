"""Leaderboard tables and the self-contained HTML report (images inlined as data URIs; opens offline)."""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from theia_eval.analysis.leaderboard import CHECKPOINTS, SPATIAL, Section, Stat
from theia_eval.analysis.tables import Table, fmt

CHECKPOINT_NOTE = ("last = the final epoch's evaluation; best = the maximum over all evaluations during training "
                   "(the CortexBench reporting rule, optimistic). Scores 0-100: mean ± s.e. over seeds (n = seeds).")
CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
caption{font-weight:bold;text-align:left;padding:4px 0}
.note{font-size:12px;color:#555;font-style:italic}.warn{background:#fff4e5;border-left:4px solid #f90;padding:6px 10px}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}code{background:#f6f6f6;padding:0 3px}"""


def head_kind(section: Section, head: str) -> str:
    return "spatial" if section.head_input.get(head) == SPATIAL else "CLS"


def _cell(stats: dict, key: tuple) -> str:
    s = stats.get(key)
    if isinstance(s, tuple):
        s = s[0]
    return s.format() if isinstance(s, Stat) else "-"


def main_table(sec: Section) -> Table:
    """encoder | head | compute | per suite last/best | overall last/best."""
    scope = sorted({label for _, label in sec.overall.values()})
    header = ["encoder", "head", "params (M)", "GFLOPs", "ms/img"]
    header += [f"{s} {c}" for s in sec.suites for c in CHECKPOINTS]
    header += [f"overall {c}" for c in CHECKPOINTS]
    t = Table(f"Leaderboard: {sec.title}", header, note=f"overall = {' / '.join(scope)}. " + CHECKPOINT_NOTE)
    for enc, head in sec.ranked():
        comp = sec.compute[enc]
        row = [enc, f"{head} ({head_kind(sec, head)})", fmt(comp["params_m"]), fmt(comp["gflops"]),
               fmt(comp["ms_per_img"], 1)]
        row += [_cell(sec.suite_stats, (enc, head, c, s)) for s in sec.suites for c in CHECKPOINTS]
        row += [_cell(sec.overall, (enc, head, c)) for c in CHECKPOINTS]
        t.rows.append(row)
    return t


def spatial_vs_cls(sec: Section) -> Table | None:
    """Overall last-checkpoint score per head for each encoder, and spatial minus CLS when both exist."""
    spatial = [h for h in sec.heads if head_kind(sec, h) == "spatial"]
    cls = [h for h in sec.heads if head_kind(sec, h) == "CLS"]
    if not spatial or not cls:
        return None
    header = ["encoder"] + [f"{h} ({head_kind(sec, h)})" for h in sec.heads] + [f"{spatial[0]} - {cls[0]}"]
    t = Table(f"Spatial vs CLS heads (overall, last checkpoint): {sec.title}", header)
    for enc in sec.encoders:
        row = [enc] + [_cell(sec.overall, (enc, h, "last")) for h in sec.heads]
        a, b = sec.overall.get((enc, spatial[0], "last")), sec.overall.get((enc, cls[0], "last"))
        row.append(fmt(a[0].mean - b[0].mean, 1) if a and b else "-")
        t.rows.append(row)
    return t


def task_table(sec: Section) -> Table:
    """Per task: last / best, mean ± s.e. over seeds."""
    t = Table(f"Per task (last / best): {sec.title}", ["encoder", "head"] + sec.tasks)
    for enc, head in sec.ranked():
        cells = []
        for task in sec.tasks:
            last, best = (sec.task_stats.get((enc, head, c, task)) for c in ("last", "best"))
            cells.append(f"{last.format()} / {best.mean:.1f}" if last and best else "-")
        t.rows.append([enc, head] + cells)
    return t


def section_tables(sec: Section) -> list[Table]:
    tables = [main_table(sec)]
    svc = spatial_vs_cls(sec)
    if svc is not None:
        tables.append(svc)
    tables.append(task_table(sec))
    return tables


def deviation_text(sec: Section) -> str:
    if not sec.deviations:
        return "Protocol: CortexBench (demos, epochs, evaluation episodes and horizons as specified)."
    return ("REDUCED PROTOCOL — these are not CortexBench numbers. Differences: " + "; ".join(sec.deviations) + ".")


def score_points(sec: Section) -> list[dict]:
    """Points of the score-vs-GFLOPs plot: overall last and best score per encoder/head."""
    pts = []
    for enc, head in sec.ranked():
        last, best = sec.overall.get((enc, head, "last")), sec.overall.get((enc, head, "best"))
        if last and best and last[0].n:
            pts.append({"encoder": enc, "head": head, "head_input": sec.head_input.get(head),
                        "gflops": sec.compute[enc]["gflops"], "last": last[0].mean, "best": best[0].mean})
    return pts


# ------------------------------------------------------------------------------------------- HTML
def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


class HtmlPage:
    """A small HTML document builder; `write` produces one self-contained file."""

    def __init__(self, title: str):
        self.title, self.parts = title, []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, cls: str = "") -> None:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")

    def table(self, table: Table) -> None:
        self.parts.append(table.html())

    def image(self, path: Path, alt: str) -> None:
        self.parts.append(f'<figure><img src="{data_uri(path)}" alt="{html.escape(alt)}">'
                          f"<figcaption>{html.escape(alt)}</figcaption></figure>")

    def render(self) -> str:
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f"</title><style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")


def leaderboard_html(page: HtmlPage, sections: Sequence[Section], plots: dict[str, Path], meta: dict) -> None:
    """The leaderboard part of a page: provenance, per-section protocol note, tables and plot."""
    page.paragraph(f"Results: {meta['results']} ({meta['rows']} rows; generated {meta['generated']}, "
                   f"theia-eval {meta['code_version']}).")
    if meta.get("dropped"):
        page.paragraph(f"{meta['dropped']} superseded row(s) (same grid point evaluated again under another "
                       "config of the same sweep) were left out; the newest is shown.", "warn")
    for sec in sections:
        page.heading(sec.title, 3)
        page.paragraph(deviation_text(sec), "warn" if sec.deviations else "")
        for t in section_tables(sec):
            page.table(t)
        if sec.title in plots:
            page.image(plots[sec.title], f"Score vs GFLOPs per image: {sec.title}")


def empty_message(results: str) -> str:
    return (f"The results store {results} is empty: no evaluations yet. Run a sweep first "
            "(`theia-eval sweep sweep=NAME`), then `theia-eval leaderboard results=PATH`.")
