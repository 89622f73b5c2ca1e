"""stable-baselines3 configured like the project's scripts, for side-by-side returns and throughput.

Each entry mirrors a script's defaults (ppo.py's per-action-space presets, dqn.py's CleanRL defaults): the
same number of envs, rollout and batch sizes, epochs, learning rate, network sizes and normalization.
Known differences that stay: SB3's DQN uses the Huber loss and clips gradients at norm 10, and SB3 counts
DQN's target-network interval in calls rather than env steps (the same thing with one env). SB3's DDPG updates
its actor at every gradient step (ddpg_continuous.py's --policy-frequency 1; its default, CleanRL's, is 2).
"""

import numpy as np
import torch

PPO_COMMON = dict(gamma=0.99, gae_lambda=0.95, clip_range=0.2, vf_coef=0.5, max_grad_norm=0.5,
                  policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64])))  # 64-64 tanh, separate networks

A2C_COMMON = dict(n_steps=5, learning_rate=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5,
                  max_grad_norm=0.5, use_rms_prop=True, rms_prop_eps=1e-5, normalize_advantage=False,
                  policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64])))

# (script, action space kind) -> (SB3 class name, number of envs, keyword arguments, VecNormalize or not)
EQUIVALENTS = {
    ("ppo.py", "discrete"): ("PPO", 4, dict(PPO_COMMON, n_steps=128, batch_size=128, n_epochs=4,
                                            learning_rate=2.5e-4, ent_coef=0.01), False),
    ("ppo.py", "continuous"): ("PPO", 1, dict(PPO_COMMON, n_steps=2048, batch_size=64, n_epochs=10,
                                              learning_rate=3e-4, ent_coef=0.0), True),
    ("dqn.py", "discrete"): ("DQN", 1, dict(
        learning_rate=2.5e-4, buffer_size=10_000, learning_starts=10_000, batch_size=128, tau=1.0, gamma=0.99,
        train_freq=10, gradient_steps=1, target_update_interval=500, exploration_fraction=0.5,
        exploration_initial_eps=1.0, exploration_final_eps=0.05,
        policy_kwargs=dict(net_arch=[120, 84], activation_fn=torch.nn.ReLU)), False),
    # ppo_atari.py: CleanRL's Atari settings; CnnPolicy is the same Nature CNN trunk shared by both heads.
    # clip_range_vf: ppo_atari.py clips the value loss as CleanRL does (SB3's default does not).
    ("ppo_atari.py", "discrete"): ("PPO", 8, dict(
        n_steps=128, batch_size=256, n_epochs=4, learning_rate=lambda remaining: 2.5e-4 * remaining,
        gamma=0.99, gae_lambda=0.95, clip_range=0.1, clip_range_vf=0.1, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5), False),
    # SB3 adds its action noise in the actor's [-1, 1] space, so sigma 0.1 there is 0.1 half-ranges, as ours.
    ("ddpg_continuous.py", "continuous"): ("DDPG", 1, dict(
        learning_rate=3e-4, buffer_size=1_000_000, learning_starts=25_000, batch_size=256, tau=0.005, gamma=0.99,
        train_freq=1, gradient_steps=1, action_noise_sigma=0.1,
        policy_kwargs=dict(net_arch=[256, 256], activation_fn=torch.nn.ReLU)), False),
    # SB3's A2C defaults are a2c.py's (RMSprop alpha 0.99 eps 1e-5, lr 7e-4, 5 steps, gae_lambda 1, vf 0.5,
    # no entropy bonus, no advantage normalization, grad norm 0.5); spelled out so that the two cannot drift.
    # One difference stays: SB3 clips Gaussian actions to the bounds without rescaling, a2c.py rescales [-1, 1].
    ("a2c.py", "discrete"): ("A2C", 8, A2C_COMMON, False),
    ("a2c.py", "continuous"): ("A2C", 8, A2C_COMMON, True),
}


def action_kind(env_id: str) -> str:
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)  # the Atari ids
    env = gym.make(env_id)
    kind = "continuous" if isinstance(env.action_space, gym.spaces.Box) else "discrete"
    env.close()
    return kind


def make_envs(script: str, env_id: str, num_envs: int, seed: int):
    """SB3's vector env for `script` on `env_id`, below any normalization: for ppo_atari.py the same Atari
    preprocessing (SB3's AtariWrapper and a stack of 4 frames)."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    if script == "ppo_atari.py":
        return VecFrameStack(make_atari_env(env_id, n_envs=num_envs, seed=seed, env_kwargs=dict(frameskip=1)), 4)
    return make_vec_env(env_id, n_envs=num_envs, seed=seed)


def make_model(script: str, env_id: str, seed: int, tensorboard_log=None, **overrides):
    """The SB3 model equivalent to running `script` on `env_id`, with its envs; `overrides` replace keyword
    arguments of the entry."""
    import stable_baselines3
    from stable_baselines3.common.vec_env import VecNormalize

    algo, num_envs, kwargs, normalize = EQUIVALENTS[(script, action_kind(env_id))]
    kwargs = dict(kwargs, **overrides)
    policy = "CnnPolicy" if script == "ppo_atari.py" else "MlpPolicy"
    envs = make_envs(script, env_id, num_envs, seed)
    if "action_noise_sigma" in kwargs:  # Gaussian action noise needs the action dimension
        from stable_baselines3.common.noise import NormalActionNoise

        dim = envs.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), kwargs.pop("action_noise_sigma") * np.ones(dim))
    if normalize:
        envs = VecNormalize(envs, gamma=kwargs.get("gamma", 0.99))
    # device "auto": the GPU when there is one, as the scripts' --cuda default does
    return getattr(stable_baselines3, algo)(policy, envs, device="auto", seed=seed, tensorboard_log=tensorboard_log,
                                            **kwargs)
