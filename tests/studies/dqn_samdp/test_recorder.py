"""The recorder alone, on an untrained module in this process (no Ray): batching games
through one forward pass changes nothing, and recorded screens are the ALE's, as PNG."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("ray.rllib")
pytest.importorskip("ale_py")
cv2 = pytest.importorskip("cv2")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

from lookinside.studies.dqn_samdp import atari, module, recorder, trial  # noqa: E402
from lookinside.studies.dqn_samdp.config import DQNSamdpConfig  # noqa: E402


@pytest.fixture(scope="module")
def net():
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    torch.manual_seed(0)
    config = DQNSamdpConfig(env_steps=1000, record_at=(1000,))
    space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    return RLModuleSpec(module_class=module.NatureDQNModule, observation_space=space,
                        action_space=atari.make("Breakout").action_space,
                        model_config=trial.dqn_config(config).model_config).build()


def play(net, **fields):
    config = DQNSamdpConfig(env_steps=1000, record_at=(1000,), **{"record_max_steps": 60, **fields})
    chunks = []
    recorder.record(net, config, game="Breakout", seed=7, emit=chunks.append)
    rows = {}
    for chunk in chunks:
        for key, value in chunk.items():
            rows.setdefault(key, []).extend(value.to_pylist() if hasattr(value, "to_pylist") else list(value))
    return rows


def test_batching_games_through_one_forward_pass_changes_nothing(net):
    """Three games one at a time, and all three in lockstep: the same games, step for step
    (greedy play, so no random draw depends on the batch)."""
    alone = play(net, record_games=3, record_envs=1, record_epsilon=0.0)
    together = play(net, record_games=3, record_envs=3, record_epsilon=0.0)

    def by_step(rows):
        return sorted(zip(rows["trajectory"], rows["step"], rows["action"], rows["reward"], rows["lives"]))
    assert by_step(alone) == by_step(together)
    assert sorted(set(alone["trajectory"])) == [0, 1, 2] and len(alone["step"]) == 180   # 3 games cut at 60
    order = np.lexsort((alone["step"], alone["trajectory"]))
    order2 = np.lexsort((together["step"], together["trajectory"]))
    np.testing.assert_allclose(np.asarray(alone["embedding"])[order], np.asarray(together["embedding"])[order2],
                               rtol=0, atol=1e-5)


def test_screens_are_the_ale_screens_as_png(net):
    rows = play(net, record_games=1, record_envs=1, record_screens=True, record_max_steps=5)
    first = cv2.imdecode(np.frombuffer(rows["screen"][0], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    env = atari.make("Breakout", clip_rewards=False)
    config = dataclasses.replace(DQNSamdpConfig(env_steps=1000, record_at=(1000,)), record_games=1)
    seed = int(np.random.SeedSequence([7, 0xA7A]).generate_state(config.record_games)[0])
    env.reset(seed=seed)
    np.testing.assert_array_equal(first, env.ale.getScreenRGB())   # lossless, 210x160 RGB
    assert len(rows["screen"][0]) < first.nbytes / 10                # and compressed
