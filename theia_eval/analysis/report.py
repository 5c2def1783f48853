"""Leaderboard tables and the self-contained HTML report (images inlined as data URIs; opens offline)."""
from __future__ import annotations

import base64
import html
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from theia_eval.analysis.leaderboard import CHECKPOINTS, SPATIAL, Entry, Section, Stat
from theia_eval.analysis.tables import Table, fmt

CHECKPOINT_NOTE = ("last = the final epoch's evaluation; best = the maximum over all evaluations during training "
                   "(the CortexBench reporting rule, optimistic: it is selected on the same episodes). Scores 0-100.")
EAI_VC_SEEDS = ("Difference from eai-vc (the CortexBench reference code), labelled: eai-vc seeds episode i with the "
                "training seed + i (sample_paths(base_seed=config['seed'])), so its training seeds 100, 200 and 300 "
                "are evaluated on different episodes (seeds 100 + i, 200 + i, 300 + i) and two encoders share "
                "episodes only within one training seed; here one base seed serves every run, which pairs episodes "
                "across seeds, heads and encoders. Seed numbers do not carry episodes across simulators either "
                "(eai-vc ran a forked Meta-World on mujoco-py), so eai-vc's episodes cannot be replayed by seed.")
CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
caption{font-weight:bold;text-align:left;padding:4px 0}
.note{font-size:12px;color:#555;font-style:italic}.warn{background:#fff4e5;border-left:4px solid #f90;padding:6px 10px}
.verdict{background:#eef6ff;border-left:4px solid #39f;padding:6px 10px}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}code{background:#f6f6f6;padding:0 3px}"""


@dataclass(frozen=True)
class Paragraph:
    """A sentence block of a report: plain, a warning or a verdict."""

    text: str
    cls: str = ""


def head_kind(section: Section, head: str) -> str:
    return "spatial" if section.head_input.get(head) == SPATIAL else "CLS"


def label(entry: Entry) -> str:
    return f"{entry[0]} ({entry[1]})"


def _cell(stats: dict, key: tuple) -> str:
    s = stats.get(key)
    if isinstance(s, tuple):
        s = s[0]
    return s.format() if isinstance(s, Stat) else "-"


def suite_cell(sec: Section, key: tuple) -> str:
    """A suite score: mean [95 % bootstrap interval], else mean ± s.e. over seeds."""
    est = sec.suite_ci.get(key)
    return est.format() if est is not None else _cell(sec.suite_stats, key)


def overall_cell(sec: Section, key: tuple) -> str:
    est = sec.overall_ci.get(key)
    return est.format() if est is not None else _cell(sec.overall, key)


def interval_note(sec: Section) -> str:
    """What the brackets of a table are."""
    return (f"[a, b] = {sec.resampling.describe()}; a suite's score is the mean over its tasks of the mean over "
            "seeds. A bootstrap cannot spread beyond the outcomes seen (0 successes everywhere gives [0.0, 0.0]); "
            "the per-task Wilson intervals have no such limit. Where per-episode outcomes are missing: mean ± s.e. "
            "over seeds (n = seeds).")


def versus_top(sec: Section, entry: Entry, ckpt: str) -> str:
    """The main table's marker: top, ≈ top (cannot be told apart), below / above top, or not paired."""
    if sec.top.get(ckpt) == entry:
        tied = any(e != entry and sec.score(e, ckpt) == sec.score(entry, ckpt) for e in sec.ranked())
        return "top (tied)" if tied else "top"
    p = sec.vs_top.get((*entry, ckpt))
    if p is None or not p.pairs:
        return "not paired"
    if not p.distinguishable:
        return "≈ top"
    return "below top" if p.diff < 0 else "above top (shared tasks)"


def main_table(sec: Section) -> Table:
    """encoder | head | compute | per suite last/best | overall last/best | told apart from the top entry."""
    scope = sorted({label_ for _, label_ in sec.overall.values()})
    header = ["encoder", "head", "params (M)", "GFLOPs", "ms/img"]
    header += [f"{s} {c}" for s in sec.suites for c in CHECKPOINTS]
    header += [f"overall {c}" for c in CHECKPOINTS]
    header += [f"vs top ({c})" for c in CHECKPOINTS]
    lacking = sec.lacking()
    subset = ("" if not lacking else "No MuJoCo-subset score for entries lacking a suite (not a mean over the "
              "suites they have): " + "; ".join(f"{e} + {h} lacks {', '.join(m)}" for (e, h), m in sorted(lacking.items()))
              + ". ")
    t = Table(f"Leaderboard: {sec.title}", header,
              note=f"overall = {' / '.join(scope)}. {subset}{interval_note(sec)} vs top: '≈ top' = the 95% interval of the "
                   "paired difference with the top entry contains 0 (see the paired comparison). " + CHECKPOINT_NOTE)
    for enc, head in sec.ranked():
        comp = sec.compute[enc]
        row = [enc, f"{head} ({head_kind(sec, head)})", fmt(comp["params_m"]), fmt(comp["gflops"]),
               fmt(comp["ms_per_img"], 1)]
        row += [suite_cell(sec, (enc, head, c, s)) for s in sec.suites for c in CHECKPOINTS]
        row += [overall_cell(sec, (enc, head, c)) for c in CHECKPOINTS]
        row += [versus_top(sec, (enc, head), c) for c in CHECKPOINTS]
        t.rows.append(row)
    return t


def comparison_table(sec: Section) -> Table | None:
    """Every entry against the top entry of each checkpoint, paired over shared episodes."""
    if len(sec.ranked()) < 2 or not sec.top:
        return None
    t = Table(f"Paired comparison with the top entry: {sec.title}",
              ["checkpoint", "encoder", "head", "top entry", "Δ vs top [95% CI]", "paired episodes (tasks)",
               "a>top / top>a", "sign test p", "told apart?"],
              note=("Δ = mean over shared tasks (and suites) of the per-episode difference entry − top, pairing "
                    "episode i of a run with episode i of the top entry's run on the same task, training seed and "
                    f"evaluation seed; {sec.resampling.describe()}. 'yes' = the interval excludes 0. p = exact "
                    "two-sided sign test on the pairs that differ (McNemar's exact test for success/failure)."))
    for ckpt in CHECKPOINTS:
        top = sec.top.get(ckpt)
        if top is None:
            continue
        for entry in sec.ranked():
            if entry == top:
                t.rows.append([ckpt, *entry, "(this)", "-", "-", "-", "-", "top"])
                continue
            p = sec.vs_top.get((*entry, ckpt))
            if p is None or not p.pairs:
                t.rows.append([ckpt, *entry, label(top), "-", "0", "-", "-", "not paired"])
                continue
            t.rows.append([ckpt, *entry, label(top), p.format(), f"{p.pairs} ({p.tasks})",
                           f"{p.a_better} / {p.b_better}", f"{p.p:.3g}", "yes" if p.distinguishable else "no"])
    return t


def distinguish_text(sec: Section, ckpt: str) -> str:
    """What can be told apart at one checkpoint, in words."""
    entries = sec.ranked()
    top = sec.top.get(ckpt)
    if len(entries) < 2 or top is None:
        return ""
    pairs = {k: p for k, p in sec.pairwise.get(ckpt, {}).items() if p.pairs}
    name = f"{ckpt.capitalize()} checkpoint"
    if not pairs:
        return f"{name}: no two entries share evaluated episodes, so none can be compared."
    differ = [k for k, p in pairs.items() if p.distinguishable]
    sizes = sorted(p.pairs for p in pairs.values())
    span = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]}-{sizes[-1]}"
    if not differ:
        which = ("The paired 95% interval of their difference contains 0" if len(pairs) == 1 else
                 f"Every one of the {len(pairs)} paired 95% intervals of the difference contains 0")
        return (f"{name}: no entry can be told apart from any other at this n. {which} ({span} paired episodes "
                "per pair), so the order of the table is not evidence of a ranking.")
    others = [e for e in entries if e != top]
    below = [label(e) for e in others if sec.vs_top[(*e, ckpt)].pairs and sec.vs_top[(*e, ckpt)].distinguishable]
    same = [label(e) for e in others if sec.vs_top[(*e, ckpt)].pairs and not sec.vs_top[(*e, ckpt)].distinguishable]
    unpaired = [label(e) for e in others if not sec.vs_top[(*e, ckpt)].pairs]
    text = (f"{name}: top entry {label(top)}. Told apart from it (95% paired interval excludes 0): "
            f"{', '.join(below) or 'none'}. Cannot be told apart from it: {', '.join(same) or 'none'}.")
    if unpaired:
        text += f" Not paired with it (no shared episodes): {', '.join(unpaired)}."
    return text + f" {len(differ)} of {len(pairs)} pairs of entries differ."


