"""Claims of a study, tested on paired episodes: per-task differences, a pooled verdict, and missing cells.

A claim compares side a with side b, each an (encoder, head) entry of the leaderboard:

    claims:
      - id: spatial-vs-summary
        statement: spatial tokens beat the summary vector of the same encoder
        kind: better              # better: a > b | not_worse: a > b - margin | matches: |a - b| < margin
        a: {head: conv}
        b: {head: mlp}
        per: encoder              # one comparison per encoder (fills the sides' missing encoder)
        encoders: [efficientnet-lite0, theia-offline]   # optional; default: encoders with both sides
      - id: student-vs-teacher
        kind: matches
        margin: 10                # score points (0-100)
        a: {encoder: theia-offline, head: conv}
        b: {encoder: efficientnet-lite0, head: conv}

For each comparison, section and checkpoint: per task, the mean per-episode difference a - b over the
episodes both sides have (same task, training seed and evaluation seed) with its 95 % bootstrap interval,
the paired episode count and an exact sign test; pooled over the tasks both sides have, the same with the
leaderboard's resampling (uncertainty.Resampling), and a verdict in words:
- supported: the pooled 95 % interval lies where the claim says (better: above 0; not_worse: above -margin;
  matches: inside (-margin, margin));
- not supported (the opposite is significant): it lies on the other side (better: below 0; not_worse:
  below -margin; matches: wholly beyond -margin or margin);
- inconclusive at this n: otherwise, or when no episodes pair.
Tasks without both sides, training seeds on one side only and evaluations without per-episode outcomes
are listed as missing; nothing raises on partial results.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from theia_eval.analysis.leaderboard import CHECKPOINTS, Section
from theia_eval.analysis.tables import Table, fmt
from theia_eval.analysis.uncertainty import Paired, Resampling, paired, point
from theia_eval.errors import InputError

KINDS = ("better", "not_worse", "matches")
SIDE_KEYS = ("encoder", "head")
CLAIM_KEYS = {"id", "statement", "kind", "margin", "a", "b", "per", "encoders", "tasks", "checkpoints"}
SUPPORTED, OPPOSITE, INCONCLUSIVE = "supported", "not supported (the opposite is significant)", \
    "inconclusive at this n"
CLAIMS_FORMAT = 1


@dataclass(frozen=True)
class Claim:
    """One claim of a study: a compared with b, how (kind, margin), per encoder or once."""

    id: str
    statement: str
    kind: str
    a: dict
    b: dict
    margin: float = 0.0
    per: str | None = None
    encoders: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    checkpoints: tuple[str, ...] = CHECKPOINTS

    def expectation(self) -> str:
        """What 'supported' means for this claim, in words."""
        return {"better": "a − b > 0",
                "not_worse": f"a − b > −{self.margin:g} points",
                "matches": f"|a − b| < {self.margin:g} points"}[self.kind]


def parse_claim(item) -> Claim:
    """A mapping from a claims block -> Claim (every key checked)."""
    from theia_eval.config import to_plain

    item = to_plain(item)
    if not isinstance(item, dict) or not {"id", "kind", "a", "b"} <= set(item) or set(item) - CLAIM_KEYS:
        optional = sorted(CLAIM_KEYS - {"id", "kind", "a", "b"})
        raise InputError(f"bad claim {item!r}: give id, kind, a, b (optional: {', '.join(optional)}).")
    cid = str(item["id"])
    if item["kind"] not in KINDS:
        raise InputError(f"claim '{cid}': kind must be one of {list(KINDS)}, got '{item['kind']}'.")
    margin = float(item.get("margin") or 0.0)
    if item["kind"] != "better" and margin <= 0:
        raise InputError(f"claim '{cid}': kind {item['kind']} needs margin: > 0 (score points).")
    sides = []
    for name in ("a", "b"):
        side = item[name]
        if not isinstance(side, dict) or not side or set(side) - set(SIDE_KEYS):
            raise InputError(f"claim '{cid}': {name} must be a mapping of {list(SIDE_KEYS)}, got {side!r}.")
        sides.append({k: str(v) for k, v in side.items()})
    per = item.get("per")
    if per not in (None, "encoder"):
        raise InputError(f"claim '{cid}': per may only be 'encoder', got {per!r}.")
    for name, side in zip("ab", sides):
        if "head" not in side or (per is None and "encoder" not in side):
            raise InputError(f"claim '{cid}': side {name} needs a head and an encoder (or per: encoder), got {side}.")
    ckpts = tuple(item.get("checkpoints") or CHECKPOINTS)
    if set(ckpts) - set(CHECKPOINTS):
        raise InputError(f"claim '{cid}': checkpoints must be among {list(CHECKPOINTS)}, got {list(ckpts)}.")
    def tup(v):
        return None if v is None else tuple(str(x) for x in v)
    return Claim(cid, str(item.get("statement") or cid), item["kind"], sides[0], sides[1], margin, per,
                 tup(item.get("encoders")), tup(item.get("tasks")), ckpts)


def claims_dir() -> Path:
    from theia_eval.config import config_dir

    return config_dir() / "claim_sets"


def load_claims(spec) -> list[Claim]:
    """Claims from an inline list, a YAML file (a list or a mapping with `claims:`) or a name in configs/claim_sets/."""
    from omegaconf import OmegaConf

    from theia_eval.config import to_plain

    spec = to_plain(spec)
    if not spec:
        return []
    if isinstance(spec, str):
        path = Path(spec)
        if not path.is_file():
            path = claims_dir() / f"{spec}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in claims_dir().glob("*.yaml"))
            raise InputError(f"claims '{spec}' is neither a file nor a name in configs/claim_sets/ (known: "
                             f"{', '.join(known) or 'none'}); pass claims=PATH.yaml or claims=NAME.")
        spec = to_plain(OmegaConf.load(path))
        if isinstance(spec, dict):
            spec = spec.get("claims") or []
    if not isinstance(spec, list):
        raise InputError(f"claims must be a list of claims, got {type(spec).__name__}.")
    claims = [parse_claim(c) for c in spec]
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise InputError(f"claim ids must be unique, got {ids}.")
    return claims


def check_claim_names(claims: Sequence[Claim], sections: Sequence[Section]) -> None:
    """A claim naming an encoder, head or task that is neither in the results nor registered (a typo such as
    'theia-ofline') would be reported as 'inconclusive (n = 0)': refuse it instead. A registered name without
    rows yet stays allowed (the claim reports it as missing)."""
    from theia_eval.encoders.registry import list_encoders
    from theia_eval.envs.tasks import list_tasks
    from theia_eval.policies.heads import list_heads

    kinds = {"encoder": {e for sec in sections for e in sec.encoders} | set(list_encoders()),
             "head": {h for sec in sections for h in sec.heads} | set(list_heads()),
             "task": {t for sec in sections for t in sec.tasks} | set(list_tasks())}
    for claim in claims:
        named = [("encoder", side.get("encoder")) for side in (claim.a, claim.b)]
        named += [("head", side.get("head")) for side in (claim.a, claim.b)]
        named += [("encoder", e) for e in claim.encoders or ()] + [("task", t) for t in claim.tasks or ()]
        for kind, name in named:
            if name is not None and name not in kinds[kind]:
                close = difflib.get_close_matches(name, sorted(kinds[kind]), n=3, cutoff=0.6)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise InputError(f"claim '{claim.id}' names {kind} '{name}', which is neither in the results nor a "
                                 f"registered {kind} name.{hint} Fix the claim set.")


# ------------------------------------------------------------------------------------------- evaluation
@dataclass
class Comparison:
    """One instance of a claim: two entries (encoder, head)."""

    label: str
    a: tuple[str, str]
    b: tuple[str, str]
    results: list[dict] = field(default_factory=list)  # per section


def instances(claim: Claim, sections: Sequence[Section]) -> list[Comparison]:
    """The comparisons a claim asks for (per encoder, or one)."""
    def side(s, enc):
        return (s.get("encoder", enc), s["head"])
    if claim.per is None:
        a, b = side(claim.a, None), side(claim.b, None)
        return [Comparison(f"{a[0]} ({a[1]}) vs {b[0]} ({b[1]})", a, b)]
    if claim.encoders is not None:
        encoders = list(claim.encoders)
    else:
        have = {(e, h) for sec in sections for e, h, _ in sec.grid}
        seen = sorted({e for sec in sections for e in sec.encoders})
        encoders = [e for e in seen if side(claim.a, e) in have and side(claim.b, e) in have]
    out = []
    for enc in encoders:
        a, b = side(claim.a, enc), side(claim.b, enc)
        if a == b:
            continue
        out.append(Comparison(f"{a[0]} ({a[1]}) vs {b[0]} ({b[1]})" if a[0] != b[0] else f"{enc}: {a[1]} vs {b[1]}",
                              a, b))
    return out


def verdict(claim: Claim, p: Paired) -> str:
    if not p.pairs:
        return INCONCLUSIVE
    m = claim.margin
    if claim.kind == "better":
        yes, no = p.lo > 0, p.hi < 0
    elif claim.kind == "not_worse":
        yes, no = p.lo > -m, p.hi < -m
    else:
        yes, no = (p.lo > -m and p.hi < m), (p.hi < -m or p.lo > m)
    return SUPPORTED if yes else OPPOSITE if no else INCONCLUSIVE


def numbers(p: Paired) -> dict:
    return {"diff": p.diff, "lo": p.lo, "hi": p.hi, "pairs": p.pairs, "a_better": p.a_better,
            "b_better": p.b_better, "p": p.p, "tasks": p.tasks}


def entry_text(e: tuple[str, str]) -> str:
    return f"{e[0]} ({e[1]})"


def task_rows(sec: Section, comp: Comparison, ckpt: str, tasks: Sequence[str], r: Resampling):
    """Per-task numbers, the tasks that pair, and what is missing."""
    rows, paired_tasks, missing = [], [], []
    def seeds(e, t):
        return sorted(s for _, task, s in sec.grid.get((*e, ckpt), []) if task == t)
    one_task = Resampling(r.resamples, r.seed, tuple(lv for lv in r.levels if lv != "tasks"))
    for task in tasks:
        sa, sb = seeds(comp.a, task), seeds(comp.b, task)
        why = None
        if not sa or not sb:
            lacking = " and ".join(entry_text(e) for e, s in ((comp.a, sa), (comp.b, sb)) if not s)
            why = f"no {ckpt}-checkpoint evaluation of {lacking}"
        elif not set(sa) & set(sb):
            why = (f"no training seed on both sides ({entry_text(comp.a)}: {', '.join(map(str, sa))}; "
                   f"{entry_text(comp.b)}: {', '.join(map(str, sb))})")
        else:
            p = paired(sec.diff_forest(comp.a, comp.b, ckpt, [task]), one_task)
            if not p.pairs:
                why = "per-episode outcomes missing (no paired episodes)"
            only = sorted(set(sa) ^ set(sb))
            if only and p.pairs:
                missing.append(f"{task}: training seed(s) {', '.join(map(str, only))} on one side only (not paired)")
        if why is not None:
            missing.append(f"{task}: {why}")
            rows.append({"task": task, "missing": why})
            continue
        paired_tasks.append(task)
        rows.append({"task": task, "a": task_text(sec, comp.a, ckpt, task), "b": task_text(sec, comp.b, ckpt, task),
                     **numbers(p), "excludes_0": p.distinguishable, "missing": None})
    return rows, paired_tasks, missing


def task_text(sec: Section, entry: tuple[str, str], ckpt: str, task: str) -> str:
    ts = sec.task_scores.get((*entry, ckpt, task))
    if ts is not None:
        return ts.format()
    st = sec.task_stats.get((*entry, ckpt, task))
    return st.format() if st is not None else "-"


def evaluate_in_section(claim: Claim, comp: Comparison, sec: Section) -> dict:
    """The numbers, verdict and missing cells of one comparison in one section, per checkpoint."""
    tasks = list(claim.tasks) if claim.tasks is not None else sec.tasks
    out = {"section": sec.title, "checkpoints": {}}
    for ckpt in claim.checkpoints:
        rows, paired_tasks, missing = task_rows(sec, comp, ckpt, tasks, sec.resampling)
        p = paired(sec.diff_forest(comp.a, comp.b, ckpt, paired_tasks), sec.resampling) if paired_tasks \
            else paired({}, sec.resampling)
        means = [point(sec.forest(e, ckpt, tasks=paired_tasks)[0]) if paired_tasks else math.nan
                 for e in (comp.a, comp.b)]
        v = verdict(claim, p)
        out["checkpoints"][ckpt] = {"tasks": rows, "pooled": {**numbers(p), "a_mean": means[0], "b_mean": means[1]},
                                    "verdict": v, "missing": missing,
                                    "sentence": sentence(claim, comp, ckpt, p, v, missing, len(tasks))}
    return out


def sentence(claim: Claim, comp: Comparison, ckpt: str, p: Paired, v: str, missing: list[str], expected: int) -> str:
    """One comparison at one checkpoint, in words, with its n."""
    head = f"{comp.label}, {ckpt} checkpoint: "
    if not p.pairs:
        text = head + f"no paired episodes yet, so {v}."
    else:
        text = (head + f"a − b = {p.diff:+.1f} points, 95% CI [{p.lo:+.1f}, {p.hi:+.1f}], pooled over {p.tasks} of "
                f"{expected} task(s) and n = {p.pairs} paired episodes (a better in {p.a_better}, b better in "
                f"{p.b_better}; sign test p = {p.p:.3g}). Claim ({claim.expectation()}): {v}.")
    if missing:
        text += " Missing: " + "; ".join(missing) + "."
    return text


def evaluate_claims(claims: Sequence[Claim], sections: Sequence[Section]) -> list[dict]:
    """Every claim on every section where one of its sides has rows; JSON-able results."""
    out = []
    for claim in claims:
        comps = instances(claim, sections)
        items = []
        for comp in comps:
            have = {(e, h) for s in sections for e, h, _ in s.grid}
            secs = [s for s in sections if any(e in {(x, y) for x, y, _ in s.grid} for e in (comp.a, comp.b))]
            results = [evaluate_in_section(claim, comp, s) for s in secs]
            lacking = " and ".join(entry_text(e) for e in (comp.a, comp.b) if e not in have)
            items.append({"label": comp.label, "a": entry_text(comp.a), "b": entry_text(comp.b), "results": results,
                          "absent": None if results else f"no results yet for {lacking}"})
        out.append({"id": claim.id, "statement": claim.statement, "kind": claim.kind, "margin": claim.margin,
                    "expectation": claim.expectation(), "a": claim.a, "b": claim.b,
                    "per": claim.per, "comparisons": items, "summary": summary(claim, items)})
    return out


def summary(claim: Claim, items: list[dict]) -> str:
    """The claim's verdicts in one paragraph (last checkpoint first: best is selected on the same episodes)."""
    if not items:
        return (f"Claim {claim.id} ({claim.statement}): no comparison to make yet: no encoder has results for both "
                f"side a {claim.a} and side b {claim.b}.")
    parts = []
    for ckpt in claim.checkpoints:
        verdicts = []
        for item in items:
            if item["absent"]:
                verdicts.append(f"{item['label']}: {INCONCLUSIVE} ({item['absent']})")
            for res in item["results"]:
                c = res["checkpoints"][ckpt]
                n = c["pooled"]["pairs"]
                verdicts.append(f"{item['label']}: {c['verdict']} (n = {n} paired episodes"
                                + (f", {c['pooled']['tasks']} task(s)" if n else "") + ")")
        parts.append(f"{ckpt} checkpoint: " + "; ".join(verdicts))
    return f"Claim {claim.id} ({claim.statement}; supported means {claim.expectation()}): " + ". ".join(parts) + "."


