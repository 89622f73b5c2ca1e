"""ppo.py: its math against hand computations (on ppo_atari.py's copy of it too), what only ppo.py does
(continuous control, normalization), its training loop read back from runs in the test's process (bootstrap values,
reward scaling, how the flags reach the update, the logged diagnostics) and its evaluation. What every script
shares (flags, checkpoints, errors, truncation) is tested in test_common.py."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import a2c
import ppo
import ppo_atari
from tests.envs import CONSTANT_REWARD_LIMIT, COUNTING_LIMIT, FAR_COUNTING_START
from tests.helpers import last_mean, logged_numbers, read_scalars, run_dir, run_in_process, run_ok, spy

# ---------------------------------------------------------------------------------------------- the math

# ppo_atari.py writes out the same functions (each file stands alone): both copies must pass.
both_ppo_files = pytest.mark.parametrize("module", [ppo, ppo_atari], ids=["ppo.py", "ppo_atari.py"])


def column(*values):
    return np.array(values, np.float32)[:, None]


@both_ppo_files
def test_gae_matches_hand_computation_with_truncation_and_termination(module):
    # gamma = 0.9, lambda = 0.5, so gamma * lambda = 0.45. Step 1 is truncated, with V(final obs) = 10;
    # step 3 terminates (its next value, 7, must be ignored).
    rewards, values = column(1, 2, 3, 4), column(0.5, 1.0, 1.5, 2.0)
    next_values = column(1.0, 10.0, 2.0, 7.0)
    terminations, dones = column(0, 0, 0, 1), column(0, 1, 0, 1)
    advantages, returns = module.compute_gae(rewards, values, next_values, terminations, dones, 0.9, 0.5)
    # deltas: 1 + 0.9*1 - 0.5 = 1.4;  2 + 0.9*10 - 1 = 10;  3 + 0.9*2 - 1.5 = 3.3;  4 - 2 = 2
    # A3 = 2;  A2 = 3.3 + 0.45*2 = 4.2;  A1 = 10 (episode ended: A2 does not flow back);  A0 = 1.4 + 0.45*10 = 5.9
    assert advantages[:, 0].tolist() == pytest.approx([5.9, 10.0, 4.2, 2.0])
    assert returns[:, 0].tolist() == pytest.approx([6.4, 11.0, 5.7, 4.0])


@both_ppo_files
def test_gae_without_episode_ends_is_the_discounted_sum_of_td_errors(module):
    gamma, lam, steps, envs = 0.99, 0.95, 6, 3
    rewards, values, next_values = np.random.default_rng(0).normal(size=(3, steps, envs))
    zeros = np.zeros((steps, envs))
    advantages, _ = module.compute_gae(rewards, values, next_values, zeros, zeros, gamma, lam)
    deltas = rewards + gamma * next_values - values
    expected = np.stack([sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, steps)) for t in range(steps)])
    np.testing.assert_allclose(advantages, expected, rtol=1e-6)


@both_ppo_files
def test_clipped_policy_loss_matches_hand_computation(module):
    old = torch.zeros(4)
    # ratios 1.5, 1.5, 0.5, 0.5 against advantages +1, -1, +1, -1 with eps = 0.2:
    # min(1.5, 1.2) = 1.2;  min(-1.5, -1.2) = -1.5;  min(0.5, 0.8) = 0.5;  min(-0.5, -0.8) = -0.8
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    loss = module.clipped_policy_loss(new, old, torch.tensor([1.0, -1.0, 1.0, -1.0]), 0.2)
    assert loss.item() == pytest.approx(-(1.2 - 1.5 + 0.5 - 0.8) / 4)


@both_ppo_files
def test_value_loss_matches_hand_computation(module):
    new, old, returns = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([3.0, 0.0])
    assert module.value_loss(new, old, returns, 0.2, clip=False).item() == pytest.approx(0.5 * (1 + 0) / 2)
    # clipped values 1.2 and 0.8: errors max(1, 3.24) = 3.24 and max(0, 0.64) = 0.64
    assert module.value_loss(new, old, returns, 0.2, clip=True).item() == pytest.approx(0.5 * (3.24 + 0.64) / 2)


def test_actions_map_to_any_bounds_and_clip_there():
    to_env = ppo.action_to_env(gym.spaces.Box(np.array([-3.0, 0.0, -np.inf]), np.array([3.0, 10.0, np.inf]), dtype=np.float64))
    np.testing.assert_allclose(to_env(np.array([0.5, 0.0, 7.0])), [1.5, 5.0, 7.0])
    np.testing.assert_allclose(to_env(np.array([2.0, -4.0, -9.0])), [3.0, 0.0, -9.0])
    assert ppo.action_to_env(gym.spaces.Discrete(3))(np.array([2])) == np.array([2])


@pytest.mark.parametrize("module", [ppo, a2c], ids=["ppo.py", "a2c.py"])
def test_actions_in_env_units_are_only_clipped(module):
    to_env = module.action_to_env(gym.spaces.Box(np.array([-3.0, 2.0, -np.inf]), np.array([3.0, 5.0, np.inf]),
                                                 dtype=np.float64), "clip")
    np.testing.assert_allclose(to_env(np.array([0.5, 3.0, 7.0])), [0.5, 3.0, 7.0])  # inside: the env's units
    np.testing.assert_allclose(to_env(np.array([-4.0, 0.0, -9.0])), [-3.0, 2.0, -9.0])
    assert module.action_to_env(gym.spaces.Discrete(3, start=-1), "clip")(np.array([2])) == np.array([1])


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_solves_cartpole(tmp_path):
    # rl-baselines3-zoo's tuned CartPole-v1 settings. At 150k steps (about 40 s here) seeds 1-5 all end at 500;
    # at 100k two of five were still short of 475.
    run_ok("ppo.py", "--seed", "1", "--total-timesteps", "150000", "--num-envs", "8", "--num-steps", "32",
           "--num-minibatches", "1", "--update-epochs", "20", "--gae-lambda", "0.8", "--gamma", "0.98",
           "--ent-coef", "0", "--learning-rate", "1e-3", cwd=tmp_path)
    assert last_mean(read_scalars(run_dir(tmp_path)), "charts/episodic_return", 10) >= 475


@pytest.mark.slow
def test_learns_continuous_control_with_non_unit_action_bounds(tmp_path):
    # InvertedPendulum-v4 acts in [-3, 3]; the continuous preset goes from ~5 to over 900 in 60k steps.
    run_ok("ppo.py", "--env-id", "InvertedPendulum-v4", "--seed", "1", "--total-timesteps", "61440", cwd=tmp_path)
    assert last_mean(read_scalars(run_dir(tmp_path)), "charts/episodic_return", 10) >= 500


@pytest.mark.slow
def test_same_seed_gives_the_same_numbers_with_normalization(tmp_path):
    flags = ("--env-id", "Hopper-v4", "--total-timesteps", "1024", "--num-steps", "512", "--num-minibatches", "8")
    first, second = (logged_numbers("ppo.py", *flags, cwd=tmp_path / name) for name in ("a", "b"))
    assert first == second and len(first["losses/value_loss"]) == 2


# ------------------------------------------------------------------- the loop, run in this process and inspected

# --learning-rate 1e-12: the agent left at the end is, to about 1e-9, the one that collected the last rollout.
FROZEN = ("--learning-rate", "1e-12", "--num-minibatches", "1", "--update-epochs", "1")


def test_the_loop_bootstraps_cut_episodes_from_their_final_observation(tmp_path, monkeypatch):
    loop = run_in_process("ppo.py", "--env-id", "tests.envs:Counting-v0", "--num-envs", "4", "--num-steps", "64",
                          "--total-timesteps", "256", *FROZEN, cwd=tmp_path, monkeypatch=monkeypatch)
    agent, obs, args = loop["agent"], loop["obs"], loop["args"]
    truncated = (loop["dones"] == 1) & (loop["terminations"] == 0)
    assert truncated.sum() > 5
    # Counting-v0's next observation is s + 1, at a time-limit cut too (the final one, not the next episode's 0).
    with torch.no_grad():
        next_values = agent.get_value(torch.as_tensor(obs + 1)).numpy()
    advantages, _ = ppo.compute_gae(loop["rewards"], loop["values"], next_values, loop["terminations"],
                                    loop["dones"], args.gamma, args.gae_lambda)
    np.testing.assert_allclose(loop["advantages"], advantages, atol=1e-4)
    # One minibatch, one epoch: the ratio is 1, so the policy loss is minus the mean of the normalized advantages.
    assert abs(loop["pg_loss"].item()) < 1e-5


def test_with_normalization_cut_episodes_bootstrap_from_their_normalized_final_observation(tmp_path, monkeypatch):
    # The continuous preset normalizes observations, which start at 100 here: V(raw 103) is far from V(normalized).
    loop = run_in_process("ppo.py", "--env-id", "tests.envs:FarCountingBox-v0", "--num-envs", "4", "--num-steps",
                          "512", "--total-timesteps", "2048", *FROZEN, cwd=tmp_path, monkeypatch=monkeypatch)
    agent, obs_norm, args = loop["agent"], loop["obs_norm"], loop["args"]
    final_obs = np.array([[FAR_COUNTING_START + COUNTING_LIMIT]], np.float32)
    with torch.no_grad():
        final_value = agent.get_value(torch.as_tensor(obs_norm(final_obs, update=False), dtype=torch.float32)).item()
        raw_value = agent.get_value(torch.as_tensor(final_obs)).item()
    # At a cut the GAE sum stops, so return - reward = gamma * V(final obs). Only the rollout's second half: the
    # running statistics, with which the final observation was normalized, hardly move there any more.
    truncated = (loop["dones"] == 1) & (loop["terminations"] == 0)
    truncated[: args.num_steps // 2] = False
    assert truncated.sum() > 10 and abs(final_value - raw_value) > 0.1
    implied = (loop["returns"] - loop["rewards"])[truncated] / args.gamma
    np.testing.assert_allclose(implied, final_value, atol=1e-2)
    # The stored actions are the sampled ones (not those clipped for the env) with their log-probabilities, and
    # the log-std, part of the policy, gets gradients.
    with torch.no_grad():
        _, logprob, _, _ = agent.get_action_and_value(torch.as_tensor(loop["obs"]), torch.as_tensor(loop["actions"]))
    np.testing.assert_allclose(logprob.numpy(), loop["logprobs"], atol=1e-4)
    assert np.abs(loop["actions"]).max() > 1.0 and agent.actor_logstd.grad.abs().sum() > 0


def test_rewards_are_scaled_by_the_std_of_a_return_that_restarts_at_every_cut(tmp_path, monkeypatch):
    loop = run_in_process("ppo.py", "--env-id", "tests.envs:ConstantRewardBox-v0", "--num-envs", "2",
                          "--num-steps", "50", "--num-minibatches", "1", "--total-timesteps", "200",
                          cwd=tmp_path, monkeypatch=monkeypatch)
    scaler, gamma = loop["reward_scaler"], loop["args"].gamma
    # Every step pays 1 and every episode is cut after 10 steps: the discounted return cycles through 10 values.
    cycle = np.cumsum(gamma ** np.arange(CONSTANT_REWARD_LIMIT))
    np.testing.assert_allclose(scaler.rms.var, np.var(cycle), rtol=1e-2)
    # the rollout's last rewards, scaled with the statistics as they are now
    np.testing.assert_allclose(loop["rewards"][-1], 1 / np.sqrt(scaler.rms.var), rtol=1e-3)


# 2 iterations of 2 envs x 64 steps, each updated in 3 epochs of 4 minibatches of 32.
UPDATES = ("--env-id", "tests.envs:Counting-v0", "--num-envs", "2", "--num-steps", "64", "--total-timesteps", "256",
           "--num-minibatches", "4", "--update-epochs", "3", "--learning-rate", "1e-2")


def adam_steps(loop: dict) -> set:
    """The step counts Adam holds for the agent's parameters after a run: one number if every update reached all."""
    return {int(loop["optimizer"].state[p]["step"]) for p in loop["agent"].parameters()}


