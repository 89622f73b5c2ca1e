"""dqn.py: its replay buffer and TD target against hand computations, its training loop read back from a run in
the test's process (gradient steps, target updates, the loss, epsilon, the saved network), and what only dqn.py
does. What every script shares (flags, checkpoints, errors, truncation) is tested in test_common.py."""

import numpy as np
import pytest
import torch

import dqn
from tests.helpers import last_mean, read_scalars, run_dir, run_in_process, run_ok, spy


def test_buffer_wraps_around_overwriting_the_oldest_transitions():
    rb = dqn.ReplayBuffer(6, (1,), seed=0)
    for start in (0, 2, 4, 6):  # transitions numbered 0..7, two envs at a time
        numbers = np.array([start, start + 1], np.float32)
        rb.add(numbers[:, None], numbers[:, None] + 0.5, np.array([start, start + 1]), numbers, np.zeros(2))
    assert rb.count == 6 and rb.pos == 2
    assert rb.obs[:, 0].tolist() == [6, 7, 2, 3, 4, 5]  # 0 and 1 were overwritten by 6 and 7
    assert rb.next_obs[:, 0].tolist() == [6.5, 7.5, 2.5, 3.5, 4.5, 5.5]
    assert rb.actions.tolist() == [6, 7, 2, 3, 4, 5]
    assert rb.rewards.tolist() == [6, 7, 2, 3, 4, 5]


def test_sample_has_the_network_dtypes_and_only_stored_transitions():
    rb = dqn.ReplayBuffer(100, (3,), seed=0)
    rb.add(np.ones((4, 3)), np.full((4, 3), 2.0), np.array([0, 1, 0, 1]), np.ones(4), np.array([0, 0, 1, 0]))
    obs, actions, rewards, next_obs, terminations = rb.sample(32, torch.device("cpu"))
    assert obs.shape == next_obs.shape == (32, 3) and obs.dtype == next_obs.dtype == torch.float32
    assert actions.shape == (32,) and actions.dtype == torch.int64
    assert rewards.dtype == terminations.dtype == torch.float32
    assert torch.all(obs == 1) and torch.all(next_obs == 2), "sampled rows that were never written"


def test_sample_draws_every_stored_row_the_newest_included():
    rb = dqn.ReplayBuffer(100, (1,), seed=0)
    rb.add(np.arange(4.0)[:, None], np.zeros((4, 1)), np.zeros(4, np.int64), np.zeros(4), np.zeros(4))
    obs = rb.sample(1000, torch.device("cpu"))[0]
    assert sorted(set(obs[:, 0].tolist())) == [0.0, 1.0, 2.0, 3.0]


def test_td_target_matches_hand_computation():
    rewards, terminations = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    next_q_target = torch.tensor([[1.0, 3.0], [5.0, 0.0]])
    # DQN: 1 + 0.5 * max(1, 3) = 2.5; the terminated row keeps its reward only.
    assert dqn.td_target(rewards, terminations, next_q_target, 0.5).tolist() == [2.5, 2.0]
    # Double DQN: the online network prefers action 0, whose target value is 1: 1 + 0.5 * 1 = 1.5.
    next_q_online = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    assert dqn.td_target(rewards, terminations, next_q_target, 0.5, next_q_online).tolist() == [1.5, 2.0]


def test_target_moves_once_for_every_multiple_of_its_frequency_crossed():
    # Frequency 4: 3 envs go 3 -> 6 and cross 4 once; 10 envs go 10 -> 20 and cross 12, 16 and 20.
    assert dqn.target_update_rate(0.5, 3, 3, 4) == 0.0
    assert dqn.target_update_rate(0.5, 6, 3, 4) == 0.5
    assert dqn.target_update_rate(0.5, 20, 10, 4) == pytest.approx(1 - 0.5**3)  # three Polyak steps of 0.5
    assert dqn.target_update_rate(1.0, 20, 10, 4) == 1.0  # a hard copy stays a copy


def test_epsilon_decays_linearly_then_stays():
    values = [dqn.linear_schedule(1.0, 0.05, 100, t) for t in (0, 50, 100, 200)]
    assert values == pytest.approx([1.0, 0.525, 0.05, 0.05])


