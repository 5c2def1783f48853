"""The quickstart grid adds the proprio-only `blind` control (mlp head) at the cost of one short evaluation per
task, keeps the narrow conv head for the vision encoders, and names the claim its leaderboard tests."""
from omegaconf import OmegaConf

from theia_eval.analysis.claims import instances, load_claims
from theia_eval.config import compose, config_dir
from theia_eval.policies.heads import MLPHeadConfig, make_head_config
from theia_eval.sweeps.plan import build_plan


def quickstart_plan(tmp_path):
    return build_plan(compose("sweep", ["sweep=quickstart", f"out_dir={tmp_path / 'out'}",
                                        f"demos_dir={tmp_path / 'demos'}", f"cache_dir={tmp_path / 'cache'}",
                                        f"students_dir={tmp_path / 'students'}"]))


def test_quickstart_plan_has_the_blind_control_with_an_mlp_head(tmp_path):
    plan = quickstart_plan(tmp_path)
    cells = {(c.label, c.head, c.task) for c in plan.train}
    tasks = ["metaworld/drawer-open", "metaworld/window-open"]
    vision = ["theia-nano-distilled", "theia-offline", "efficientnet-lite0", "random-vit-nano", "pixels"]
    assert cells == {(e, "conv", t) for e in vision for t in tasks} | {("blind", "mlp", t) for t in tasks}
    blind = [c for c in plan.train if c.label == "blind"]
    assert {c.kind for c in blind} == {"summary"}
    # the same short protocol as every other cell: 8 epochs, one evaluation of 4 episodes x 150 steps
    for c in blind:
        bc, ev = c.config["bc"], c.config["eval"]
        assert (bc["epochs"], bc["eval_every"], ev["episodes"], ev["horizon"]) == (8, 8, 4, 150)
        assert make_head_config("mlp", bc["head_config"]) == MLPHeadConfig()  # per-head settings: mlp defaults
    conv = next(c for c in plan.train if c.label == "efficientnet-lite0")
    assert make_head_config("conv", conv.config["bc"]["head_config"]).channels == 64
    assert "blind:summary" in {e.id for e in plan.embed}
    assert not (tmp_path / "out").exists()  # planning does no work


def test_quickstart_names_its_claim_and_the_claim_finds_its_pairs():
    assert OmegaConf.load(config_dir() / "quickstart.yaml").claims == "quickstart"
    (claim,) = load_claims("quickstart")

    class Grid:  # what instances() reads of a leaderboard section
        grid = {(e, "conv", "last"): [] for e in ("pixels", "efficientnet-lite0")} | {("blind", "mlp", "last"): []}
        encoders = ["blind", "efficientnet-lite0", "pixels"]

    comps = instances(claim, [Grid()])
    assert [(c.a, c.b) for c in comps] == [(("efficientnet-lite0", "conv"), ("blind", "mlp")),
                                           (("pixels", "conv"), ("blind", "mlp"))]