def spatial_vs_cls(sec: Section) -> Table | None:
    """Overall last-checkpoint score per head for each encoder, and spatial minus CLS when both exist."""
    spatial = [h for h in sec.heads if head_kind(sec, h) == "spatial"]
    cls = [h for h in sec.heads if head_kind(sec, h) == "CLS"]
    if not spatial or not cls:
        return None
    header = ["encoder"] + [f"{h} ({head_kind(sec, h)})" for h in sec.heads] + [f"{spatial[0]} - {cls[0]}"]
    t = Table(f"Spatial vs CLS heads (overall, last checkpoint): {sec.title}", header,
              note="The difference is paired over shared episodes when per-episode outcomes exist (mean [95% CI], "
                   "n paired episodes), else the difference of the means.")
    for enc in sec.encoders:
        row = [enc] + [overall_cell(sec, (enc, h, "last")) for h in sec.heads]
        a, b = (enc, spatial[0]), (enc, cls[0])
        p = sec.compare(a, b, "last")
        if p.pairs:
            row.append(f"{p.format()} (n={p.pairs})")
        else:
            sa, sb = sec.score(a, "last"), sec.score(b, "last")
            row.append(fmt(sa - sb, 1) if not (math.isnan(sa) or math.isnan(sb)) else "-")
        t.rows.append(row)
    return t