def test_the_update_follows_its_flags(tmp_path, monkeypatch):
    shuffles, clips = spy(monkeypatch, torch, "randperm"), spy(monkeypatch, torch.nn.utils, "clip_grad_norm_")
    value_clips, log_softmaxes = spy(monkeypatch, torch, "max"), spy(monkeypatch, torch, "log_softmax")
    loop = run_in_process("ppo.py", *UPDATES, "--max-grad-norm", "0.3", "--ent-coef", "0.05", "--vf-coef", "0.7",
                          cwd=tmp_path, monkeypatch=monkeypatch)
    iterations, epochs, minibatches, optimizer = 2, 3, 4, loop["optimizer"]
    updates = iterations * epochs * minibatches
    assert [n for n, in shuffles] == [128] * iterations * epochs  # a fresh shuffle every epoch
    # every minibatch a quarter of the batch (the rollout scores 2 observations at a time)
    assert [x.shape[0] for x, *_ in log_softmaxes if x.shape[0] != 2] == [32] * updates
    assert [c[1] for c in clips] == [0.3] * updates
    assert len(value_clips) == updates  # --clip-vloss is on by default
    assert adam_steps(loop) == {updates}
    assert optimizer.param_groups[0]["eps"] == 1e-5
    assert loop["loss"].item() == pytest.approx(
        (loop["pg_loss"] - 0.05 * loop["entropy_loss"] + 0.7 * loop["v_loss"]).item(), rel=1e-6)
    scalars = read_scalars(run_dir(tmp_path))
    assert [v for _, v in scalars["charts/learning_rate"]] == pytest.approx([1e-2, 0.5e-2])  # annealed linearly
    assert scalars["losses/approx_kl"][-1][1] == pytest.approx(loop["approx_kl"].item(), rel=1e-5)
    assert scalars["losses/old_approx_kl"][-1][1] == pytest.approx(loop["old_approx_kl"].item(), rel=1e-5)
    assert scalars["losses/explained_variance"][-1][1] == pytest.approx(
        ppo.explained_variance(loop["values"], loop["returns"]), rel=1e-5)


