"""Meta-World v3 behind the `Simulator` protocol, with the CortexBench camera added to every model.

Protocol facts (shared/spec/cortexbench.md):
- camera `top_cap2`: the CortexBench fork's camera, added to the model with MjSpec before compiling:
  worldbody camera at pos (0, 0.9, 0.6), mode targetbody -> `tablelink`, fovy 45 (MuJoCo default).
- state = the 39-d goal-observable Meta-World observation; proprio = state[:4] (hand xyz, gripper).
- horizon 500; episode success = the `success` flag at the final step.
- episodes are seeded: reset(seed) reseeds the env's generator, which draws the object/goal
  positions (`seeded_rand_vec`), so the same seed gives the same episode.
- experts: metaworld.policies.ENV_POLICY_MAP[<task>-v3]().
"""
from __future__ import annotations

import numpy as np

from theia_eval.envs.renderer import CameraSpec, add_cameras

FAMILY = "metaworld"
VERSION_SUFFIX = "-v3"
HORIZON = 500
TOP_CAP2 = CameraSpec(name="top_cap2", pos=(0.0, 0.9, 0.6), target_body="tablelink", fovy=45.0)
EXTRA_CAMERAS = (TOP_CAP2,)


def upstream_names() -> list[str]:
    """Meta-World's own v3 task ids (e.g. 'assembly-v3'), in upstream order."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return list(ALL_V3_ENVIRONMENTS)


def _env_class_with_cameras(upstream_id: str, cameras: tuple[CameraSpec, ...]):
    """Subclass of the upstream env whose model is compiled with the extra cameras."""
    import mujoco
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    base = ALL_V3_ENVIRONMENTS[upstream_id]

    def _initialize_simulation(self):
        spec = mujoco.MjSpec.from_file(self.fullpath)
        add_cameras(spec, cameras)
        model = spec.compile()
        return model, mujoco.MjData(model)

    return type(f"{base.__name__}WithCameras", (base,), {"_initialize_simulation": _initialize_simulation})


class MetaWorldSim:
    """A goal-observable Meta-World v3 env behind the `Simulator` protocol."""

    def __init__(self, upstream_id: str, horizon: int = HORIZON,
                 cameras: tuple[CameraSpec, ...] = EXTRA_CAMERAS) -> None:
        env = _env_class_with_cameras(upstream_id, cameras)()
        env._partially_observable = False  # goal-observable: the 39-d obs holds the goal
        del env.sawyer_observation_space  # cached under the old observability
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True  # object/goal positions come from env.np_random
        env._set_task_called = True
        env.max_path_length = max(int(horizon), env.max_path_length)
        self.env = env

    @property
    def model(self):
        return self.env.model

    @property
    def data(self):
        return self.env.data

    def reset(self, seed: int) -> np.ndarray:
        self.env.seed(int(seed))
        state, _ = self.env.reset()
        return state

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, dict]:
        state, reward, _, _, info = self.env.step(action)
        return state, float(reward), {"success": bool(info["success"])}

    def close(self) -> None:
        self.env.close()