def task_table(sec: Section) -> Table:
    """Per task and checkpoint: k/n successes pooled over seeds with the Wilson 95 % interval."""
    t = Table(f"Per task (successes k/n, Wilson 95% interval): {sec.title}",
              ["encoder", "head", "checkpoint"] + sec.tasks,
              note=("k/n = successes over evaluation episodes, pooled over training seeds; [a, b] = Wilson 95% "
                    "interval in percent (it treats pooled episodes as independent, so it ignores seed-to-seed "
                    "variation). A per-episode score (DMC: return / 10) shows its mean [95% bootstrap interval over "
                    "seeds and episodes] (n = episodes). Where per-episode outcomes are missing: mean ± s.e. over "
                    "seeds."))
    for enc, head in sec.ranked():
        for ckpt in CHECKPOINTS:
            cells = []
            for task in sec.tasks:
                ts = sec.task_scores.get((enc, head, ckpt, task))
                cells.append(ts.format() if ts is not None else _cell(sec.task_stats, (enc, head, ckpt, task)))
            t.rows.append([enc, head, ckpt] + cells)
    return t


def eval_seed_text(sec: Section) -> str:
    """The evaluation-seed convention of the section, read from its per-episode records, and eai-vc's."""
    lists = Counter(ep.seeds for ep in sec.episodes.values() if ep.paired)
    if not lists:
        return ("Evaluation seeds: unknown here (no per-episode records found), so no comparison is paired. "
                "theia-eval seeds episode i with eval.base_seed + i (default 1000). " + EAI_VC_SEEDS)
    if len(lists) == 1:
        seeds = next(iter(lists))
        consecutive = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
        what = (f"episode i uses seed base_seed + i with base_seed = {seeds[0]} (seeds {seeds[0]}-{seeds[-1]})"
                if consecutive else f"seeds {', '.join(map(str, seeds))}")
        text = (f"Evaluation seeds: in every evaluation here {what}, the same for every encoder, head, checkpoint "
                "and training seed, so comparisons pair episode i with episode i. ")
    else:
        bases = sorted({s[0] for s in lists})
        text = (f"Evaluation seeds: the evaluations here use {len(lists)} different seed lists (first seeds "
                f"{', '.join(map(str, bases))}); comparisons use only the seeds both sides share. ")
    return text + EAI_VC_SEEDS


def notes_text(sec: Section, shown: int = 5) -> str:
    if not sec.notes:
        return ""
    more = f" (and {len(sec.notes) - shown} more)" if len(sec.notes) > shown else ""
    return (f"Per-episode outcomes missing for {len(sec.notes)} evaluation(s), left out of paired comparisons "
            f"(success counts used where known): " + "; ".join(sec.notes[:shown]) + more + ".")


def section_parts(sec: Section) -> list[Table | Paragraph]:
    """Tables and sentences of one section, in reading order."""
    parts: list[Table | Paragraph] = [main_table(sec)]
    comp = comparison_table(sec)
    if comp is not None:
        parts.append(comp)
    parts += [Paragraph(t, "verdict") for t in (distinguish_text(sec, c) for c in CHECKPOINTS) if t]
    svc = spatial_vs_cls(sec)
    if svc is not None:
        parts.append(svc)
    parts.append(task_table(sec))
    parts.append(Paragraph(eval_seed_text(sec), "note"))
    if sec.notes:
        parts.append(Paragraph(notes_text(sec), "warn"))
    return parts


def section_tables(sec: Section) -> list[Table]:
    return [p for p in section_parts(sec) if isinstance(p, Table)]


def parts_markdown(parts: Sequence[Table | Paragraph]) -> list[str]:
    return [p.markdown() if isinstance(p, Table) else p.text + "\n" for p in parts]


def deviation_text(sec: Section) -> str:
    if not sec.deviations:
        return "Protocol: CortexBench (demos, epochs, evaluation episodes and horizons as specified)."
    return ("REDUCED PROTOCOL — these are not CortexBench numbers. Differences: " + "; ".join(sec.deviations) + ".")


def score_points(sec: Section) -> list[dict]:
    """Points of the score-vs-GFLOPs plot: overall last and best score per encoder/head."""
    pts = []
    for enc, head in sec.ranked():
        last, best = sec.score((enc, head), "last"), sec.score((enc, head), "best")
        if not (math.isnan(last) or math.isnan(best)):
            pts.append({"encoder": enc, "head": head, "head_input": sec.head_input.get(head),
                        "gflops": sec.compute[enc]["gflops"], "last": last, "best": best})
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

    def add(self, part: Table | Paragraph) -> None:
        """A table or a paragraph."""
        if isinstance(part, Table):
            self.table(part)
        else:
            self.paragraph(part.text, part.cls)

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
        for part in section_parts(sec):
            page.add(part)
        if sec.title in plots:
            page.image(plots[sec.title], f"Score vs GFLOPs per image: {sec.title}")


def empty_message(results: str) -> str:
    return (f"The results store {results} is empty: no evaluations yet. Run a sweep first "
            "(`theia-eval sweep sweep=NAME`), then `theia-eval leaderboard results=PATH`.")
