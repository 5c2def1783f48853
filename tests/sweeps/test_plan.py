"""Sweep planning: every bad name or key fails before any work; cell identities; protocol labels; configs."""
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from theia_eval.cli import main
from theia_eval.config import compose, config_dir
from theia_eval.encoders import list_encoders
from theia_eval.errors import InputError, TheiaEvalError
from theia_eval.sweeps.plan import DemoJob, EmbedJob, Plan, TrainJob, build_plan
from theia_eval.sweeps.protocol import deviations


def smoke(tmp_path, *extra: str):
    return compose("sweep", ["sweep=smoke", f"out_dir={tmp_path / 'out'}", f"demos_dir={tmp_path / 'demos'}",
                             f"cache_dir={tmp_path / 'cache'}", f"students_dir={tmp_path / 'students'}", *extra])


@pytest.mark.parametrize("override, message", [
    ("sweep.encoders=[pixels,pixelz]", "unknown encoder 'pixelz'. Did you mean: pixels"),
    ("sweep.tasks=[metaworld/drawer-opn]", "unknown task 'metaworld/drawer-opn'"),
    ("sweep.suites=[cortexbench-metawrld]", "unknown suite 'cortexbench-metawrld'"),
    ("sweep.heads=[convv]", "unknown policy head 'convv'"),
    ("sweep.encoders=[pixels,pixels]", "encoder label 'pixels' appears twice"),
    ("+sweep.train.bc.epochz=3", "bad key 'bc.epochz'"),
    ("+sweep.train.bc.head_config.widht=3", "unknown config key"),
    ("sweep.encoders=[clip-vit-l14]", "no weights available offline"),
    ("+sweep.demos.colour=red", "unknown keys \\['colour'\\] in the sweep's demos block"),
    ("sweep.tasks=[]", "names no tasks"),
    ("+sweep.seedz=[1]", "unknown sweep config key 'seedz'. Did you mean: seeds"),
    ("+sweep.extra_seeds=[{seeds:[7]}]", "extra_seeds\\[0\\] needs seeds: \\[...\\] and tasks"),
    ("+sweep.extra_seeds=[{seeds:[7],tasks:[metaworld/hammer]}]", "names task 'metaworld/hammer', which is not in"),
    ("+sweep.extra_seeds=[{seeds:[7],tasks:[metaworld/drawer-open],encoders:[pixelz]}]",
     "extra_seeds\\[0\\] names encoder 'pixelz', which is not in the sweep's grid"),
    ("+sweep.extra_seeds=[{seeds:[100],tasks:[metaworld/drawer-open]}]", "seed 100 is already one of the sweep's"),
    ("+sweep.extra_seeds=[{seeds:[7],tasks:[metaworld/drawer-open],heads:[mlp]}]", "has no head 'mlp' in this sweep"),
    ("+sweep.extra_seeds=[{seeds:[7],tasks:[metaworld/drawer-open],seed:[8]}]", "extra_seeds\\[0\\] has an unknown key 'seed'"),
    ("+sweep.extra_seeds=[{seeds:[7],tasks:[metaworld/drawer-open]},{seeds:[7],tasks:[metaworld/drawer-open]}]",
     "extra_seeds\\[1\\] lists the cell .* a second time"),
])
def test_bad_sweeps_fail_before_any_work(tmp_path, capsys, override, message):
    with pytest.raises(TheiaEvalError, match=message):
        build_plan(smoke(tmp_path, override))
    assert main(["sweep", "sweep=smoke", f"out_dir={tmp_path / 'out'}", f"demos_dir={tmp_path / 'demos'}",
                 override]) == 2
    assert message.split(".")[0].replace("\\", "") in capsys.readouterr().err.replace("\\", "")
    assert not (tmp_path / "out").exists() and not (tmp_path / "demos").exists()


