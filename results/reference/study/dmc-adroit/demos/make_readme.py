"""Regenerate README.md of this folder from the *.info.txt summaries and collect.log (run from anywhere)."""
import re
from pathlib import Path

D = Path(__file__).resolve().parent
LINE = re.compile(r"^(\S+): (\d+) demos \((\d+) new, (\d+) failed seeds\) -> (\S+) \(.*, ([\d.]+) s\)$", re.M)
log = {}  # demo file -> (demos, new demos, failed seeds, seconds), summed over the collector's runs (resumed)
for m in LINE.finditer((D / "collect.log").read_text()):
    n, new, failed, secs = int(m.group(2)), int(m.group(3)), int(m.group(4)), float(m.group(6))
    prev = log.get(m.group(5))
    log[m.group(5)] = (n, new + (prev[1] if prev else 0), failed, secs + (prev[3] if prev else 0.0))
rows = {25: [], 100: []}
for f in sorted(D.glob("*.info.txt")):
    t = f.read_text()
    path, task = re.match(r"(\S+): (\S+) \((?:dmc|adroit)\)", t).groups()
    ret = re.search(r"return \(sum of rewards\) min/mean/max ([\d.\-]+)/([\d.\-]+)/([\d.\-]+)", t).groups()
    success = re.search(r"final-step success (\d+)%", t).group(1)
    n, new, failed, secs = log[path]
    whole = new == n  # every demo was made by a run that left its line (else earlier runs' seconds are missing)
    timing = (f"{secs:.0f} | {secs / (n + failed):.1f} | {secs / n:.1f}" if whole
              else f"{secs:.0f} for the last {new} demos | - | -")
    rows[100 if "/100demos-" in path else 25].append(
        f"| {task} | {n} | {failed} | {n / (n + failed):.0%} | {success}% | {ret[0]} | {ret[1]} | {timing} | "
        f"`{f.name}` |")
HEAD = ["| task | demos | failed expert seeds | expert success rate | demos' final-step success | return min | "
        "return mean | wall s (1 worker, loaded) | s per attempt | s per kept demo | summary |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
tables = {k: "\n".join(HEAD + v) for k, v in rows.items()}
text = f"""# Part 2 demos (issue 13): what regenerates them

Demo files are not committed (hundreds of MB each). Each is regenerated, bit for bit, by the part-2 sweep's demo
stage, or by hand with the sweep's recipe (`configs/sweep/offline-study-dmc-adroit.yaml`, `demos:`):

```bash
theia-eval demos task=TASK num_demos=25 out_dir=data/demos/25demos-fast256-crop224-419bca83 seed=54321 \\
    preset=fast resolution=256 crop=224 post_success_steps=null compression=gzip compression_level=1 \\
    valid_fraction=0.1 workers=1
theia-eval demos --info data/demos/25demos-fast256-crop224-419bca83/TASK.hdf5 > TASK.info.txt
```

The `*.info.txt` files are those summaries (expert and its settings, the seeds' outcome, lengths, success, the
return over every demo of the file, render settings); `collect.log` holds the collector's own lines (a resumed
collection has one line per run: its seconds are summed); this README's tables are generated from both by
`make_readme.py`. The experts: `theia_eval/envs/dmc/expert.py`, `theia_eval/envs/adroit/expert.py`, with the
issue-13 recipes (`benchmarks/RESULTS.md`, "Issue 13: ..."). Candidate j uses seed 54321 + j; a candidate below the
task's expert-level return (DMC: walker-stand 900, walker-walk 800, reacher-easy 900, cheetah-run 500, finger-spin
800) or failing the success rule (Adroit) is skipped and recorded as a failed seed, so the expert success rate is
demos / (demos + failed seeds) and a kept demo costs the attempts' seconds over the demos.

Collected on 2026-11-30 on the 2-core development VM (Intel Xeon, 2 cores, 23.5 GiB) with one demo worker while
the study's sweep jobs (and other collections) held both cores, so the seconds are upper bounds (quiet figures per
demo: `benchmarks/RESULTS.md`).

## The part-2 grid's demos: 25 per task (labelled reduced; the protocol's 100)

{tables[25]}

## The protocol's count for Adroit (issue 13, item 2): 100 per task

Same recipe with `num_demos=100 out_dir=data/demos/100demos-fast256-crop224`; files summarized as
`TASK-100.info.txt`. A task missing here was not finished when the table was generated. The pen collection was
stopped once (after 62 demos, to rewrite the files' expert record when the recorded settings changed form; the
demos themselves are unchanged) and resumed: the first run left no line in `collect.log`, so the table gives the
resumed run's seconds only and no per-attempt figure (the quiet cost of an attempt is in `benchmarks/RESULTS.md`).
The relocate collection ran over two sessions (the first was killed with its session; the collector resumes from
its per-seed parts), so it too has one line in `collect.log`, for the last run only, and no per-attempt figure.

{tables[100]}
"""
(D / "README.md").write_text(text)
print(text)
