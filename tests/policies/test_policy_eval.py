"""Closed-loop evaluation and the embed/train/evaluate verbs on real (tiny) Meta-World demos."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from theia_eval.cli import main
from theia_eval.encoders import create_encoder
from theia_eval.envs.dataset import Storage, open_demos
from theia_eval.envs.demos import DemoConfig, collect, demo_path
from theia_eval.envs.renderer import RenderSpec
from theia_eval.envs.tasks import get_task
from theia_eval.errors import InputError
from theia_eval.policies.evaluate import EvalConfig, eval_render_spec, evaluate_policy
from theia_eval.policies.heads import PolicyShapes

TASK = "metaworld/drawer-open"
SMALL = RenderSpec("fast", 64, 56)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    cfg = DemoConfig(num_demos=2, post_success_steps=3, workers=0, render=SMALL, progress=False,
                     valid_fraction=0.5, storage=Storage("gzip", 1))
    collect([TASK], out, cfg)
    return out


class ReplayPolicy:
    """Replays one recorded action sequence open-loop (a scripted 'policy' with the BCPolicy interface)."""

    def __init__(self, actions: np.ndarray, proprio_dim: int):
        self.actions, self.t = actions, 0
        self.shapes = PolicyShapes(grid=(1, 1), token_dim=1, summary_dim=1, history=3, fusion="flare",
                                   proprio_dim=proprio_dim, action_dim=actions.shape[1])

    def act(self, features, proprio):
        a = self.actions[min(self.t, len(self.actions) - 1)]
        self.t += 1
        return torch.as_tensor(a, dtype=torch.float32)[None]


def test_replaying_the_expert_reaches_its_success_and_return(demos):
    path = demo_path(demos, get_task(TASK))
    enc = create_encoder("blind")
    with open_demos(path) as f:
        recorded = [(f.meta.seeds[i], f[name]) for i, name in enumerate(f.names)]
        for seed, demo in recorded:
            actions, rewards = demo.actions[:], demo.rewards[:]
            cfg = EvalConfig(episodes=1, base_seed=seed, num_envs=1, horizon=len(actions), progress=False)
            info = evaluate_policy(ReplayPolicy(actions, get_task(TASK).proprio_dim), enc, TASK, cfg, SMALL,
                                   "summary")
            ep = info["per_episode"][0]
            assert ep["seed"] == seed and ep["length"] == len(actions)
            assert ep["success"] is True
            assert ep["return"] == pytest.approx(float(rewards.sum()), rel=1e-4)
            agg = info["aggregate"]
            assert agg["success_rate"] == 1.0 and agg["success_ci95"][1] == 1.0
            assert set(info["time_per_step"]) == {"env_ms", "encode_ms", "policy_ms", "reset_s"}


class ProprioPolicy:
    """A stateless, batch-independent policy: each env's action is a fixed function of its own proprio."""

    def __init__(self, proprio_dim: int, action_dim: int):
        self.shapes = PolicyShapes(grid=(1, 1), token_dim=1, summary_dim=1, history=3, fusion="flare",
                                   proprio_dim=proprio_dim, action_dim=action_dim)
        self.w = torch.as_tensor(np.random.default_rng(0).uniform(-3, 3, (proprio_dim, action_dim)),
                                 dtype=torch.float32)

    def act(self, features, proprio):
        return torch.tanh(proprio @ self.w)


def test_pipelined_groups_give_the_same_episodes():
    spec = get_task(TASK)
    policy, enc = ProprioPolicy(spec.proprio_dim, spec.action_dim), create_encoder("blind")
    runs = {}
    for groups in (1, 2):
        # 3 episodes on 2 envs: the last batch has one episode, so the second group sits it out
        cfg = EvalConfig(episodes=3, num_envs=2, groups=groups, horizon=12, progress=False, video=True,
                         video_episodes=1)
        runs[groups] = evaluate_policy(policy, enc, TASK, cfg, SMALL, "summary")
    assert [e["seed"] for e in runs[2]["per_episode"]] == [1000, 1001, 1002]
    assert runs[1]["per_episode"] == runs[2]["per_episode"]
    assert all(e["length"] == 12 for e in runs[2]["per_episode"])
    assert len({e["return"] for e in runs[2]["per_episode"]}) == 3  # the seeds really differ
    (seed1, video1), = runs[1]["videos"]
    (seed2, video2), = runs[2]["videos"]
    assert seed1 == seed2 == 1000 and video2.shape == (12, 56, 56, 3)
    np.testing.assert_array_equal(video1, video2)
    with pytest.raises(InputError, match="eval.groups must be between 1 and eval.num_envs=2"):
        evaluate_policy(policy, enc, TASK, EvalConfig(num_envs=2, groups=3, progress=False), SMALL, "summary")