def test_bad_student_entries_fail_before_any_work(tmp_path):
    good = {"label": "s", "teachers": "offline", "student": "nano", "frames": {"num_frames": 8}}
    for bad, message in (({**good, "student": "giant"}, "unknown student 'giant'"),
                         ({**good, "teachers": ["efficientnet-lite0", "sim-dpth"]}, "unknown teacher 'sim-dpth'"),
                         ({**good, "frames": {"num_framez": 8}}, "bad key 'num_framez'"),
                         ({"label": "s", "teachers": "offline"}, "needs data=PATH"),
                         ({**good, "overrides": {"train": {"stepz": 1}}}, "bad key 'train.stepz'")):
        cfg = smoke(tmp_path)
        cfg.sweep.students = [bad]
        with pytest.raises(TheiaEvalError, match=message):
            build_plan(cfg)


def test_demo_expert_keys_enter_the_recipe_only_when_set(tmp_path):
    """Unset expert keys leave the demo folders and cells of existing sweeps as they were; a kind the tasks do
    not have fails at planning."""
    base = build_plan(smoke(tmp_path))
    unset = build_plan(smoke(tmp_path, "+sweep.demos.expert=null", "+sweep.demos.expert_weights=null"))
    assert [d.demos_dir for d in unset.demos] == [d.demos_dir for d in base.demos]
    assert [c.config_hash for c in unset.train] == [c.config_hash for c in base.train]
    assert "expert" not in base.demos[0].recipe
    with pytest.raises(TheiaEvalError, match="has no 'distilled' expert; it has one expert"):
        build_plan(smoke(tmp_path, "+sweep.demos.expert=distilled"))


def test_cell_identity_ignores_paths_and_devices_but_not_settings(tmp_path):
    base = build_plan(smoke(tmp_path)).train
    assert len(base) == 2 and len({c.config_hash for c in base}) == 2
    moved = build_plan(smoke(tmp_path / "elsewhere", "sweep.train.eval.num_envs=3", "threads=1")).train
    assert [c.config_hash for c in moved] == [c.config_hash for c in base]
    longer = build_plan(smoke(tmp_path, "sweep.train.bc.epochs=3")).train
    assert not {c.config_hash for c in longer} & {c.config_hash for c in base}
    other_demos = build_plan(smoke(tmp_path, "sweep.demos.num_demos=3")).train
    assert not {c.config_hash for c in other_demos} & {c.config_hash for c in base}
    seeds = build_plan(smoke(tmp_path, "sweep.seeds=[1,2]", "sweep.encoders=[pixels]")).train
    assert [c.seed for c in seeds] == [1, 2] and seeds[0].config["seed"] == 1


def test_extra_seeds_add_the_same_cells_as_more_seeds_on_part_of_the_grid(tmp_path):
    """extra_seeds adds seeds where a verdict hangs on one seed: its cells are the cells (same identity) a sweep with
    those seeds would have, only on the named tasks, encoders and heads."""
    grid = ("sweep.encoders=[{name:pixels,heads:[conv,mlp]},blind]", "sweep.heads=[conv,mlp]")
    base = build_plan(smoke(tmp_path, *grid)).train
    more = build_plan(smoke(tmp_path, *grid, "+sweep.extra_seeds=[{seeds:[7,8],tasks:[metaworld/drawer-open],"
                                             "encoders:[pixels],heads:[conv]}]")).train
    full = {(c.label, c.head, c.seed): c.config_hash
            for c in build_plan(smoke(tmp_path, *grid, "sweep.seeds=[100,7,8]")).train}
    assert [c.config_hash for c in more[:len(base)]] == [c.config_hash for c in base]
    extra = more[len(base):]
    assert [(c.label, c.head, c.seed) for c in extra] == [("pixels", "conv", 7), ("pixels", "conv", 8)]
    assert all(full[(c.label, c.head, c.seed)] == c.config_hash for c in extra)
    every_head = build_plan(smoke(tmp_path, *grid, "+sweep.extra_seeds=[{seeds:[7],tasks:[metaworld/drawer-open]}]"))
    assert sorted((c.label, c.head) for c in every_head.train if c.seed == 7) == [
        ("blind", "conv"), ("blind", "mlp"), ("pixels", "conv"), ("pixels", "mlp")]


