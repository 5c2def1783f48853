"""Table of the issue-4 runs: per task/encoder/head, each evaluation's success with its Wilson CI.

Rows come from eval/epoch_NNN.json (the evaluations during training) and eval_info_<checkpoint>.json
(re-evaluations with `theia-eval evaluate run=DIR checkpoint=best|last`, marked "re-evaluated")."""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/issue4b/runs")
print("| task | encoder + head | epoch | success (Wilson 95%) | reached success | mean first-success step | train loss |")
print("|---|---|---|---|---|---|---|")
for run in sorted(root.glob("*/*/*/seed*")):
    task, enc, head = run.parts[-4:-1]
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    hist = {r["epoch"]: r for r in metrics.get("history", [])}
    evals = [(int(p.stem.split("_")[1]), "", p) for p in sorted((run / "eval").glob("epoch_*.json"))]
    for p in sorted(run.glob("eval_info_*.json")):
        ckpt = p.stem.split("_")[-1]
        evals.append((metrics[f"{ckpt}_checkpoint"]["epoch"], f" ({ckpt}.pt re-evaluated)", p))
    for ep, note, path in sorted(evals, key=lambda e: (e[0], e[1])):
        info = json.loads(path.read_text())
        a = info["aggregate"]
        reached = sum(e["first_success_step"] >= 0 for e in info["per_episode"])
        firsts = [e["first_success_step"] for e in info["per_episode"] if e["first_success_step"] >= 0]
        lo, hi = a["success_ci95"]
        loss = hist.get(ep, {}).get("train_loss", float("nan"))
        print(f"| {task.replace('metaworld_', '')} | {enc} + {head} | {ep}{note} | {a['successes']}/{a['episodes']} = "
              f"{100 * a['success_rate']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}%) | {reached}/{a['episodes']} | "
              f"{sum(firsts) / max(len(firsts), 1):.0f} | {loss:.4f} |")
