"""Tiny envs for the tests, made by id from a script's --env-id as "tests.envs:NAME-v0" (gymnasium imports
this module, which registers them)."""

import gymnasium as gym
import numpy as np


class ConstantRewardEnv(gym.Env):
    """Pays 1 per step whatever the action, never terminates, and always shows the same observation.

    With the time limit of its registration every episode ends by truncation. A learner that bootstraps
    truncated episodes values the (only) state at 1 / (1 - gamma); one that takes truncation for
    termination learns at most the truncated sum (1 - gamma**limit) / (1 - gamma).
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


class ImageObsEnv(ConstantRewardEnv):
    """Image observations, which the MLP scripts refuse."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((84, 84, 3), np.uint8), {}


class ScalarObsEnv(ConstantRewardEnv):
    """A Box observation of shape (): a number, not a vector."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((), np.float32), {}


class MultiDiscreteActionEnv(ConstantRewardEnv):
    """An action space that ppo.py does not handle."""

    action_space = gym.spaces.MultiDiscrete([2, 3])


class ShiftedActionsEnv(ConstantRewardEnv):
    """Actions numbered from -1, as Discrete(2, start=-1) allows; any other action is an error."""

    action_space = gym.spaces.Discrete(2, start=-1)

    def step(self, action):
        assert self.action_space.contains(action), f"action {action} is not in {self.action_space}"
        return super().step(action)


class ConstantRewardBoxEnv(ConstantRewardEnv):
    """ConstantReward-v0 with a Box action space, for the continuous-action scripts."""

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


class AsymmetricBoundsEnv(ConstantRewardEnv):
    """Box actions with asymmetric bounds, none centered on 0; any action outside them is an error."""

    action_space = gym.spaces.Box(np.array([0.0, -3.0, -10.0], np.float32), np.array([2.0, 5.0, -8.0], np.float32))

    def step(self, action):
        assert self.action_space.contains(action), f"action {action} is not in {self.action_space}"
        return super().step(action)


class UnboundedActionEnv(ConstantRewardEnv):
    """A Box action space with an unbounded dimension, which a tanh actor cannot span."""

    action_space = gym.spaces.Box(np.array([-1.0, -np.inf], np.float32), np.array([1.0, np.inf], np.float32))


CONSTANT_REWARD_LIMIT = 10
gym.register("ConstantReward-v0", entry_point=ConstantRewardEnv, max_episode_steps=CONSTANT_REWARD_LIMIT)
gym.register("ConstantRewardBox-v0", entry_point=ConstantRewardBoxEnv, max_episode_steps=CONSTANT_REWARD_LIMIT)
gym.register("AsymmetricBounds-v0", entry_point=AsymmetricBoundsEnv, max_episode_steps=10)
gym.register("UnboundedAction-v0", entry_point=UnboundedActionEnv, max_episode_steps=10)
gym.register("ImageObs-v0", entry_point=ImageObsEnv, max_episode_steps=10)
gym.register("ScalarObs-v0", entry_point=ScalarObsEnv, max_episode_steps=10)
gym.register("ShiftedActions-v0", entry_point=ShiftedActionsEnv, max_episode_steps=10)
gym.register("MultiDiscreteAction-v0", entry_point=MultiDiscreteActionEnv, max_episode_steps=10)


class CountingEnv(gym.Env):
    """Observes its own step count; action 1 terminates the episode, action 0 runs into the time limit."""

    observation_space = gym.spaces.Box(0.0, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([self.t], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), float(self.t), bool(action == 1), False, {}


class CountingBoxEnv(CountingEnv):
    """Counting-v0 with a Box action: a first component above 0 terminates the episode, as action 1 does there."""

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def step(self, action):
        return super().step(int(action[0] > 0))


FAR_COUNTING_START = 100.0


class FarCountingBoxEnv(CountingBoxEnv):
    """CountingBox-v0 observed from FAR_COUNTING_START on: its raw observations lie far from their normalized
    values, so a network fed one in place of the other shows it."""

    observation_space = gym.spaces.Box(FAR_COUNTING_START, np.inf, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed)
        return obs + FAR_COUNTING_START, info

    def step(self, action):
        obs, *rest = super().step(action)
        return obs + FAR_COUNTING_START, *rest


COUNTING_LIMIT = 3
gym.register("Counting-v0", entry_point=CountingEnv, max_episode_steps=COUNTING_LIMIT)
gym.register("CountingBox-v0", entry_point=CountingBoxEnv, max_episode_steps=COUNTING_LIMIT)
gym.register("FarCountingBox-v0", entry_point=FarCountingBoxEnv, max_episode_steps=COUNTING_LIMIT)


# FrozenLake without the slippery ice: every action does what it says, so the greedy policy of a learned
# Q-function reaches the goal every time. Its observation is Discrete(16), one-hot encoded by the scripts.
gym.register("FrozenLakeDeterministic-v0", entry_point="gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv",
             kwargs={"is_slippery": False}, max_episode_steps=100)


class OpaqueStateEnv(gym.Env):
    """Keeps its state in an object of its own, as Box2D envs keep theirs in C++ objects: a script cannot save it,
    so a resumed run restarts it. Pays 1 a step; its episodes run into the time limit unless action 1 ends them
    (a Box action: its first component above 0)."""

    observation_space = gym.spaces.Box(0.0, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    class Clock:
        def __init__(self):
            self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.clock = self.Clock()
        return np.array([self.clock.t], np.float32), {}

    def step(self, action):
        self.clock.t += 1
        ends = bool(np.asarray(action).reshape(-1)[0] > 0) and self.np_random.random() < 0.05
        return np.array([self.clock.t], np.float32), 1.0, ends, False, {}


class OpaqueStateBoxEnv(OpaqueStateEnv):
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


OPAQUE_LIMIT = 200
gym.register("OpaqueState-v0", entry_point=OpaqueStateEnv, max_episode_steps=OPAQUE_LIMIT)
gym.register("OpaqueStateBox-v0", entry_point=OpaqueStateBoxEnv, max_episode_steps=OPAQUE_LIMIT)
