"""Synthetic result rows for the store, leaderboard and report tests."""
from __future__ import annotations

import itertools

from theia_eval.analysis.store import COLUMNS


def make_row(encoder: str = "enc", task: str = "metaworld/a", head: str = "conv", seed: int = 100,
             checkpoint: str = "last", score: float = 50.0, **extra) -> dict:
    """A complete store row; config_hash is derived from the grid point unless given."""
    suite = extra.pop("suite", task.split("/")[0])
    row = {c: None for c in COLUMNS}
    row.update(config_hash=extra.pop("config_hash", f"{encoder}|{task}|{head}|{seed}"), checkpoint=checkpoint,
               sweep="test", encoder=encoder, encoder_name=encoder, suite=suite, task=task, head=head,
               head_input="summary" if head == "mlp" else "tokens", seed=seed, epoch=10, metric="success",
               score=score, score_lo=max(0.0, score - 10), score_hi=min(100.0, score + 10), success_rate=score / 100,
               episodes=25, params_m=1.0, gflops=2.0, ms_per_img=3.0, protocol="cortexbench", deviations="",
               recorded_at="2026-01-01T00:00:00+00:00")
    row.update(extra)
    return row


def grid_rows() -> list[dict]:
    """2 encoders x (metaworld: 2 tasks, dmc: 1, adroit: 1) x 3 seeds x {last, best}, scores from a formula."""
    rows = []
    tasks = ["metaworld/a", "metaworld/b", "dmc/c", "adroit/d"]
    for e, (ti, task), seed, ckpt in itertools.product(("alpha", "beta"), enumerate(tasks), (100, 200, 300),
                                                       ("last", "best")):
        score = score_of(e, ti, seed, ckpt)
        rows.append(make_row(e, task, "conv", seed, ckpt, score))
    return rows


def score_of(encoder: str, task_index: int, seed: int, checkpoint: str) -> float:
    base = {"alpha": 40.0, "beta": 60.0}[encoder]
    return base + 10 * task_index + seed / 100 + (5.0 if checkpoint == "best" else 0.0)


def write_eval(run_dir, epoch: int, task: str, outcomes, base_seed: int = 1000, returns=None) -> None:
    """An eval/epoch_NNN.json as `train` writes it: one record per episode (seed base_seed + i)."""
    import json
    from pathlib import Path

    returns = returns if returns is not None else [100.0 * bool(o) for o in outcomes]
    per = [{"seed": base_seed + i, "success": bool(o), "return": float(r), "length": 10, "first_success_step": -1}
           for i, (o, r) in enumerate(zip(outcomes, returns))]
    k = sum(bool(o) for o in outcomes)
    info = {"task": task, "suite": task.split("/")[0], "config": {"episodes": len(per), "base_seed": base_seed},
            "per_episode": per, "aggregate": {"episodes": len(per), "successes": k, "success_rate": k / len(per)}}
    path = Path(run_dir) / "eval" / f"epoch_{epoch:03d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))


def episode_row(root, encoder: str, task: str, head: str, seed: int, checkpoint: str, outcomes, epoch: int = 10,
                **extra) -> dict:
    """A store row whose run directory (under root) holds the per-episode outcomes it summarizes."""
    run_dir = f"{root}/runs/{encoder}/{head}/{task.replace('/', '_')}/seed{seed}"
    write_eval(run_dir, epoch, task, outcomes, returns=extra.pop("returns", None))
    k, n = sum(bool(o) for o in outcomes), len(outcomes)
    score = extra.pop("score", 100.0 * k / n)
    return make_row(encoder, task, head, seed, checkpoint, score, run_dir=str(run_dir), epoch=epoch, episodes=n,
                    success_rate=k / n, config_hash=f"{encoder}|{task}|{head}|{seed}", **extra)


def outcomes(k: int, n: int = 25, rng=None) -> list[bool]:
    """k successes out of n, in a fixed order (shuffled by rng when given)."""
    out = [True] * k + [False] * (n - k)
    if rng is not None:
        rng.shuffle(out)
    return out