def test_render_mismatch_is_refused_unless_forced():
    with pytest.raises(InputError, match="force=true"):
        eval_render_spec(EvalConfig(preset="full"), SMALL)
    assert eval_render_spec(EvalConfig(preset="full"), SMALL, force=True).preset == "full"
    assert eval_render_spec(EvalConfig(), SMALL) == SMALL


def test_policy_for_another_task_is_refused():
    bad = SimpleNamespace(shapes=SimpleNamespace(action_dim=7, proprio_dim=4))
    with pytest.raises(InputError, match="another task"):
        evaluate_policy(bad, create_encoder("blind"), TASK, EvalConfig(progress=False), SMALL, "summary")


def test_train_then_evaluate_verbs(demos, tmp_path, tmp_path_factory, monkeypatch, capsys):
    from theia_eval.provenance import absolute_paths

    monkeypatch.chdir(tmp_path_factory.getbasetemp())  # "the repository": demos and runs lie under it
    common = [f"demos_dir={demos}", f"cache_dir={tmp_path / 'cache'}", f"out_dir={tmp_path / 'runs'}"]
    args = ["train", "encoder=pixels", f"task={TASK}", "head=conv", "seed=7", "bc.epochs=2", "bc.eval_every=1",
            "bc.batch_size=32", "bc.progress=false", "eval.episodes=2", "eval.horizon=15", "eval.progress=false"]
    assert main(args + common) == 0
    run = tmp_path / "runs" / "metaworld_drawer-open" / "pixels" / "conv" / "seed7"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["last_checkpoint"]["epoch"] == 2 and metrics["best_checkpoint"]["epoch"] in (1, 2)
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    ev = json.loads((run / "eval" / "epoch_002.json").read_text())
    assert [e["seed"] for e in ev["per_episode"]] == [1000, 1001]
    assert ev["render"] == {"preset": "fast", "resolution": 64, "crop": 56}
    for f in (run / "metrics.json", run / "eval" / "epoch_002.json"):  # no machine paths in what a run writes
        assert not absolute_paths(f.read_text()), f
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    # a second run reuses the embedding cache and the finished run (resume: nothing left to train)
    caches = sorted(p.name for p in (tmp_path / "cache").rglob("manifest.json"))
    assert main(args + common) == 0
    assert sorted(p.name for p in (tmp_path / "cache").rglob("manifest.json")) == caches
    capsys.readouterr()
    # re-running the finished run with other evaluation settings is refused, and its config.yaml kept
    stored = (run / "config.yaml").read_text()
    assert main([a if a != "eval.episodes=2" else "eval.episodes=3" for a in args] + common) == 2
    assert "holds a finished run with other settings (eval.episodes: 2 -> 3)" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == stored
    assert main(["evaluate", f"run={run}", "checkpoint=last", "episodes=2", "groups=2", "threads=1",
                 "progress=false"]) == 0
    info = json.loads((run / "eval_info_last.json").read_text())
    assert info["checkpoint"] == "last" and info["aggregate"]["episodes"] == 2 and info["config"]["groups"] == 2
    assert [e["seed"] for e in info["per_episode"]] == [1000, 1001]
    assert "success" in capsys.readouterr().out


def test_train_bad_inputs(demos, tmp_path, capsys):
    base = ["train", "encoder=pixels", f"task={TASK}", f"demos_dir={demos}", f"out_dir={tmp_path}",
            f"cache_dir={tmp_path / 'c'}", "bc.progress=false"]
    assert main(base + ["head=convv"]) == 2
    assert "Did you mean: conv" in capsys.readouterr().err
    assert main(base + ["head=conv", "eval.preset=full"]) == 2
    assert "force=true" in capsys.readouterr().err
    assert main(["train", "encoder=pixels", "task=metaworld/hammer", f"demos_dir={tmp_path}"]) == 2
    assert "theia-eval demos task=metaworld/hammer" in capsys.readouterr().err
    assert main(["evaluate", f"run={tmp_path}"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["evaluate", f"run={tmp_path}", "threads=0"]) == 2
    assert "threads must be an integer >= 1" in capsys.readouterr().err
