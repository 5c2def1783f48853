"""Old home of the privileged experts, kept so that `theia_eval.envs.experts.<name>` imports keep working:
the experts now live in their suite's folder (envs/dmc/expert.py, envs/adroit/expert.py) and the sampling
MPC in envs/mpc.py."""
