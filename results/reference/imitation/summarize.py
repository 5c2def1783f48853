"""Table of the issue-4 runs: per task/encoder/head, each evaluation's success with Wilson CI."""
import json, sys
from pathlib import Path
root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/reference/imitation/runs")
print("| task | encoder + head | epoch | success (Wilson 95%) | reached success | mean first-success step | train loss |")
print("|---|---|---|---|---|---|---|")
for run in sorted(root.glob("*/*/*/seed*")):
    task, enc, head = run.parts[-4:-1]
    hist = {}
    if (run / "metrics.json").exists():
        hist = {r["epoch"]: r for r in json.loads((run / "metrics.json").read_text())["history"]}
    for ev in sorted((run / "eval").glob("epoch_*.json")):
        info = json.loads(ev.read_text())
        a = info["aggregate"]
        ep = int(ev.stem.split("_")[1])
        reached = sum(e["first_success_step"] >= 0 for e in info["per_episode"])
        firsts = [e["first_success_step"] for e in info["per_episode"] if e["first_success_step"] >= 0]
        lo, hi = a["success_ci95"]
        loss = hist.get(ep, {}).get("train_loss", float("nan"))
        print(f"| {task.replace('metaworld_', '')} | {enc} + {head} | {ep} | {a['successes']}/{a['episodes']} = "
              f"{100 * a['success_rate']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}%) | {reached}/{a['episodes']} | "
              f"{sum(firsts) / max(len(firsts), 1):.0f} | {loss:.4f} |")