# ------------------------------------------------------------------------------------------- rendering
def claim_table(claim: dict, resampling: str, per_task: str) -> Table:
    """One claim's numbers: per comparison, checkpoint and task, then the pooled row with the verdict."""
    t = Table(f"Claim {claim['id']}: {claim['statement']}",
              ["comparison", "section", "checkpoint", "task", "a", "b", "a − b [95% CI]", "paired episodes",
               "a>b / b>a", "sign test p", "verdict"],
              note=(f"a − b: mean per-episode difference over the episodes both sides have (same task, training "
                    f"seed and evaluation seed). Per task: {per_task}; pooled over tasks: {resampling}. Supported "
                    f"means {claim['expectation']}; a task row says whether its interval excludes 0. a, b per task: "
                    "successes k/n [Wilson 95%] over all seeds; pooled: mean score on the paired tasks."))
    for item in claim["comparisons"]:
        if item["absent"]:
            t.rows.append([item["label"], "-", "-", "-", "-", "-", "-", "0", "-", "-",
                           f"{INCONCLUSIVE}: {item['absent']}"])
        for res in item["results"]:
            short = res["section"].split(" (")[0]
            for ckpt, c in res["checkpoints"].items():
                for row in c["tasks"]:
                    if row["missing"]:
                        t.rows.append([item["label"], short, ckpt, row["task"], "-", "-", "-", "0", "-", "-",
                                       f"missing: {row['missing']}"])
                        continue
                    t.rows.append([item["label"], short, ckpt, row["task"], row["a"], row["b"], diff_text(row),
                                   str(row["pairs"]), f"{row['a_better']} / {row['b_better']}", f"{row['p']:.3g}",
                                   "interval excludes 0" if row["excludes_0"] else "interval contains 0"])
                pool = c["pooled"]
                t.rows.append([item["label"], short, ckpt, f"pooled ({pool['tasks']} tasks)", fmt(pool["a_mean"], 1),
                               fmt(pool["b_mean"], 1), diff_text(pool) if pool["pairs"] else "-", str(pool["pairs"]),
                               f"{pool['a_better']} / {pool['b_better']}", f"{pool['p']:.3g}", c["verdict"]])
    return t


