"""The CortexBench MuJoCo protocol as data, and how a cell's settings deviate from it.

A cell whose settings differ from the protocol in anything that changes its score (fewer demos,
epochs or evaluation episodes, a shorter evaluation horizon, another render look ...) is recorded
with protocol "reduced" and the list of deviations, which every leaderboard prints next to its
numbers: a reduced protocol is never passed off as CortexBench numbers.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

CORTEXBENCH = "cortexbench"
REDUCED = "reduced"

# cell setting (dotted path into the cell config) -> the protocol's value (shared/spec/cortexbench.md)
BC_PROTOCOL: dict[str, Any] = {
    "bc.epochs": 100, "bc.batch_size": 256, "bc.lr": 1e-3, "bc.weight_decay": 0.0, "bc.eval_every": 5,
    "bc.history": 3, "bc.fusion": "flare", "bc.action_norm": "none", "bc.proprio_norm": "none",
    "bc.head_config": {}, "eval.horizon": None, "eval.preset": None, "eval.resolution": None, "eval.crop": "demos",
    "split": None, "force": False,
}
DEMO_PROTOCOL: dict[str, Any] = {
    "resolution": 256, "crop": 224, "post_success_steps": None, "preset": "full",
}
NOTES = {
    "demos.preset": "the model's own lighting",
    "demos.post_success_steps": "full-horizon demos",
    "eval.horizon": "the task's horizon",
    "bc.head_config": "the default head",
    "eval.preset": "the demos' render settings", "eval.resolution": "the demos' render settings",
    "eval.crop": "the demos' render settings",
    "split": "all demos",
}


def _get(cfg: Mapping, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
    return a == b


def _line(key: str, found: Any, wanted: Any) -> str:
    return f"{key}={found} (CortexBench: {NOTES.get(key, wanted)})"


def suite_protocol(family: str) -> dict[str, int]:
    """Demos per task and evaluation episodes of the CortexBench suite of a task family (its registration
    names the suite; empty for a family that is not part of CortexBench)."""
    from theia_eval.envs.family import FAMILIES

    suite = FAMILIES[family].protocol_suite() if family in FAMILIES else None
    return {"num_demos": suite.demos_per_task, "episodes": suite.eval_episodes} if suite else {}


def deviations(cell: Mapping, demos: Mapping, family: str,
               suite_facts: Callable[[str], dict[str, int]] = suite_protocol) -> list[str]:
    """Every way a cell's train config and demo recipe differ from the protocol (empty: it is the protocol)."""
    out = [_line(k, _get(cell, k), v) for k, v in BC_PROTOCOL.items() if not _same(_get(cell, k), v)]
    out += [_line(f"demos.{k}", demos.get(k), v) for k, v in DEMO_PROTOCOL.items() if not _same(demos.get(k), v)]
    facts = suite_facts(family)
    if not facts:
        out.append(f"task family {family} is not part of CortexBench")
        return out
    if int(demos.get("num_demos", 0)) != facts["num_demos"]:
        out.append(_line("demos.num_demos", demos.get("num_demos"), facts["num_demos"]))
    if int(_get(cell, "eval.episodes") or 0) != facts["episodes"]:
        out.append(_line("eval.episodes", _get(cell, "eval.episodes"), facts["episodes"]))
    return out


def protocol_label(devs: list[str]) -> str:
    return REDUCED if devs else CORTEXBENCH
