"""DAgger: distil a DMC task's expert into a state-based MLP (`policy.py`); the work of `theia-eval experts`.

Round r (0-based) rolls out `episodes_per_round` training episodes. At every step the labeller (the task's
default expert: the sampling MPC planner, or reacher-easy's analytic controller) plans from the visited state,
which gives that state's label, and the action executed is the labeller's with probability
beta = beta_decay ** r, else the policy of round r-1 (round 0: the labeller alone). The planner plans at every
step either way, so its warm start stays intact. The policy is then trained (warm start from round r-1, Adam,
mean squared error, `train_steps` steps with the learning rate decayed to a tenth; input statistics fixed from
round 0's states) on the labels of all rounds so far and
evaluated alone on full episodes of the evaluation seeds (by default the demo seeds 54321 + i): mean and
minimum return. The best round by mean evaluation return (`select=best`, or the last one) is published as
`<out_dir>/<task>.safetensors`, which `theia-eval demos expert=distilled expert_weights=<out_dir>` reads.

Files and resume (`<out_dir>/<task>/`): config.json holds the settings that shape the data and the training
(a rerun with other ones is refused); round_RRR/episode_EEE.npz holds one labelled episode (written
atomically), round_RRR/policy.safetensors the round's weights, round_RRR/summary.json the round's figures
(written last: the round is done); report.json the whole run. A rerun redoes only what is missing (a killed run
loses at most the episode in progress); raising `rounds` continues a finished run; evaluation settings may
change between runs (rounds are re-evaluated on the new seeds). Every draw is seeded by (seed, round, episode)
and each round starts from files only, so a resumed run gives the weights of an uninterrupted one.
Training episodes use seeds >= 2**31, never a demo or evaluation seed.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from theia_eval.envs.dmc.policy import FORMAT, StatePolicy, features_of, load_policy, save_policy
from theia_eval.envs.dmc.sim import DMC_TASKS, DMCTask
from theia_eval.errors import InputError
from theia_eval.hashing import stable_hash
from theia_eval.io import atomic_write_json, read_json, remove_stale_temp_files, try_lock
from theia_eval.settings import ExpertsConfig

_DEFAULTS = ExpertsConfig()
TRAIN_SEED_BASE = 2 ** 31  # training episodes use seeds in [2**31, 2**32): never a demo or evaluation seed


@dataclass(frozen=True)
class DaggerConfig:
    """One DAgger run (the keys of configs/experts.yaml)."""

    task: str  # e.g. "dmc/walker-stand"
    out_dir: str = _DEFAULTS.out_dir
    rounds: int = _DEFAULTS.rounds
    episodes_per_round: int = _DEFAULTS.episodes_per_round
    episode_steps: int | None = _DEFAULTS.episode_steps  # policy steps per training episode; None: the horizon
    beta_decay: float = _DEFAULTS.beta_decay
    hidden: tuple[int, ...] = tuple(_DEFAULTS.hidden)
    train_steps: int = _DEFAULTS.train_steps  # Adam steps per round (cosine decay of lr to lr / 10)
    batch_size: int = _DEFAULTS.batch_size
    lr: float = _DEFAULTS.lr
    seed: int = _DEFAULTS.seed
    planner: Mapping[str, object] = field(default_factory=dict)  # MPCConfig overrides of the labeller
    eval_episodes: int = _DEFAULTS.eval_episodes
    eval_seed: int = _DEFAULTS.eval_seed
    select: str = _DEFAULTS.select
    time_demo: bool = _DEFAULTS.time_demo
    threads: int = _DEFAULTS.threads
    progress: bool = _DEFAULTS.progress

    def __post_init__(self) -> None:
        counts = {"rounds": self.rounds, "episodes_per_round": self.episodes_per_round, "train_steps": self.train_steps,
                  "batch_size": self.batch_size, "eval_episodes": self.eval_episodes, "threads": self.threads}
        bad = {k: v for k, v in counts.items() if not isinstance(v, int) or v < 1}
        if bad or not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise InputError(f"DAgger counts and hidden sizes must be >= 1, got {bad or {'hidden': self.hidden}}")
        if self.episode_steps is not None and int(self.episode_steps) < 1:
            raise InputError(f"episode_steps must be >= 1 or null (the task's horizon), got {self.episode_steps}")
        if self.episode_steps is not None and int(self.episode_steps) > self.dmc.horizon:
            raise InputError(f"episode_steps={self.episode_steps} is longer than a {self.task} episode "
                             f"({self.dmc.horizon} policy steps: 1000 simulator steps, action repeat "
                             f"{self.dmc.action_repeat}), which demos and evaluations never reach; use "
                             f"episode_steps <= {self.dmc.horizon}, or null for the whole episode")
        if not 0.0 <= float(self.beta_decay) <= 1.0 or not float(self.lr) > 0:
            raise InputError(f"beta_decay must lie in [0, 1] and lr be positive, got {self.beta_decay}, {self.lr}")
        if self.select not in ("best", "last"):
            raise InputError(f"select must be best or last, got {self.select!r}")

    @property
    def dmc(self) -> DMCTask:
        """The DMC facts of the task (refusing tasks of other families)."""
        family, _, name = str(self.task).partition("/")
        if family != "dmc" or name not in DMC_TASKS:
            raise InputError(f"distilled experts are trained for DMC tasks only ({', '.join(f'dmc/{t}' for t in DMC_TASKS)}); "
                             f"got task={self.task!r}")
        return DMC_TASKS[name]

    def beta(self, round_index: int) -> float:
        """Probability that the labeller's action is executed in a round."""
        return float(self.beta_decay) ** round_index