def diff_text(n: dict) -> str:
    return f"{n['diff']:+.1f} [{n['lo']:+.1f}, {n['hi']:+.1f}]"


def claims_parts(report: dict) -> list:
    """Tables and sentences of the claims section (from claims.json)."""
    from theia_eval.analysis.report import Paragraph

    parts = [Paragraph(f"Each claim is tested on paired episodes; verdicts: '{SUPPORTED}', '{OPPOSITE}', "
                       f"'{INCONCLUSIVE}'. The last checkpoint is the primary verdict; the best checkpoint is "
                       "selected on the same evaluation episodes, so its verdicts are optimistic.", "note")]
    for claim in report["claims"]:
        parts.append(Paragraph(claim["summary"], "verdict"))
        for item in claim["comparisons"]:
            for res in item["results"]:
                for c in res["checkpoints"].values():
                    parts.append(Paragraph(c["sentence"]))
        parts.append(claim_table(claim, report["resampling"], report["resampling_per_task"]))
    return parts


def claims_markdown(report: dict) -> str:
    from theia_eval.analysis.report import parts_markdown

    return "\n".join(["## Claims", "", *parts_markdown(claims_parts(report))])


def claims_report(claims: Sequence[Claim], sections: Sequence[Section], meta: dict) -> dict:
    """claims.json: the evaluated claims with provenance and how intervals were drawn."""
    r = sections[0].resampling if sections else Resampling()
    per_task = Resampling(r.resamples, r.seed, tuple(lv for lv in r.levels if lv != "tasks"))
    return json_safe({"format": CLAIMS_FORMAT, "results": meta.get("results"), "generated": meta.get("generated"),
                      "code_version": meta.get("code_version"), "resampling": r.describe(),
                      "resampling_per_task": per_task.describe(), "claims": evaluate_claims(claims, sections)})


def claims_rows(report: dict) -> list[dict]:
    """claims.csv: one row per claim, comparison, section, checkpoint and task (and the pooled row)."""
    out = []
    for claim in report["claims"]:
        for item in claim["comparisons"]:
            for res in item["results"]:
                for ckpt, c in res["checkpoints"].items():
                    base = {"claim": claim["id"], "kind": claim["kind"], "margin": claim["margin"],
                            "comparison": item["label"], "a": item["a"], "b": item["b"], "section": res["section"],
                            "checkpoint": ckpt}
                    for row in c["tasks"]:
                        out.append({**base, **{k: v for k, v in row.items() if k not in ("a", "b")},
                                    "a_score": row.get("a"), "b_score": row.get("b"), "verdict": None})
                    out.append({**base, "task": "pooled", **c["pooled"], "verdict": c["verdict"],
                                "missing": "; ".join(c["missing"]) or None})
    return out


def json_safe(obj):
    """Plain JSON: NaN -> None, numpy scalars -> Python numbers, tuples -> lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    return obj