def test_students_join_the_encoder_list_with_a_config_keyed_run_dir(tmp_path):
    cfg = smoke(tmp_path)
    cfg.sweep.students = [{"label": "nano-s", "teachers": "offline", "student": "nano", "frames": {"num_frames": 8},
                           "overrides": {"train": {"steps": 2}}}]
    plan = build_plan(cfg)
    assert [c.label for c in plan.train] == ["nano-s", "pixels", "blind"]
    student = plan.distill[0]
    assert Path(student.run_dir).parent == tmp_path / "students" and student.config["train"]["steps"] == 2
    cell = plan.train[0]
    assert asdict(cell.encoder) == {"label": "nano-s", "name": "theia", "weights": student.run_dir, "student": "nano-s",
                                       "weights_key": f"student:{student.key}", "heads": None,
                                       "families": None}
    assert student.frames["out"] == student.config["data"]
    cfg.sweep.students[0]["overrides"]["train"]["steps"] = 3
    again = build_plan(cfg)
    assert again.distill[0].run_dir != student.run_dir  # another distill config: another student
    assert again.train[0].config_hash != cell.config_hash


def test_plan_json_round_trips_to_typed_jobs(tmp_path):
    plan = build_plan(smoke(tmp_path, "sweep.encoders=[{name:pixels,heads:[conv]},blind]", "sweep.heads=[conv,mlp]"))
    text = plan.to_json()
    again = Plan.from_json(text)
    assert again == plan and again.to_json() == text
    assert isinstance(again.demos[0], DemoJob) and isinstance(again.embed[0], EmbedJob)
    cell = again.train[0]
    assert isinstance(cell, TrainJob) and cell.encoder.heads == ("conv",) and cell.group == "pixels:tokens"
    assert list(json.loads(text)["train"][0]) == ["id", "config_hash", "label", "encoder", "task", "suite", "head",
                                                 "kind", "seed", "config", "protocol", "deviations", "sweep"]


def test_encoder_entries_may_name_their_own_heads(tmp_path):
    plan = build_plan(smoke(tmp_path, "sweep.heads=[conv,mlp]",
                            "sweep.encoders=[{name:pixels,heads:[conv]},{name:blind,heads:[mlp]},efficientnet-lite0]"))
    cells = [(c.label, c.head, c.kind) for c in plan.train]
    assert cells == [("pixels", "conv", "tokens"), ("blind", "mlp", "summary"),
                     ("efficientnet-lite0", "conv", "tokens"), ("efficientnet-lite0", "mlp", "summary")]
    assert sorted(e.id for e in plan.embed) == ["blind:summary", "efficientnet-lite0:summary",
                                                   "efficientnet-lite0:tokens", "pixels:tokens"]
    for bad in ("{name:pixels,heads:conv}", "{name:pixels,heads:[]}", "{name:pixels,head:[conv]}"):
        with pytest.raises(InputError, match="heads|bad encoder entry"):
            build_plan(smoke(tmp_path, f"sweep.encoders=[{bad}]"))
    with pytest.raises(TheiaEvalError, match="unknown policy head 'convv'"):
        build_plan(smoke(tmp_path, "sweep.encoders=[{name:pixels,heads:[convv]}]"))


def test_encoder_entries_may_name_their_task_families(tmp_path):
    plan = build_plan(compose("sweep", ["sweep=offline-study-dmc-adroit", f"out_dir={tmp_path / 'o'}",
                                        f"demos_dir={tmp_path / 'd'}"]))
    by_label = {}
    for c in plan.train:
        by_label.setdefault(c.label, set()).add(c.suite)
    assert by_label == {"efficientnet-lite0": {"dmc", "adroit"}, "theia-offline": {"dmc", "adroit"},
                        "pixels": {"dmc"}, "blind": {"adroit"}}
    assert len(plan.train) == 21
    with pytest.raises(InputError, match=r"names task families \['dmc'\] that the sweep has no tasks of"):
        build_plan(smoke(tmp_path, "sweep.encoders=[{name:pixels,families:[dmc]}]"))
    with pytest.raises(InputError, match="families must be a non-empty list"):
        build_plan(smoke(tmp_path, "sweep.encoders=[{name:pixels,families:dmc}]"))