# ------------------------------------------------------------------------------------------- helpers
def labeller(task: DMCTask, planner: Mapping[str, object]):
    """The task's default expert with the labelling settings."""
    from theia_eval.envs.dmc.expert import make_expert

    return make_expert(task, **dict(planner))


def labeller_source(task: DMCTask, planner: Mapping[str, object]) -> str:
    from theia_eval.envs.dmc.expert import expert_source

    return expert_source(task, **dict(planner))


def identity(cfg: DaggerConfig) -> dict:
    """The settings that shape the labelled data and the weights (a resumed run must match them)."""
    task = cfg.dmc
    return {"format": FORMAT, "task": cfg.task, "labeller": labeller_source(task, cfg.planner),
            "features": asdict(features_of(task)), "episodes_per_round": cfg.episodes_per_round,
            "episode_steps": cfg.episode_steps, "beta_decay": float(cfg.beta_decay),
            "hidden": [int(h) for h in cfg.hidden], "train_steps": cfg.train_steps, "batch_size": cfg.batch_size,
            "lr": float(cfg.lr), "seed": cfg.seed}


def train_seed(seed: int, round_index: int, episode: int) -> int:
    """The simulator seed of a training episode, in [2**31, 2**32)."""
    state = np.random.SeedSequence([int(seed), round_index, episode]).generate_state(1)[0]
    return TRAIN_SEED_BASE + int(state) % TRAIN_SEED_BASE


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez to a temporary name in the same folder, then rename."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


EPISODE_KEYS = ("states", "labels", "planner_acted", "rewards", "seed", "label_seconds")


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """A labelled episode file; a damaged one is an InputError naming it."""
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in EPISODE_KEYS}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise InputError(f"{path} is not a readable labelled episode ({exc}): delete it (it is labelled again) "
                         "and run again.") from exc
    return data


class Log:
    """Progress lines on stderr (silent with progress=false)."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str) -> None:
        if self.on:
            print(f"[experts] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- rollouts
def labelled_episode(spec, task: DMCTask, cfg: DaggerConfig, round_index: int, episode: int,
                     policy: StatePolicy | None) -> dict[str, np.ndarray]:
    """One training episode: the labeller labels every visited state; the executed action is the labeller's with
    probability beta (always without a policy), else the policy's."""
    seed = train_seed(cfg.seed, round_index, episode)
    rng = np.random.default_rng([int(cfg.seed), round_index, episode, 1])
    beta = 1.0 if policy is None else cfg.beta(round_index)
    steps = int(cfg.episode_steps or spec.horizon)
    sim, expert = spec.make_sim(spec, horizon=steps), labeller(task, cfg.planner)
    states, labels, acted, rewards, label_s = [], [], [], [], 0.0
    try:
        state = sim.reset(seed)
        for _ in range(steps):
            start = time.perf_counter()
            label = np.clip(np.asarray(expert.get_action(state), dtype=np.float64), -1.0, 1.0)
            label_s += time.perf_counter() - start
            use_label = bool(rng.random() < beta)
            action = label if use_label else policy(state)
            states.append(np.asarray(state, dtype=np.float64))
            labels.append(label)
            acted.append(use_label)
            state, reward, _ = sim.step(action)
            rewards.append(reward)
    finally:
        sim.close()
    return {"states": np.asarray(states), "labels": np.asarray(labels, dtype=np.float32),
            "planner_acted": np.asarray(acted, dtype=bool), "rewards": np.asarray(rewards),
            "seed": np.asarray(seed, dtype=np.int64), "label_seconds": np.asarray(label_s)}


