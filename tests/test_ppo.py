"""ppo.py: its math against hand computations, and the script run as a user runs it."""

import glob

import gymnasium as gym
import numpy as np
import pytest
import torch

import ppo
from tests.envs import CONSTANT_REWARD_LIMIT
from tests.helpers import last_mean, read_scalars, run_dir, run_ok, run_script

TRAINING_TAGS = [
    "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
    "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/old_approx_kl",
    "losses/clipfrac", "losses/explained_variance",
]


# ---------------------------------------------------------------------------------------------- the math


def column(*values):
    return torch.tensor(values, dtype=torch.float32)[:, None]


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
    generator = torch.Generator().manual_seed(0)
    rewards, values, next_values = (torch.randn(steps, envs, generator=generator) for _ in range(3))
    zeros = torch.zeros(steps, envs)
    advantages, _ = ppo.compute_gae(rewards, values, next_values, zeros, zeros, gamma, lam)
    deltas = rewards + gamma * next_values - values
    expected = torch.stack([sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, steps)) for t in range(steps)])
    torch.testing.assert_close(advantages, expected)


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


def test_cartpole_smoke_with_checkpoint_video_tracking_and_evaluation(tmp_path):
    result = run_ok("ppo.py", "--total-timesteps", "2048", "--save-model", "--capture-video", "--track",
                    "--eval-episodes", "2", cwd=tmp_path)
    assert "eval: mean return" in result.stdout
    run = run_dir(tmp_path)
    scalars = read_scalars(run)
    for tag in TRAINING_TAGS + ["eval/episodic_return"]:
        assert tag in scalars, f"{tag} not logged"
    assert len(scalars["eval/episodic_return"]) == 2
    assert glob.glob(str(tmp_path / "videos" / run.name / "*.mp4")), "no training video"
    assert glob.glob(str(tmp_path / "videos" / f"{run.name}-eval" / "*.mp4")), "no evaluation video"
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*")), "no offline W&B run"

    checkpoint = torch.load(run / "ppo.pt", weights_only=True)
    assert checkpoint["args"]["env_id"] == "CartPole-v1" and checkpoint["args"]["num_envs"] == 4
    evaluation = run_ok("ppo.py", "--eval-checkpoint", str(run / "ppo.pt"), "--eval-episodes", "3", cwd=tmp_path)
    assert "over 3 episodes" in evaluation.stdout


def test_hopper_smoke_saves_the_observation_statistics_with_the_weights(tmp_path):
    run_ok("ppo.py", "--env-id", "Hopper-v4", "--total-timesteps", "1024", "--num-steps", "512",
           "--num-minibatches", "4", "--update-epochs", "2", "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    run = run_dir(tmp_path)
    assert "eval/episodic_return" in read_scalars(run)
    agent, obs_norm, saved = ppo.load_checkpoint(str(run / "ppo.pt"), torch.device("cpu"))
    assert agent.continuous and saved["norm_obs"] and saved["num_steps"] == 512
    assert obs_norm.rms.count > 1000 and np.all(obs_norm.rms.var != 1.0)
    assert "over 1 episodes" in run_ok("ppo.py", "--eval-checkpoint", str(run / "ppo.pt"), "--eval-episodes", "1",
                                       cwd=tmp_path).stdout


def test_solves_cartpole(tmp_path):
    # rl-baselines3-zoo's tuned CartPole-v1 settings: solved in 100k steps (about 20 s here).
    run_ok("ppo.py", "--seed", "1", "--total-timesteps", "100000", "--num-envs", "8", "--num-steps", "32",
           "--num-minibatches", "1", "--update-epochs", "20", "--gae-lambda", "0.8", "--gamma", "0.98",
           "--ent-coef", "0", "--learning-rate", "1e-3", cwd=tmp_path)
    assert last_mean(read_scalars(run_dir(tmp_path)), "charts/episodic_return", 10) >= 475


def test_learns_continuous_control_with_non_unit_action_bounds(tmp_path):
    # InvertedPendulum-v4 acts in [-3, 3]; the continuous preset goes from ~5 to over 900 in 60k steps.
    run_ok("ppo.py", "--env-id", "InvertedPendulum-v4", "--seed", "1", "--total-timesteps", "61440", cwd=tmp_path)
    assert last_mean(read_scalars(run_dir(tmp_path)), "charts/episodic_return", 10) >= 500


def test_truncated_episodes_bootstrap_to_the_infinite_horizon_value(tmp_path):
    gamma = 0.9
    run_ok("ppo.py", "--env-id", "tests.envs:ConstantReward-v0", "--gamma", str(gamma), "--total-timesteps", "20480",
           "--learning-rate", "1e-3", "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    agent, _, _ = ppo.load_checkpoint(str(run_dir(tmp_path) / "ppo.pt"), torch.device("cpu"))
    value = agent.get_value(torch.zeros(1, 1)).item()
    truncated_sum = (1 - gamma**CONSTANT_REWARD_LIMIT) / (1 - gamma)  # 6.5: what treating truncation as an end learns
    assert value == pytest.approx(1 / (1 - gamma), abs=0.5), f"V(s0) = {value}, truncated sum {truncated_sum:.2f}"


@pytest.mark.parametrize("flags", [
    ("--total-timesteps", "3072"),
    ("--env-id", "Hopper-v4", "--total-timesteps", "1024", "--num-steps", "512", "--num-minibatches", "8"),
], ids=["discrete", "continuous"])
def test_same_seed_gives_the_same_numbers(tmp_path, flags):
    logged = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        run_ok("ppo.py", "--seed", "3", *flags, cwd=tmp_path / name)
        scalars = read_scalars(run_dir(tmp_path / name))
        scalars.pop("charts/SPS")
        logged.append(scalars)
    assert logged[0] == logged[1]
    assert len(logged[0]["losses/value_loss"]) >= 2


BAD_INPUTS = [
    (("--env-id", "NoSuchEnv-v0"), "NoSuchEnv"),
    (("--env-id", "tests.envs:ImageObs-v0"), "ppo_atari.py"),
    (("--env-id", "tests.envs:MultiDiscreteAction-v0"), "MultiDiscrete"),
    (("--num-minibatches", "3"), "does not divide"),
    (("--num-steps", "0"), "--num-steps must be positive"),
    (("--num-envs", "-1"), "--num-envs must be positive"),
    (("--total-timesteps", "0"), "--total-timesteps must be positive"),
    (("--total-timesteps", "100"), "smaller than one rollout"),
    (("--learning-rate", "0"), "--learning-rate must be positive"),
    (("--eval-checkpoint", "missing.pt"), "no checkpoint"),
]


@pytest.mark.parametrize("flags, message", BAD_INPUTS, ids=[message for _, message in BAD_INPUTS])
def test_bad_input_gets_one_line_and_writes_nothing(tmp_path, flags, message):
    result = run_script("ppo.py", *flags, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ppo.py: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_checkpoint_gets_one_line(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    result = run_script("ppo.py", "--eval-checkpoint", "notes.pt", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ppo.py: error: cannot load checkpoint notes.pt" in result.stderr
