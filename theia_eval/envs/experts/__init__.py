"""Privileged experts that read the simulator state: sampling MPC on native batched rollouts
(`mpc.py`), the DMC experts (`dmc.py`: analytic reacher, MPC recipes) and the Adroit experts
(`adroit.py`). Task specs build them lazily through `TaskSpec.make_expert`."""