def test_no_value_clipping_and_the_kl_stop(tmp_path, monkeypatch):
    value_clips = spy(monkeypatch, torch, "max")
    loop = run_in_process("ppo.py", *UPDATES, "--no-clip-vloss", "--target-kl", "0", cwd=tmp_path,
                          monkeypatch=monkeypatch)
    assert value_clips == []
    # a KL above 0 after the first epoch stops each iteration's update there: 2 iterations of 4 minibatches
    assert adam_steps(loop) == {2 * 4}


def test_evaluation_is_greedy_seeded_and_sees_normalized_observations(monkeypatch):
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    # Counting-v0's return depends on when the policy stops: a greedy policy scores the same every episode.
    agent = ppo.Agent(1, gym.spaces.Discrete(2))
    returns = ppo.evaluate(agent, ppo.ObsNormalizer((1,), 10.0, False), {"env_id": "tests.envs:Counting-v0"}, 20,
                           "eval", False, cpu, seed=0)
    assert len(set(returns)) == 1
    agent, off = ppo.Agent(4, gym.spaces.Discrete(2)), ppo.ObsNormalizer((4,), 10.0, False)
    first, again, other = (ppo.evaluate(agent, off, {"env_id": "CartPole-v1"}, 10, "eval", False, cpu, seed=seed)
                           for seed in (7, 7, 8))
    assert first == again != other
    # Statistics saying every observation lies far below the mean: every normalized input is -clip.
    agent, obs_norm = ppo.Agent(1, gym.spaces.Box(-1.0, 1.0, (1,))), ppo.ObsNormalizer((1,), 5.0, True)
    obs_norm.rms.mean[:] = 1000.0
    inputs = spy(monkeypatch, agent, "act_deterministic")
    ppo.evaluate(agent, obs_norm, {"env_id": "tests.envs:CountingBox-v0"}, 2, "eval", False, cpu, seed=0)
    assert inputs and all(torch.all(x == -5.0) for x, in inputs)