def test_steps_are_counted_across_envs(tmp_path):
    # 4 envs x 1000 iterations = 4000 env steps; after 1000 warm-up steps, one gradient step per 10 env steps
    # gives 300, and the TD loss is logged every 100 of them.
    run_ok("dqn.py", "--num-envs", "4", "--total-timesteps", "4000", "--learning-starts", "1000",
           "--buffer-size", "2000", "--train-frequency", "10", cwd=tmp_path)
    scalars = read_scalars(run_dir(tmp_path))
    assert scalars["charts/SPS"][-1][0] == 4000
    assert len(scalars["losses/td_loss"]) == 3


def test_the_loop_trains_moves_its_target_and_saves_as_configured(tmp_path, monkeypatch):
    # 8 envs and a gradient step per 2 env steps: 4 gradient steps per iteration, and 4 multiples of the target
    # frequency 2 crossed, each a Polyak step of 0.5.
    lerps = spy(monkeypatch, torch, "_foreach_lerp_")  # (targets, online weights, rate)
    loop = run_in_process("dqn.py", "--env-id", "tests.envs:Counting-v0", "--num-envs", "8", "--total-timesteps",
                          "800", "--learning-starts", "400", "--train-frequency", "2", "--tau", "0.5",
                          "--target-network-frequency", "2", "--exploration-fraction", "0.5", "--buffer-size",
                          "1000", "--batch-size", "32", "--save-model", "--eval-episodes", "1", cwd=tmp_path,
                          monkeypatch=monkeypatch)
    assert loop["gradient_steps"] == (800 - 400) // 2
    assert [rate for _, _, rate in lerps] == pytest.approx([1 - 0.5**4] * 100)
    # The loss is the mean squared TD error of the last minibatch.
    assert loop["loss"].item() == pytest.approx(((loop["q_values"] - loop["target"]) ** 2).mean().item())
    # Epsilon decays over the first half of the run, as logged (every 2nd of the 100 iterations).
    logged = read_scalars(run_dir(tmp_path))["charts/epsilon"]
    assert len(logged) == 50
    for step, epsilon in logged:
        assert epsilon == pytest.approx(dqn.linear_schedule(1.0, 0.05, 400, step), abs=1e-6)
    # The checkpoint holds the online network, not its target (a Polyak step behind it).
    saved = torch.load(run_dir(tmp_path) / "dqn.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in loop["q_network"].state_dict().items())
    assert not all(torch.equal(saved[k], v) for k, v in loop["target_network"].state_dict().items())


@pytest.mark.parametrize("double_q", [False, True], ids=["dqn", "double-dqn"])
def test_the_td_target_bootstraps_from_the_target_network(tmp_path, monkeypatch, double_q):
    # ConstantReward-v0 pays 1 forever. With the target network never refreshed, every TD target is
    # 1 + gamma * Q_target(s0, a') for the initial Q_target, so both actions' values converge to that number, not
    # to the 1 / (1 - gamma) = 10 that bootstrapping from the online network would climb towards.
    loop = run_in_process("dqn.py", "--env-id", "tests.envs:ConstantReward-v0", "--gamma", "0.9",
                          "--total-timesteps", "3000", "--learning-starts", "200", "--train-frequency", "1",
                          "--target-network-frequency", "100000", "--learning-rate", "1e-3", "--batch-size", "64",
                          "--buffer-size", "3000", *(["--double-q"] if double_q else []), cwd=tmp_path,
                          monkeypatch=monkeypatch)
    with torch.no_grad():
        q, q_target = loop["q_network"](torch.zeros(1, 1))[0], loop["target_network"](torch.zeros(1, 1))[0]
    if not double_q:  # a' maximizes Q_target
        assert q.tolist() == pytest.approx([1 + 0.9 * q_target.max().item()] * 2, abs=0.05)
        return
    # Double DQN: a' is the online network's choice, so the target lies between the two actions' targets...
    assert all(1 + 0.9 * q_target.min() - 0.05 <= v <= 1 + 0.9 * q_target.max() + 0.05 for v in q.tolist())
    # ...and the last minibatch chose a' with the online network (one optimizer step ago), not with the target.
    with torch.no_grad():
        online, target = loop["q_network"](loop["b_next_obs"]), loop["target_network"](loop["b_next_obs"])
    chooser = loop["next_q_online"]
    assert (chooser - online).abs().max() < 0.1 * (chooser - target).abs().max()


def test_exploration_follows_epsilon_and_the_seed(tmp_path, monkeypatch):
    # No learning (learning starts after the run). Epsilon 0: every stored action is the network's greedy one.
    flags = ("--env-id", "tests.envs:Counting-v0", "--num-envs", "2", "--total-timesteps", "200",
             "--learning-starts", "200", "--buffer-size", "200")
    greedy = run_in_process("dqn.py", *flags, "--start-e", "0", "--end-e", "0", cwd=tmp_path / "greedy",
                            monkeypatch=monkeypatch)
    rb = greedy["rb"]
    with torch.no_grad():
        best = greedy["q_network"](torch.from_numpy(rb.obs)).argmax(1).numpy()
    assert np.array_equal(rb.actions, best)
    # Epsilon 1: the actions are random, and another seed draws other ones.
    actions = []
    for seed in ("1", "2"):
        loop = run_in_process("dqn.py", *flags, "--start-e", "1", "--end-e", "1", "--seed", seed,
                              cwd=tmp_path / seed, monkeypatch=monkeypatch)
        actions.append(loop["rb"].actions.copy())
    assert 0.3 < actions[0].mean() < 0.7 and not np.array_equal(actions[0], actions[1])


def test_evaluation_sends_the_greedy_action_in_the_envs_own_numbering():
    # ShiftedActions-v0 numbers its actions -1 and 0 and fails on any other; the network prefers its second.
    q_network = dqn.QNetwork(1, 2)
    with torch.no_grad():
        q_network.fc3.bias.copy_(torch.tensor([0.0, 100.0]))
    returns = dqn.evaluate(q_network, {"env_id": "tests.envs:ShiftedActions-v0"}, 2, "", False,
                           torch.device("cpu"), 1)
    assert returns == [10.0, 10.0]


def test_evaluation_is_seeded():
    torch.manual_seed(0)
    q_network = dqn.QNetwork(4, 2)
    returns = [dqn.evaluate(q_network, {"env_id": "CartPole-v1"}, 5, "", False, torch.device("cpu"), seed)
               for seed in (1, 1, 2)]
    assert returns[0] == returns[1] != returns[2]


@pytest.mark.slow
def test_solves_cartpole(tmp_path):
    # dqn.py's defaults (CleanRL's): 500k steps, about 80 s here; seeds 1-3 all end at 500 over their last 10
    # episodes (benchmark/results/full). (Shorter tuned budgets were not reliable: 60k-100k steps ended below
    # 475 for most seeds.)
    run_ok("dqn.py", "--seed", "1", cwd=tmp_path)
    assert last_mean(read_scalars(run_dir(tmp_path)), "charts/episodic_return", 10) >= 475


@pytest.mark.slow
def test_learns_frozen_lake_from_one_hot_observations(tmp_path):
    # FrozenLake's observation is a Discrete(16) cell number, one-hot encoded by the script. On the ice without
    # slipping the greedy policy must reach the goal in every evaluation episode. With gamma 0.9 seeds 1-4 all
    # evaluated at 1.00 after 15k steps; with 0.99 a wasted step costs only 1% of the value, and 2 of 3 greedy
    # policies ran into a wall forever after 20k steps.
    result = run_ok("dqn.py", "--env-id", "tests.envs:FrozenLakeDeterministic-v0", "--seed", "1", "--gamma", "0.9",
                    "--total-timesteps", "15000", "--learning-starts", "1000", "--train-frequency", "2",
                    "--target-network-frequency", "200", "--batch-size", "64", "--learning-rate", "1e-3",
                    "--exploration-fraction", "0.3", "--save-model", "--eval-episodes", "10", cwd=tmp_path)
    assert "eval: mean return 1.00 over 10 episodes" in result.stdout
