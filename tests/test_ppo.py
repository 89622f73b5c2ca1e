"""ppo.py: its math against hand computations, and what only ppo.py does (continuous control, normalization).
What every script shares (flags, checkpoints, errors, truncation) is tested in test_common.py."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import ppo
from tests.helpers import last_mean, logged_numbers, read_scalars, run_dir, run_ok

# ---------------------------------------------------------------------------------------------- the math


def column(*values):
    return np.array(values, np.float32)[:, None]


def test_gae_matches_hand_computation_with_truncation_and_termination():
    # gamma = 0.9, lambda = 0.5, so gamma * lambda = 0.45. Step 1 is truncated, with V(final obs) = 10;
    # step 3 terminates (its next value, 7, must be ignored).
    rewards, values = column(1, 2, 3, 4), column(0.5, 1.0, 1.5, 2.0)
    next_values = column(1.0, 10.0, 2.0, 7.0)
    terminations, dones = column(0, 0, 0, 1), column(0, 1, 0, 1)
    advantages, returns = ppo.compute_gae(rewards, values, next_values, terminations, dones, 0.9, 0.5)
    # deltas: 1 + 0.9*1 - 0.5 = 1.4;  2 + 0.9*10 - 1 = 10;  3 + 0.9*2 - 1.5 = 3.3;  4 - 2 = 2
    # A3 = 2;  A2 = 3.3 + 0.45*2 = 4.2;  A1 = 10 (episode ended: A2 does not flow back);  A0 = 1.4 + 0.45*10 = 5.9
    assert advantages[:, 0].tolist() == pytest.approx([5.9, 10.0, 4.2, 2.0])
    assert returns[:, 0].tolist() == pytest.approx([6.4, 11.0, 5.7, 4.0])


def test_gae_without_episode_ends_is_the_discounted_sum_of_td_errors():
    gamma, lam, steps, envs = 0.99, 0.95, 6, 3
    rewards, values, next_values = np.random.default_rng(0).normal(size=(3, steps, envs))
    zeros = np.zeros((steps, envs))
    advantages, _ = ppo.compute_gae(rewards, values, next_values, zeros, zeros, gamma, lam)
    deltas = rewards + gamma * next_values - values
    expected = np.stack([sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, steps)) for t in range(steps)])
    np.testing.assert_allclose(advantages, expected, rtol=1e-6)


def test_clipped_policy_loss_matches_hand_computation():
    old = torch.zeros(4)
    # ratios 1.5, 1.5, 0.5, 0.5 against advantages +1, -1, +1, -1 with eps = 0.2:
    # min(1.5, 1.2) = 1.2;  min(-1.5, -1.2) = -1.5;  min(0.5, 0.8) = 0.5;  min(-0.5, -0.8) = -0.8
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    loss = ppo.clipped_policy_loss(new, old, torch.tensor([1.0, -1.0, 1.0, -1.0]), 0.2)
    assert loss.item() == pytest.approx(-(1.2 - 1.5 + 0.5 - 0.8) / 4)


def test_value_loss_matches_hand_computation():
    new, old, returns = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([3.0, 0.0])
    assert ppo.value_loss(new, old, returns, 0.2, clip=False).item() == pytest.approx(0.5 * (1 + 0) / 2)
    # clipped values 1.2 and 0.8: errors max(1, 3.24) = 3.24 and max(0, 0.64) = 0.64
    assert ppo.value_loss(new, old, returns, 0.2, clip=True).item() == pytest.approx(0.5 * (3.24 + 0.64) / 2)


def test_actions_map_to_any_bounds_and_clip_there():
    to_env = ppo.action_to_env(gym.spaces.Box(np.array([-3.0, 0.0, -np.inf]), np.array([3.0, 10.0, np.inf]), dtype=np.float64))
    np.testing.assert_allclose(to_env(np.array([0.5, 0.0, 7.0])), [1.5, 5.0, 7.0])
    np.testing.assert_allclose(to_env(np.array([2.0, -4.0, -9.0])), [3.0, 0.0, -9.0])
    assert ppo.action_to_env(gym.spaces.Discrete(3))(np.array([2])) == np.array([2])


def test_a_dimension_bounded_on_one_side_is_clipped_at_that_bound():
    to_env = ppo.action_to_env(gym.spaces.Box(np.array([0.0, -np.inf]), np.array([np.inf, 5.0]), dtype=np.float64))
    np.testing.assert_allclose(to_env(np.array([-2.0, 9.0])), [0.0, 5.0])  # out of bounds: clipped
    np.testing.assert_allclose(to_env(np.array([3.0, -7.0])), [3.0, -7.0])  # inside: unchanged, not rescaled


def test_running_mean_std_equals_the_statistics_of_all_batches():
    rms, batches = ppo.RunningMeanStd((2,)), [np.random.default_rng(i).normal(i, i + 1, (50, 2)) for i in range(4)]
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, everything.var(0), rtol=1e-5)


def test_reward_scaler_divides_by_the_std_of_the_discounted_return_and_restarts_it_on_done():
    scaler = ppo.RewardScaler(num_envs=2, gamma=0.5, clip=100.0, enabled=True)
    scaler(np.array([1.0, 1.0]), np.array([False, True]))
    scaled = scaler(np.array([1.0, 1.0]), np.array([False, False]))
    # discounted returns seen: (1, 1) then (1.5, 1): env 1 restarted after its done. (rtol: the running
    # statistics start from a tiny prior, mean 0 and variance 1 with weight 1e-4.)
    np.testing.assert_allclose(scaler.rms.var, np.var([1.0, 1.0, 1.5, 1.0]), rtol=1e-2)
    np.testing.assert_allclose(scaled, 1.0 / np.sqrt(np.var([1.0, 1.0, 1.5, 1.0])), rtol=1e-2)


def test_presets_fill_only_what_the_user_left_unset():
    args = ppo.resolve_presets(ppo.Args(num_envs=8), continuous=True)
    assert args.num_envs == 8 and args.num_steps == 2048 and args.norm_obs is True
    assert ppo.resolve_presets(ppo.Args(), continuous=False).norm_obs is False


# ------------------------------------------------------------------------------------ the script, end to end


def test_hopper_smoke_saves_the_observation_statistics_with_the_weights(tmp_path):
    run_ok("ppo.py", "--env-id", "Hopper-v4", "--total-timesteps", "1024", "--num-steps", "512",
           "--num-minibatches", "4", "--update-epochs", "2", "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    run = run_dir(tmp_path)
    assert "eval/episodic_return" in read_scalars(run)
    agent, obs_norm, saved = ppo.load_checkpoint(str(run / "ppo.pt"), torch.device("cpu"))
    assert agent.continuous and saved["norm_obs"] and saved["num_steps"] == 512
    assert obs_norm.rms.count > 1000 and np.all(obs_norm.rms.var != 1.0)
    # Loaded for another device ("meta" stands in for a GPU), the statistics stay NumPy arrays on the CPU.
    _, meta_obs_norm, _ = ppo.load_checkpoint(str(run / "ppo.pt"), torch.device("meta"))
    np.testing.assert_array_equal(meta_obs_norm.rms.var, obs_norm.rms.var)
    assert "over 1 episodes" in run_ok("ppo.py", "--eval-checkpoint", str(run / "ppo.pt"), "--eval-episodes", "1",
                                       cwd=tmp_path).stdout


def test_discrete_observations_are_one_hot_encoded(tmp_path):
    # FrozenLake-v1 observes a Discrete(16) cell number: the network gets 16 one-hot inputs.
    run_ok("ppo.py", "--env-id", "FrozenLake-v1", "--total-timesteps", "512", "--save-model", "--eval-episodes", "1",
           cwd=tmp_path)
    agent, _, _ = ppo.load_checkpoint(str(run_dir(tmp_path) / "ppo.pt"), torch.device("cpu"))
    assert agent.actor[0].in_features == 16


def test_solves_cartpole(tmp_path):
    # rl-baselines3-zoo's tuned CartPole-v1 settings. At 150k steps (about 40 s here) seeds 1-5 all end at 500;
    # at 100k two of five were still short of 475.
    run_ok("ppo.py", "--seed", "1", "--total-timesteps", "150000", "--num-envs", "8", "--num-steps", "32",
           "--num-minibatches", "1", "--update-epochs", "20", "--gae-lambda", "0.8", "--gamma", "0.98",
           "--ent-coef", "0", "--learning-rate", "1e-3", cwd=tmp_path)
    assert last_mean(read_scalars(run_dir(tmp_path)), "charts/episodic_return", 10) >= 475


def test_learns_continuous_control_with_non_unit_action_bounds(tmp_path):
    # InvertedPendulum-v4 acts in [-3, 3]; the continuous preset goes from ~5 to over 900 in 60k steps.
    run_ok("ppo.py", "--env-id", "InvertedPendulum-v4", "--seed", "1", "--total-timesteps", "61440", cwd=tmp_path)
    assert last_mean(read_scalars(run_dir(tmp_path)), "charts/episodic_return", 10) >= 500


def test_same_seed_gives_the_same_numbers_with_normalization(tmp_path):
    flags = ("--env-id", "Hopper-v4", "--total-timesteps", "1024", "--num-steps", "512", "--num-minibatches", "8")
    first, second = (logged_numbers("ppo.py", *flags, cwd=tmp_path / name) for name in ("a", "b"))
    assert first == second and len(first["losses/value_loss"]) == 2
