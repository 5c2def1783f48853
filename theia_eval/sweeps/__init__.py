"""Sweeps: a grid of cells (encoders x tasks x heads x seeds, plus students distilled in the same sweep) run
as Hydra multiruns with a chosen launcher, resumably, into the results store.

- plan.py: sweep config -> validated Plan (stage jobs, cell identities); protocol.py: CortexBench deviations.
- stages.py: the job of each stage (demos, distill, embed, train) and the store rows of a cell.
- launch.py: Hydra multirun over a stage's jobs (sequential, joblib, submitit launchers).
- run.py: running a plan stage by stage (`run_sweep(cfg)`, also for the quickstart); commands.py: the `theia-eval sweep` verb.
"""