def evaluate(spec, policy: StatePolicy, seeds: list[int]) -> dict:
    """Full episodes of the policy alone (no rendering): returns and seconds per episode."""
    sim = spec.make_sim(spec, horizon=spec.horizon)
    returns, start = [], time.perf_counter()
    try:
        for seed in seeds:
            state, total = sim.reset(seed), 0.0
            for _ in range(spec.horizon):
                state, reward, _ = sim.step(policy(state))
                total += reward
            returns.append(total)
    finally:
        sim.close()
    return {"seeds": list(seeds), "returns": returns, "mean": float(np.mean(returns)), "min": float(np.min(returns)),
            "seconds_per_episode": (time.perf_counter() - start) / len(seeds)}


def time_demo(spec, weights: Path, seed: int) -> dict:
    """Seconds of one demo as `theia-eval demos` makes it with this expert: the expert's episode, then its replay
    rendered with the demos verb's default render settings."""
    from theia_eval.envs.demos import DemoConfig, record, run_expert
    from theia_eval.envs.env import TaskEnv
    from theia_eval.envs.tasks import ExpertChoice, task_expert

    demos = DemoConfig()
    env = TaskEnv(spec, demos.render)
    try:
        start = time.perf_counter()
        run = run_expert(env, task_expert(spec, ExpertChoice("distilled", str(weights))), seed, None)
        expert_s = time.perf_counter() - start
        start = time.perf_counter()
        record(env, run)
        render_s = time.perf_counter() - start
    finally:
        env.close()
    return {"seed": seed, "return": float(np.sum(run.rewards)), "expert_s": expert_s, "render_s": render_s,
            "seconds_per_demo": expert_s + render_s,
            "render": {"preset": demos.render.preset, "resolution": demos.render.resolution,
                       "crop": demos.render.crop}}