def test_bundled_weights_are_identified_by_their_file_hash(tmp_path, monkeypatch):
    import theia_eval.encoders.theia_offline as bundled
    from theia_eval.encoders import get_encoder_config
    from theia_eval.encoders.weights import default_weights_key

    plan = build_plan(smoke(tmp_path, "sweep.encoders=[theia-offline,pixels]"))
    offline, pixels = plan.train[0], plan.train[1]
    assert offline.encoder.weights_key == default_weights_key(get_encoder_config("theia-offline"))
    assert offline.encoder.weights_key.startswith("sha256:") and pixels.encoder.weights_key is None
    assert "/" not in offline.encoder.weights_key  # portable: no machine path
    other = tmp_path / "model.safetensors"
    other.write_bytes(b"another student")
    monkeypatch.setitem(bundled.CONFIG.extra, "weights_file", str(other))
    retrained = build_plan(smoke(tmp_path, "sweep.encoders=[theia-offline,pixels]"))
    assert retrained.train[0].config_hash != offline.config_hash  # a retrained student is another cell
    assert retrained.train[1].config_hash == pixels.config_hash


def test_local_weights_are_identified_by_content_not_path(tmp_path):
    def cell(path):
        plan = build_plan(smoke(tmp_path, f"sweep.encoders=[{{name:efficientnet-lite0,weights:{path}}}]"))
        return plan.train[0]

    first, second = tmp_path / "a" / "w.pth", tmp_path / "b" / "w.pth"
    for p in (first, second):
        p.parent.mkdir()
        p.write_bytes(b"the same weights")
    here, moved = cell(first), cell(second)
    assert here.encoder.weights_key.startswith("sha256:") and str(tmp_path) not in here.encoder.weights_key
    assert here.config_hash == moved.config_hash  # a moved checkout keeps its cells
    second.write_bytes(b"retrained weights")
    assert cell(second).config_hash != here.config_hash  # other weights in the same place: another cell


def test_missing_relative_weight_folders_are_not_taken_for_hub_ids(tmp_path):
    with pytest.raises(InputError, match="weights data/students/x/exports/step-000250 .* do not exist"):
        build_plan(smoke(tmp_path, "sweep.encoders=[{name:theia,label:s250,weights:data/students/x/exports/step-000250}]"))


def test_students_may_read_several_data_sources(tmp_path):
    cfg = smoke(tmp_path)
    cfg.sweep.students = [{"label": "s", "teachers": "offline", "student": "nano",
                           "data": ["frames:/d/metaworld-train", "frames:/d/dmc-train"]}]
    student = build_plan(cfg).distill[0]
    assert student.config["data"] == ["frames:/d/metaworld-train", "frames:/d/dmc-train"]


def test_the_entropy_study_reuses_the_metaworld_studys_cells(tmp_path):
    def hashes(name, *extra):
        plan = build_plan(compose("sweep", [f"sweep={name}", f"out_dir={tmp_path / name}", *extra]))
        return {(c.label, c.head, c.task): c.config_hash for c in plan.train}

    entropy = hashes("offline-study-entropy", "sweep.students=[]", "sweep.encoders=[efficientnet-lite0]")
    metaworld = hashes("offline-study-metaworld")
    assert entropy and all(metaworld[k] == v for k, v in entropy.items())


