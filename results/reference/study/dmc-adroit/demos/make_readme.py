"""Regenerate README.md of this folder from the *.info.txt summaries and collect.log (run from anywhere)."""
import re
from pathlib import Path
D = Path(__file__).resolve().parent
rows = []
log = {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in re.finditer(r"^(\S+): (\d+) demos \(\d+ new, (\d+) failed seeds\) -> .*, ([\d.]+) s\)$", (D/'collect.log').read_text(), re.M)}
for f in sorted(D.glob('*.info.txt')):
    t = f.read_text()
    task = re.search(r": (\S+) \((dmc|adroit)\)", t).group(1)
    ret = re.search(r"return \(sum of rewards\) min/mean/max ([\d.\-]+)/([\d.\-]+)/([\d.\-]+)", t).groups()
    n, failed, secs = log[task]
    rows.append(f"| {task} | {n} | {failed} | {ret[0]} | {ret[1]} | {float(secs):.0f} | {float(secs)/(int(n)+int(failed)):.1f} | `{f.name}` |")
table = "\n".join(["| task | demos | failed expert seeds | return min | return mean | wall s (1 worker, loaded) | s per attempt | summary |", "|---|---|---|---|---|---|---|---|"] + rows)
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
return over every demo of the file, render settings); `collect.log` holds the collector's own lines; this README's
table is generated from both by `make_readme.py`. The experts: `theia_eval/envs/dmc/expert.py` (walker-walk plans on a 5x timestep
since this collection; `benchmarks/RESULTS.md`, "Issue 13: cheaper planners"), `theia_eval/envs/adroit/expert.py`.
Candidate j uses seed 54321 + j; a candidate below the task's expert-level return (DMC) or failing the success rule
(Adroit) is skipped and recorded as a failed seed.

Collected on 2026-11-30 on the 2-core development VM (Intel Xeon, 2 cores, 23.5 GiB) with one
demo worker while the study's two Meta-World sweep jobs held both cores, so the seconds are upper bounds (quiet
figures per demo: `benchmarks/RESULTS.md`). 25 per task (the part-2 grid's count, labelled reduced; the
protocol's 100 wait for walker-stand and cheetah-run experts within the issue's 20 s).

{table}
"""
(D/'README.md').write_text(text)
print(table)