# ------------------------------------------------------------------------------------------- training
def fit(task: DMCTask, cfg: DaggerConfig, round_index: int, states: np.ndarray, labels: np.ndarray,
        previous: StatePolicy | None) -> tuple[StatePolicy, dict]:
    """Train the MLP on all labels so far (warm start from the previous round); returns it and the loss curve."""
    import torch

    features = features_of(task)
    x = features(states)
    if previous is None:
        mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-2)
    else:
        mean, std = previous.mean, previous.std
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.threads))
    try:
        torch.manual_seed(int(np.random.SeedSequence([int(cfg.seed), round_index, 2]).generate_state(1)[0]))
        sizes = [x.shape[1], *[int(h) for h in cfg.hidden], task.action_dim]
        layers = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        if previous is not None:
            with torch.no_grad():
                for layer, (w, b) in zip(layers, previous.layers):
                    layer.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
                    layer.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)))
        modules = []
        for i, layer in enumerate(layers):
            modules += [layer] if i + 1 == len(layers) else [layer, torch.nn.ELU()]
        net = torch.nn.Sequential(*modules)
        inputs = torch.from_numpy(((x - mean) / std).astype(np.float32))
        targets = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        opt = torch.optim.Adam(net.parameters(), lr=float(cfg.lr))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.train_steps, eta_min=float(cfg.lr) / 10)
        gen = torch.Generator().manual_seed(int(cfg.seed) * 1000 + round_index)
        losses, order, at, start = [], torch.randperm(len(inputs), generator=gen), 0, time.perf_counter()
        for _ in range(cfg.train_steps):
            if at >= len(order):  # a new pass over the labels
                order, at = torch.randperm(len(inputs), generator=gen), 0
            idx, at = order[at:at + cfg.batch_size], at + cfg.batch_size
            loss = torch.nn.functional.mse_loss(net(inputs[idx]), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        tenth = max(1, len(losses) // 10)
        first, last = float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))
        if not np.isfinite(last):
            raise InputError(f"dmc/{task.name} round {round_index}: the training loss is {last}; lower lr.")
        trained = [(lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()) for lin in layers]
    finally:
        torch.set_num_threads(threads)
    policy = StatePolicy(task, features, mean, std, trained)
    return policy, {"steps": cfg.train_steps, "samples": len(inputs), "loss_start": first, "loss_end": last,
                    "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------- the run
class DaggerRun:
    """The files of one run folder and the rounds in it."""

    def __init__(self, cfg: DaggerConfig) -> None:
        from theia_eval.envs.tasks import get_task

        self.cfg, self.task = cfg, cfg.dmc
        self.spec = get_task(cfg.task)
        self.dir = Path(cfg.out_dir) / self.task.name
        self.published = Path(cfg.out_dir) / f"{self.task.name}.safetensors"
        self.log = Log(cfg.progress)
        self.ident = json.loads(json.dumps(identity(cfg)))  # as config.json reads back (tuples -> lists)

    def round_dir(self, r: int) -> Path:
        return self.dir / f"round_{r:03d}"

    def check_config(self) -> None:
        """Write config.json on the first run; refuse a folder of other settings."""
        path = self.dir / "config.json"
        if not path.exists():
            atomic_write_json(path, self.ident)
            return
        found = read_json(path, "the DAgger run settings")
        if found != self.ident:
            diff = {k: (found.get(k), v) for k, v in self.ident.items() if found.get(k) != v}
            raise InputError(f"{self.dir} holds a DAgger run with other settings (found, requested): {diff}. Use "
                             "another out_dir, request the same settings, or delete that folder.")

    def episodes(self, r: int, policy: StatePolicy | None) -> list[dict]:
        """The round's labelled episodes: read from disk, or rolled out and written one by one."""
        folder = self.round_dir(r)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder)
        out = []
        for e in range(self.cfg.episodes_per_round):
            path = folder / f"episode_{e:03d}.npz"
            if not path.exists():
                ep = labelled_episode(self.spec, self.task, self.cfg, r, e, policy)
                save_npz(path, **ep)
                self.log(f"{self.cfg.task} round {r} episode {e + 1}/{self.cfg.episodes_per_round}: seed "
                         f"{int(ep['seed'])}, beta {1.0 if policy is None else self.cfg.beta(r):.3f}, return "
                         f"{float(ep['rewards'].sum()):.1f} over {len(ep['labels'])} steps, "
                         f"{float(ep['label_seconds']) / len(ep['labels']) * 1e3:.1f} ms per label")
            out.append(load_episode(path))
        return out

    def run_round(self, r: int, previous: StatePolicy | None, seeds: list[int]) -> tuple[StatePolicy, dict]:
        """Label, train, evaluate and record round r."""
        eps = self.episodes(r, previous)
        everything = [load_episode(p) for q in range(r) for p in sorted(self.round_dir(q).glob("episode_*.npz"))]
        everything += eps
        states = np.concatenate([e["states"] for e in everything])
        labels = np.concatenate([e["labels"] for e in everything])
        policy, train = fit(self.task, self.cfg, r, states, labels, previous)
        weights = self.round_dir(r) / "policy.safetensors"
        save_policy(policy, weights, {"labeller": self.ident["labeller"], "round": str(r), "labels": str(len(labels)),
                                      "dagger": stable_hash(self.ident, 16), "seed": str(self.cfg.seed)})
        policy = load_policy(weights, self.task)  # what the next round and the demos use: the float32 file
        summary = {"round": r, "beta": 1.0 if previous is None else self.cfg.beta(r),
                   "episodes": [{"seed": int(e["seed"]), "return": float(e["rewards"].sum()),
                                 "steps": len(e["labels"]), "labeller_share": float(e["planner_acted"].mean()),
                                 "label_seconds": float(e["label_seconds"])} for e in eps],
                   "labels_total": len(labels), "train": train, "eval": evaluate(self.spec, policy, seeds)}
        atomic_write_json(self.round_dir(r) / "summary.json", summary)
        self.log(f"{self.cfg.task} round {r}: {len(labels)} labels, loss {train['loss_end']:.4f}, policy "
                 f"return mean {summary['eval']['mean']:.1f} min {summary['eval']['min']:.1f} over {len(seeds)} "
                 f"episodes")
        return policy, summary

    def done_round(self, r: int, seeds: list[int]) -> tuple[StatePolicy, dict] | None:
        """A finished round's weights and summary (re-evaluated when the evaluation seeds changed), else None."""
        path, weights = self.round_dir(r) / "summary.json", self.round_dir(r) / "policy.safetensors"
        if not (path.exists() and weights.exists()):
            return None
        summary, policy = read_json(path, "the round summary"), load_policy(weights, self.task)
        if summary.get("eval", {}).get("seeds") != seeds:
            summary["eval"] = evaluate(self.spec, policy, seeds)
            atomic_write_json(path, summary)
        return policy, summary

    def run(self) -> dict:
        """All rounds (resuming), then publish the selected weights and write report.json."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with try_lock(self.dir / ".lock") as mine:
            if not mine:
                raise InputError(f"another process is training in {self.dir}; wait for it or use another out_dir.")
            self.check_config()
            return self._run()

    def _run(self) -> dict:
        cfg, start = self.cfg, time.perf_counter()
        seeds = [int(cfg.eval_seed) + i for i in range(cfg.eval_episodes)]
        policy, summaries = None, []
        for r in range(cfg.rounds):
            done = self.done_round(r, seeds)
            policy, summary = done if done is not None else self.run_round(r, policy, seeds)
            summaries.append(summary)
        chosen = (max(range(len(summaries)), key=lambda i: (summaries[i]["eval"]["mean"], i))
                  if cfg.select == "best" else len(summaries) - 1)
        self.publish(chosen)
        report = self.report(summaries, chosen, seeds)
        if cfg.time_demo:
            report["demo"] = time_demo(self.spec, self.published, seeds[0])
            self.log(f"{cfg.task}: one demo with the published expert took {report['demo']['seconds_per_demo']:.1f} s "
                     f"(expert {report['demo']['expert_s']:.1f} s + render replay {report['demo']['render_s']:.1f} s)")
        report["seconds_this_run"] = time.perf_counter() - start
        atomic_write_json(self.dir / "report.json", report)
        return report

    def publish(self, r: int) -> None:
        """Copy round r's weights to <out_dir>/<task>.safetensors (atomically)."""
        tmp = self.published.with_name(f".{self.published.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(self.round_dir(r) / "policy.safetensors", tmp)
            os.replace(tmp, self.published)
        finally:
            if tmp.exists():
                tmp.unlink()

    def report(self, summaries: list[dict], chosen: int, seeds: list[int]) -> dict:
        """The run's figures: per round, the selected round, and the labelling cost."""
        labels = sum(ep["steps"] for s in summaries for ep in s["episodes"])
        label_s = sum(ep["label_seconds"] for s in summaries for ep in s["episodes"])
        first = summaries[0]["episodes"]
        return {"task": self.cfg.task, "settings": {**self.ident, "rounds": self.cfg.rounds,
                                                    "eval_seeds": [seeds[0], seeds[-1]], "select": self.cfg.select},
                "published": str(self.published), "selected_round": chosen, "eval": summaries[chosen]["eval"],
                "labeller": {"source": self.ident["labeller"], "labels": labels, "label_seconds": label_s,
                             "seconds_per_label": label_s / max(labels, 1),
                             "round0_returns": [ep["return"] for ep in first],
                             "round0_steps": first[0]["steps"] if first else 0},
                "train_seconds": sum(s["train"]["seconds"] for s in summaries),
                "rounds": [{"round": s["round"], "beta": s["beta"], "labels_total": s["labels_total"],
                            "loss": s["train"]["loss_end"], "eval_mean": s["eval"]["mean"],
                            "eval_min": s["eval"]["min"],
                            "episode_returns": [ep["return"] for ep in s["episodes"]]} for s in summaries]}


def train_expert(cfg: DaggerConfig) -> dict:
    """Run (or resume) DAgger for one task; returns the report (also <out_dir>/<task>/report.json)."""
    return DaggerRun(cfg).run()