def test_protocol_deviations():
    def suite(family):
        return {"num_demos": 25, "episodes": 25}
    cell = {"bc": {"epochs": 100, "batch_size": 256, "lr": 0.001, "weight_decay": 0.0, "eval_every": 5, "history": 3,
                   "fusion": "flare", "action_norm": "none", "proprio_norm": "none", "head_config": {}},
            "eval": {"horizon": None, "episodes": 25, "preset": None, "resolution": None, "crop": "demos"},
            "split": None, "force": False}
    demos = {"num_demos": 25, "resolution": 256, "crop": 224, "post_success_steps": None, "preset": "full"}
    assert deviations(cell, demos, "metaworld", suite) == []
    cell["bc"]["epochs"], demos["num_demos"] = 10, 5
    assert deviations(cell, demos, "metaworld", suite) == ["bc.epochs=10 (CortexBench: 100)",
                                                           "demos.num_demos=5 (CortexBench: 25)"]
    assert "not part of CortexBench" in deviations(cell, demos, "robosuite", lambda f: {})[-1]


def test_shipped_sweeps_describe_what_they_promise():
    names = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))
    assert {"smoke", "quickstart", "cortexbench-mujoco"} <= set(names)
    paper = OmegaConf.load(config_dir() / "sweep" / "cortexbench-mujoco.yaml")
    assert list(paper.suites) == ["cortexbench-metaworld", "cortexbench-dmc", "cortexbench-adroit"]
    assert list(paper.seeds) == [100, 200, 300] and list(paper.heads) == ["conv", "mlp"]
    names = [e if isinstance(e, str) else e["name"] for e in paper.encoders]
    assert set(names) <= set(list_encoders()) and len(names) >= 15
    assert paper.expected_cost.cells == (len(names) + len(paper.students)) * 12 * 2 * 3  # 5 + 5 + 2 tasks
    qs = OmegaConf.load(config_dir() / "sweep" / "quickstart.yaml")
    assert [s["teachers"] for s in qs.students] == ["offline"] and qs.students[0]["student"] == "nano"
    assert {"theia-offline", "efficientnet-lite0", "random-vit-nano", "pixels"} <= set(qs.encoders)
    assert len(qs.tasks) >= 2


def test_sweep_needs_a_name(capsys):
    assert main(["sweep"]) == 2
    assert "name a sweep" in capsys.readouterr().err
    with pytest.raises(InputError, match="Could not find 'sweep/nosuch'"):
        compose("sweep", ["sweep=nosuch"])


def test_two_sweeps_sharing_an_out_dir_keep_their_own_plans_and_never_train_one_cell_twice(tmp_path):
    """Two lanes over parts of one grid in one out_dir: each job reads its own (content-addressed) plan, and a
    cell another process is training is left to it ("busy"), not trained again beside it."""
    from theia_eval.envs.tasks import get_task
    from theia_eval.io import try_lock
    from theia_eval.policies.runs import run_dir
    from theia_eval.sweeps.launch import load_plan
    from theia_eval.sweeps.run import prepare
    from theia_eval.sweeps.stages import collect_demos, train_cell

    plan_a, path_a, store = prepare(smoke(tmp_path, "sweep.encoders=[pixels]"))
    text_a = path_a.read_text()
    plan_b, path_b, _ = prepare(smoke(tmp_path, "sweep.encoders=[blind]"))
    assert path_a != path_b and path_a.parent == path_b.parent == tmp_path / "out" / "plans"
    assert path_a.read_text() == text_a and load_plan(str(path_a)).train[0].config_hash == plan_a.train[0].config_hash
    assert (tmp_path / "out" / "plan.json").read_text() == path_b.read_text()  # the latest, for publish grid=plan
    assert {c.encoder.name for c in plan_a.train} == {"pixels"} and {c.encoder.name for c in plan_b.train} == {"blind"}
    job = plan_a.train[0]
    run = run_dir(OmegaConf.create(job.config), get_task(job.task))
    with try_lock(run.parent / f".{run.name}.lock") as held:
        assert held
        assert train_cell(job, plan_a) == {"status": "busy"}
    assert not run.exists() and len(store) == 0  # nothing trained, nothing written beside the other process
    demos = plan_a.demos[0]
    with try_lock(Path(demos.path).parent / f".{Path(demos.path).name}.lock") as held:
        assert held
        assert collect_demos(demos, plan_a) == {"status": "busy"}  # demos another lane collects: left to it
    assert not Path(demos.path).exists()
