"""What every algorithm script promises, tested on each: its flags, logs, checkpoints, evaluation, seeding,
handling of time-limit truncation, one-line errors for a user's mistakes, and the inline metadata that lets
a copied file say what it needs."""

import ast
import glob
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import a2c
import ddpg_continuous
import dqn
import ppo
from tests.envs import CONSTANT_REWARD_LIMIT, COUNTING_LIMIT
from tests.helpers import (REPO, logged_numbers, one_error_line, read_scalars, run_dir, run_in_process, run_ok,
                           run_script)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@dataclass(frozen=True)
class Script:
    name: str
    short_run: tuple
    """flags of a run of a few seconds on env_id"""
    tags: tuple
    """the TensorBoard tags a training run logs"""
    constant_reward_run: tuple
    """flags that learn the value of tests.envs:ConstantReward-v0's only state"""
    start_value: callable
    """checkpoint path -> the learned value of the all-zero observation"""
    env_id: str = "CartPole-v1"
    """the env short_run trains on"""
    skips: dict = field(default_factory=dict)
    """the shared tests that cannot apply to this script, {test name (or a common bad input's message): why};
    pytest reports them as skipped, with the reason"""
    constant_reward_env: str = "tests.envs:ConstantReward-v0"
    """ConstantReward-v0 or its variant with an action space the script handles"""
    strict_actions_env: str = "tests.envs:ShiftedActions-v0"
    """an env with an unusual action space (Discrete(2, start=-1); asymmetric Box bounds) that fails on any
    action outside it"""
    foreign_env: str = "tests.envs:MultiDiscreteAction-v0"
    """an env whose spaces the script refuses: a checkpoint trained on it is another script's"""
    same_env_script: tuple = ("ddpg_continuous.py", "Pendulum-v1")
    """(another script, an env both scripts play): that script's checkpoint on that env is not this one's"""


def agent_start_value(module):
    """V(start state) of an actor-critic checkpoint of ppo.py or a2c.py."""
    def start_value(path):
        agent, _, _ = module.load_checkpoint(path, torch.device("cpu"))
        return agent.get_value(torch.zeros(1, 1)).item()
    return start_value


def dqn_start_value(path):
    q_network, _ = dqn.load_checkpoint(path, torch.device("cpu"))
    return q_network(torch.zeros(1, 1)).max().item()


def ddpg_start_value(path):
    actor, _ = ddpg_continuous.load_checkpoint(path, torch.device("cpu"))
    qf = ddpg_continuous.QNetwork(1, 1)  # the critic, which acting does not need, from the file itself
    qf.load_state_dict(torch.load(path, weights_only=True)["model"]["qf"])
    obs = torch.zeros(1, 1)
    return qf(obs, actor(obs)).item()


PPO_TAGS = ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
            "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/old_approx_kl",
            "losses/clipfrac", "losses/explained_variance")

SCRIPTS = [
    Script("ppo.py", ("--total-timesteps", "2048"), PPO_TAGS,
           ("--total-timesteps", "20480", "--learning-rate", "1e-3"), agent_start_value(ppo)),
    Script("dqn.py", ("--total-timesteps", "3000", "--learning-starts", "500", "--buffer-size", "1000",
                      "--batch-size", "32", "--target-network-frequency", "100"),
           ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/epsilon", "losses/td_loss",
            "losses/q_values"),
           ("--total-timesteps", "20000", "--learning-starts", "500", "--train-frequency", "1", "--buffer-size",
            "5000", "--batch-size", "64", "--target-network-frequency", "100", "--learning-rate", "1e-3"),
           dqn_start_value, foreign_env="Pendulum-v1", same_env_script=("ppo.py", "CartPole-v1"),
           skips={"test_films_mujoco_headless_and_without_its_gl_library_gets_one_line":
                  "MuJoCo's envs have continuous actions: no dqn.py checkpoint holds one"}),
    # Pixels: ppo_atari.py takes ALE games only, so the tests on the tiny envs of tests/envs.py cannot apply.
    # tests/test_ppo_atari.py covers that ground on real games: logged scores checked game by game against
    # the emulator's own rewards, including games cut by a frame limit.
    Script("ppo_atari.py", ("--num-envs", "4", "--num-steps", "128", "--total-timesteps", "3072",
                            "--update-epochs", "1", "--num-minibatches", "2"), PPO_TAGS,
           (), None, env_id="BreakoutNoFrameskip-v4", foreign_env="CartPole-v1",
           skips={"test_truncated_episodes_bootstrap_to_the_infinite_horizon_value":
                  "needs tests.envs:ConstantReward-v0, not an ALE game",
                  "test_episode_statistics_add_up_every_step_of_every_env":
                  "needs tests.envs:ConstantReward-v0, not an ALE game",
                  "test_actions_reach_the_env_inside_its_own_action_space": "ALE games number their actions from 0",
                  "test_films_mujoco_headless_and_without_its_gl_library_gets_one_line":
                  "its checkpoints hold ALE games, which do not load MuJoCo",
                  "test_mujoco_without_its_gl_library_gets_one_line":
                  "it makes no MuJoCo env (a MuJoCo id gets 'not an Atari game', or 'cannot make env' where MuJoCo's "
                  "GL library is missing), so it has no MuJoCo GL line",
                  "test_another_scripts_checkpoint_of_an_env_it_plays_gets_one_line":
                  "no other script plays an Atari game",
                  "need a convolutional network: use ppo_atari.py":
                  "the message names this script itself; ppo_atari.py's own row asks for 'not an Atari game'",
                  **dict.fromkeys(("needs a flat Box observation space",
                                   "needs a flat Box observation space, got Tuple"),
                                  "any env but an ALE game gets 'not an Atari game' (ppo_atari.py's own rows)")}),
    # One torch thread: this script's default is one per core, and the suite runs a test per core.
    Script("ddpg_continuous.py", ("--total-timesteps", "2000", "--learning-starts", "1800", "--buffer-size", "2000",
                                  "--batch-size", "32", "--torch-threads", "1"),
           ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "losses/qf_loss", "losses/qf_values",
            "losses/actor_loss"),
           ("--total-timesteps", "3000", "--learning-starts", "200", "--buffer-size", "3000", "--batch-size", "64",
            "--learning-rate", "1e-3", "--tau", "0.05", "--torch-threads", "1"),
           ddpg_start_value, env_id="Pendulum-v1", constant_reward_env="tests.envs:ConstantRewardBox-v0",
           strict_actions_env="tests.envs:AsymmetricBounds-v0", foreign_env="CartPole-v1",
           same_env_script=("ppo.py", "Pendulum-v1")),
    Script("a2c.py", ("--total-timesteps", "2000"),
           ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
            "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/explained_variance"),
           ("--total-timesteps", "20000", "--learning-rate", "1e-3"), agent_start_value(a2c)),
]
SCRIPT = {script.name: script for script in SCRIPTS}
by_name = pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])


@pytest.fixture(autouse=True)
def skip_what_cannot_apply(request):
    """Skip a shared test (or a common bad input) that the script lists in its `skips`, with the reason."""
    params = request.node.callspec.params if hasattr(request.node, "callspec") else {}
    script = params.get("script")
    for key in (request.node.originalname, params.get("message")):
        if script is not None and key in script.skips:
            pytest.skip(f"{script.name}: {script.skips[key]}")


@pytest.mark.slow
@by_name
def test_smoke_with_checkpoint_video_tracking_and_evaluation(tmp_path, script):
    result = run_ok(script.name, "--env-id", script.env_id, *script.short_run, "--save-model", "--capture-video",
                    "--track", "--eval-episodes", "2", cwd=tmp_path)
    assert "eval: mean return" in result.stdout
    assert re.search(r"^step \d+/\d+ \| SPS \d+ \| .* \| \d+s elapsed, ~\d+s left$", result.stdout, re.M), result.stdout
    run = run_dir(tmp_path)
    scalars = read_scalars(run)
    for tag in script.tags + ("eval/episodic_return",):
        assert tag in scalars, f"{tag} not logged"
    assert len(scalars["eval/episodic_return"]) == 2
    assert glob.glob(str(tmp_path / "videos" / run.name / "*.mp4")), "no training video"
    assert glob.glob(str(tmp_path / "videos" / f"{run.name}-eval" / "*.mp4")), "no evaluation video"
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*")), "no offline W&B run"

    stem = script.name[: -len(".py")]
    checkpoint = torch.load(run / f"{stem}.pt", weights_only=True)
    assert checkpoint["args"]["env_id"] == script.env_id and checkpoint["args"]["seed"] == 1
    # A checkpoint is read onto the CPU and only its networks move to the device, so it loads for any device
    # (on a GPU machine, statistics mapped onto the GPU once broke .numpy()). "meta" stands in for a GPU here.
    loaded = importlib.import_module(stem).load_checkpoint(str(run / f"{stem}.pt"), torch.device("meta"))
    networks = [part for part in loaded if isinstance(part, torch.nn.Module)]
    assert networks and all(p.device.type == "meta" for net in networks for p in net.parameters())
    evaluation = run_ok(script.name, "--eval-checkpoint", str(run / f"{stem}.pt"), "--eval-episodes", "3",
                        "--capture-video", cwd=tmp_path)
    assert "over 3 episodes" in evaluation.stdout
    assert glob.glob(str(tmp_path / "videos" / f"{stem}-eval__*" / "*.mp4")), "no video of the checkpoint"


@pytest.mark.slow
@by_name
def test_same_seed_gives_the_same_numbers(tmp_path, script):
    first, second = (logged_numbers(script.name, "--env-id", script.env_id, "--seed", "3", *script.short_run,
                                    cwd=tmp_path / name)
                     for name in ("a", "b"))
    assert first == second
    assert len(first["charts/episodic_return"]) >= 10


# The scripts as they were before train() took the loop (the project's commit c0f0410): the reference that the
# reordered files must match number for number. ddpg_continuous.py then also switched torch's float32 products to
# oneDNN's kernels where oneDNN computes them in float32; its reference runs without that switch, which it no
# longer makes (the same products, rounded otherwise).
BEFORE_TRAIN_FUNCTION = "c0f0410"
SAME_AS_BEFORE = [
    ("ppo.py", ("--total-timesteps", "2048")),
    ("ppo.py", ("--env-id", "InvertedPendulum-v4", "--total-timesteps", "4096")),
    ("a2c.py", ("--total-timesteps", "2000")),
    ("a2c.py", ("--env-id", "InvertedPendulum-v4", "--total-timesteps", "2000")),
    ("dqn.py", SCRIPT["dqn.py"].short_run),
    ("ddpg_continuous.py", ("--env-id", "Pendulum-v1", "--num-envs", "2", "--total-timesteps", "1600",
                            "--learning-starts", "1000", "--buffer-size", "2000", "--batch-size", "32",
                            "--torch-threads", "1")),
    ("ppo_atari.py", ("--num-envs", "2", "--num-steps", "64", "--total-timesteps", "768", "--update-epochs", "2",
                      "--num-minibatches", "2", "--torch-threads", "1")),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, flags", SAME_AS_BEFORE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SAME_AS_BEFORE)])
def test_a_run_logs_the_numbers_it_logged_before_train_took_the_loop(tmp_path, name, flags):
    before = subprocess.run(["git", "show", f"{BEFORE_TRAIN_FUNCTION}:{name}"], cwd=REPO, capture_output=True,
                            text=True)
    if before.returncode != 0:
        pytest.skip(f"no git history here to take {name} from")
    source = before.stdout
    if name == "ddpg_continuous.py":
        assert source.count("\n    float32_products_on_onednn()\n") == 1
        source = source.replace("\n    float32_products_on_onednn()\n", "\n")
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / name).write_text(source)
    flags = (*flags, "--seed", "3", "--save-model", "--eval-episodes", "2")
    old = logged_numbers(str(tmp_path / "before" / name), *flags, cwd=tmp_path / "old")
    new = logged_numbers(name, *flags, cwd=tmp_path / "new")
    assert old == new
    assert old["charts/episodic_return"], "no episode ended: the comparison would miss the episode statistics"


@pytest.mark.slow
@by_name
def test_truncated_episodes_bootstrap_to_the_infinite_horizon_value(tmp_path, script):
    # Every episode of ConstantReward-v0 is cut by its time limit; the state's true value is 1 / (1 - gamma).
    gamma = 0.9
    run_ok(script.name, "--env-id", script.constant_reward_env, "--gamma", str(gamma),
           *script.constant_reward_run, "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    value = script.start_value(str(run_dir(tmp_path) / f"{script.name[: -len('.py')]}.pt"))
    truncated_sum = (1 - gamma**CONSTANT_REWARD_LIMIT) / (1 - gamma)  # 6.5: the most "truncation = end" learns
    assert value == pytest.approx(1 / (1 - gamma), abs=0.5), f"V(s0) = {value}, truncated sum {truncated_sum:.2f}"


# The replay-buffer scripts: a buffer of 10 transitions of Counting-v0's one-number observations.
REPLAY_BUFFERS = {"dqn.py": lambda: dqn.ReplayBuffer(10, (1,), seed=0),
                  "ddpg_continuous.py": lambda: ddpg_continuous.ReplayBuffer(10, (1,), 1, seed=0)}


@pytest.mark.parametrize("name", REPLAY_BUFFERS)
def test_episode_ends_store_the_real_final_observation_and_only_termination(name):
    module = importlib.import_module(name[: -len(".py")])
    rb = REPLAY_BUFFERS[name]()
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("tests.envs:Counting-v0")] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = envs.reset(seed=0)
    # env 0 always plays 0 and is truncated at step 3; env 1 plays 1 at its second step and terminates.
    for actions in ([0, 0], [0, 1], [0, 0]):
        next_obs, rewards, terminations, truncations, infos = envs.step(np.array(actions))
        stored = np.array(actions).reshape(-1, *rb.actions.shape[1:])  # DDPG stores action vectors
        rb.add(obs, module.real_next_obs(next_obs, infos), stored, rewards, terminations)
        obs = next_obs
    rows = [(o[0], a, no[0], term)
            for o, a, no, term in zip(rb.obs[:6], rb.actions.reshape(10)[:6], rb.next_obs, rb.terminations)]
    # rows alternate env 0, env 1. Env 1 terminated at its step 2 (s' = 2, not the reset 0) and restarted.
    assert rows[:4] == [(0, 0, 1, 0), (0, 0, 1, 0), (1, 0, 2, 0), (1, 1, 2, 1)]
    # Env 0 was truncated at the limit: s' is its final observation 3, and the transition still bootstraps.
    assert rows[4] == (2, 0, COUNTING_LIMIT, 0)
    assert rows[5] == (0, 0, 1, 0)  # env 1's new episode starts from the reset observation


# A run of each replay-buffer script on a Counting env with 4 envs: 400 random steps, then 200 of learning.
COUNTING_RUNS = {"dqn.py": ("tests.envs:Counting-v0", ("--learning-starts", "400", "--batch-size", "32")),
                 "ddpg_continuous.py": ("tests.envs:CountingBox-v0", ("--learning-starts", "400", "--batch-size",
                                                                      "32", "--torch-threads", "1"))}


@pytest.mark.parametrize("name", COUNTING_RUNS)
def test_the_training_loop_stores_real_final_observations_and_only_termination(tmp_path, monkeypatch, name):
    # Counting's observation is the step count, so every stored transition must read s' = s + 1, including
    # those that end an episode: with the reset observation 0 as s' a time-limit cut would read s' = 0.
    env_id, flags = COUNTING_RUNS[name]
    loop = run_in_process(name, "--env-id", env_id, "--num-envs", "4", "--total-timesteps", "600",
                          "--buffer-size", "1000", *flags, cwd=tmp_path, monkeypatch=monkeypatch)
    rb = loop["rb"]
    obs, next_obs, terminated = rb.obs[: rb.count, 0], rb.next_obs[: rb.count, 0], rb.terminations[: rb.count]
    actions = rb.actions[: rb.count].reshape(rb.count, -1)[:, 0]
    assert rb.count == 600 and np.array_equal(next_obs, obs + 1)
    # Terminated exactly where the action ended the episode (action 1, or a first component above 0).
    assert np.array_equal(terminated, (actions > 0).astype(np.float32))
    # Cut by the time limit: stored as not terminated, with the final observation COUNTING_LIMIT as s'.
    truncated = (next_obs == COUNTING_LIMIT) & (terminated == 0)
    assert truncated.sum() > 10 and terminated.sum() > 10
    assert obs.max() == COUNTING_LIMIT - 1, "a stored s is an episode's final observation: two episodes joined"


@by_name
def test_episode_statistics_add_up_every_step_of_every_env(tmp_path, script):
    # ConstantReward-v0 pays 1 per step and cuts every episode after CONSTANT_REWARD_LIMIT steps, so each
    # env's episodes all return and last exactly that many, and end together every LIMIT iterations.
    num_envs = 3
    run_ok(script.name, *script.short_run, "--env-id", script.constant_reward_env, "--num-envs", str(num_envs),
           cwd=tmp_path)
    scalars = read_scalars(run_dir(tmp_path))
    returns, lengths = scalars["charts/episodic_return"], scalars["charts/episodic_length"]
    iterations = scalars["charts/SPS"][-1][0] // num_envs
    assert len(returns) == len(lengths) == num_envs * (iterations // CONSTANT_REWARD_LIMIT) > 0
    assert {value for _, value in returns + lengths} == {CONSTANT_REWARD_LIMIT}
    assert {step for step, _ in returns} == {num_envs * CONSTANT_REWARD_LIMIT * k
                                             for k in range(1, iterations // CONSTANT_REWARD_LIMIT + 1)}


@by_name
def test_actions_reach_the_env_inside_its_own_action_space(tmp_path, script):
    # ShiftedActions-v0 takes actions -1 and 0, AsymmetricBounds-v0 actions within [0, 2] x [-3, 5] x [-10, -8];
    # both fail on anything else, in training and in evaluation.
    run_ok(script.name, *script.short_run, "--env-id", script.strict_actions_env, "--save-model",
           "--eval-episodes", "1", cwd=tmp_path)


@pytest.mark.parametrize("script", [SCRIPT["ppo.py"], SCRIPT["a2c.py"]], ids=["ppo.py", "a2c.py"])
def test_actions_in_env_units_are_clipped_inside_asymmetric_bounds(tmp_path, script):
    # --action-mapping clip: the policy's actions (its mean starts at 0, outside [0, 2] and [-10, -8]) reach
    # the env clipped to its bounds, in training and in evaluation.
    run_ok(script.name, *script.short_run, "--env-id", "tests.envs:AsymmetricBounds-v0", "--action-mapping", "clip",
           "--save-model", "--eval-episodes", "1", cwd=tmp_path)


COMMON_BAD_INPUTS = [
    (("--env-id", "NoSuchEnv-v0"), "NoSuchEnv"),
    (("--env-id", "tests.envs:ImageObs-v0"), "need a convolutional network: use ppo_atari.py"),
    (("--env-id", "tests.envs:ScalarObs-v0"), "needs a flat Box observation space"),
    (("--env-id", "Blackjack-v1"), "needs a flat Box observation space, got Tuple"),
    (("--total-timesteps", "0"), "--total-timesteps must be positive"),
    (("--num-envs", "-1"), "--num-envs must be positive"),
    (("--learning-rate", "0"), "--learning-rate must be positive"),
    (("--gamma", "1.5"), "--gamma must be in [0, 1], got 1.5"),
    (("--eval-checkpoint", "missing.pt"), "no checkpoint"),
]
BAD_INPUTS = [(script, flags, message) for script in SCRIPTS for flags, message in COMMON_BAD_INPUTS] + [
    (SCRIPT["ppo.py"], ("--env-id", "tests.envs:MultiDiscreteAction-v0"), "MultiDiscrete"),
    *[(SCRIPT[name], ("--env-id", env_id), "Atari game, played from pixels: use ppo_atari.py")
      for name, env_id in [("ppo.py", "BreakoutNoFrameskip-v4"), ("dqn.py", "ALE/Pong-v5"),
                           ("ddpg_continuous.py", "PongNoFrameskip-v4"), ("a2c.py", "ALE/Breakout-v5")]],
    (SCRIPT["ppo.py"], ("--num-minibatches", "3"), "does not divide"),
    (SCRIPT["ppo.py"], ("--num-steps", "0"), "--num-steps must be positive"),
    (SCRIPT["ppo.py"], ("--total-timesteps", "100"), "smaller than one rollout"),
    (SCRIPT["dqn.py"], ("--env-id", "Pendulum-v1"), "ppo.py or ddpg_continuous.py"),
    (SCRIPT["dqn.py"], ("--batch-size", "64", "--buffer-size", "32"), "larger than --buffer-size"),
    (SCRIPT["dqn.py"], ("--buffer-size", "0"), "--buffer-size must be positive"),
    (SCRIPT["dqn.py"], ("--tau", "1.5"), "--tau must be in (0, 1]"),
    (SCRIPT["dqn.py"], ("--exploration-fraction", "0"), "--exploration-fraction must be in (0, 1]"),
    (SCRIPT["dqn.py"], ("--buffer-size", "100000000000"), "GiB of memory available"),
    (SCRIPT["ddpg_continuous.py"], ("--env-id", "CartPole-v1"), "use dqn.py or ppo.py"),
    (SCRIPT["ddpg_continuous.py"], ("--env-id", "tests.envs:UnboundedAction-v0"), "unbounded"),
    (SCRIPT["ddpg_continuous.py"], ("--batch-size", "64", "--buffer-size", "32"), "larger than --buffer-size"),
    (SCRIPT["ddpg_continuous.py"], ("--policy-frequency", "0"), "--policy-frequency must be positive"),
    (SCRIPT["ddpg_continuous.py"], ("--tau", "1.5"), "--tau must be in (0, 1]"),
    (SCRIPT["ddpg_continuous.py"], ("--buffer-size", "100000000000"), "GiB of memory available"),
    (SCRIPT["a2c.py"], ("--env-id", "tests.envs:MultiDiscreteAction-v0"), "MultiDiscrete"),
    (SCRIPT["a2c.py"], ("--num-steps", "0"), "--num-steps must be positive"),
    (SCRIPT["a2c.py"], ("--total-timesteps", "10"), "smaller than one rollout"),
    *[(SCRIPT[name], ("--gae-lambda", "-0.1"), "--gae-lambda must be in [0, 1], got -0.1")
      for name in ("ppo.py", "a2c.py", "ppo_atari.py")],
]
BAD_INPUTS += [(SCRIPT["ppo_atari.py"], flags, message) for flags, message in [
    (("--env-id", "CartPole-v1"), "for vector observations use ppo.py"),
    (("--env-id", "tests.envs:ImageObs-v0"), "not an Atari game"),
    (("--num-minibatches", "3"), "does not divide"),
    (("--total-timesteps", "100"), "smaller than one rollout"),
]]


@pytest.mark.parametrize("script, flags, message", BAD_INPUTS,
                         ids=[f"{script.name}-{message}" for script, _, message in BAD_INPUTS])
def test_bad_input_gets_one_line_and_writes_nothing(tmp_path, script, flags, message):
    assert message in one_error_line(run_script(script.name, *flags, cwd=tmp_path), script.name)
    assert list(tmp_path.iterdir()) == []


@by_name
def test_a_file_that_is_not_a_checkpoint_gets_one_line(tmp_path, script):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    error = one_error_line(run_script(script.name, "--eval-checkpoint", "notes.pt", cwd=tmp_path), script.name)
    assert error.startswith(f"{script.name}: error: cannot load checkpoint notes.pt")
    # Weights saved by hand, as a research copy might: a torch file, but with no saved args to rebuild from.
    torch.save({"layer.weight": torch.zeros(2, 2)}, tmp_path / "weights.pt")
    error = one_error_line(run_script(script.name, "--eval-checkpoint", "weights.pt", cwd=tmp_path), script.name)
    assert error == f"{script.name}: error: cannot load checkpoint weights.pt: it holds no saved args: it was not " \
        "written by --save-model"


@by_name
def test_another_scripts_checkpoint_gets_one_line_naming_its_env(tmp_path, script):
    # Only the env id matters: the script makes the checkpoint's env, and refuses it before reading any weights.
    torch.save({"args": {"env_id": script.foreign_env}}, tmp_path / "other.pt")
    error = one_error_line(run_script(script.name, "--eval-checkpoint", "other.pt", cwd=tmp_path), script.name)
    assert error.startswith(f"{script.name}: error: cannot load checkpoint other.pt: it was trained on "
                            f"{script.foreign_env}")


@pytest.mark.slow
@by_name
def test_another_scripts_checkpoint_of_an_env_it_plays_gets_one_line(tmp_path, script):
    other, env_id = script.same_env_script
    run_ok(other, *SCRIPT[other].short_run, "--env-id", env_id, "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    checkpoint = next((tmp_path / "runs").glob("*/*.pt")).relative_to(tmp_path)
    error = one_error_line(run_script(script.name, "--eval-checkpoint", str(checkpoint), cwd=tmp_path), script.name)
    assert error.startswith(f"{script.name}: error: cannot load checkpoint {checkpoint}: its weights are not "
                            f"{script.name}'s network")  # or networks
    assert error.endswith(f" for {env_id}: another script's checkpoint?")


HIDE_LIBEGL = """
import ctypes

_open = ctypes.CDLL.__init__
def _refuse_egl(self, name, *args, **kwargs):
    if name and "EGL" in str(name):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")
    _open(self, name, *args, **kwargs)
ctypes.CDLL.__init__ = _refuse_egl
"""


@pytest.fixture
def without_libegl(tmp_path_factory) -> dict:
    """The environment of a machine with MUJOCO_GL=egl and no libEGL (seen on a GPU machine), where MuJoCo's
    import inside gym.make raised an AttributeError from PyOpenGL: a sitecustomize that refuses to load libEGL
    makes this machine one."""
    hook = tmp_path_factory.mktemp("no_libegl")
    (hook / "sitecustomize.py").write_text(HIDE_LIBEGL)
    return {"PYTHONPATH": f"{hook}{os.pathsep}{REPO}"}


def assert_gl_failure_line(result, script):
    assert one_error_line(result, script.name).startswith(
        f"{script.name}: error: MuJoCo cannot load its OpenGL backend MUJOCO_GL=egl (AttributeError")


@by_name
def test_mujoco_without_its_gl_library_gets_one_line(without_libegl, tmp_path, script):
    result = run_script(script.name, "--env-id", "Hopper-v4", cwd=tmp_path, env=without_libegl)
    assert_gl_failure_line(result, script)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@by_name
def test_films_mujoco_headless_and_without_its_gl_library_gets_one_line(without_libegl, tmp_path, script):
    # With the GL library (MUJOCO_GL=egl, no display), training films MuJoCo's own frames.
    run_ok(script.name, "--env-id", "Hopper-v4", *script.short_run, "--save-model", "--eval-episodes", "1",
           "--capture-video", cwd=tmp_path)
    run = run_dir(tmp_path)
    assert glob.glob(str(tmp_path / "videos" / run.name / "*.mp4")), "no video of MuJoCo training"
    # A checkpoint trained on one machine, filmed on another that lacks the GL library: the env is made from
    # the checkpoint's args, past the training-time check.
    filmed = sorted(glob.glob(str(tmp_path / "videos" / "**"), recursive=True))
    result = run_script(script.name, "--eval-checkpoint", str(run / script.name.replace(".py", ".pt")),
                        "--capture-video", cwd=tmp_path, env=without_libegl)
    assert_gl_failure_line(result, script)
    assert sorted(glob.glob(str(tmp_path / "videos" / "**"), recursive=True)) == filmed, "it wrote a video"


# ------------------------------------------------------------------------- inline script metadata (PEP 723)

PEP_723_BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def script_metadata(source: str) -> dict:
    """The `# /// script` block of a file, parsed as PEP 723 specifies."""
    (block,) = [m for m in PEP_723_BLOCK.finditer(source) if m.group("type") == "script"]
    lines = block.group("content").splitlines(keepends=True)
    return tomllib.loads("".join(line[2:] if line.startswith("# ") else line[1:] for line in lines))


def required_imports(source: str) -> set:
    """Top-level names of the third-party modules a file imports, except optional ones (imported inside a
    try whose handler catches ImportError)."""
    tree, optional = ast.parse(source), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(isinstance(h.type, ast.Name) and h.type.id in (
                "ImportError", "ModuleNotFoundError") for h in node.handlers):
            optional |= {id(child) for statement in node.body for child in ast.walk(statement)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names}


@by_name
def test_inline_metadata_lists_a_package_for_every_import(script):
    # `uv run SCRIPT` installs what the block lists, so a copied file runs alone: every module the script
    # imports must come from a listed distribution or one its listed extras require (as installed here:
    # importlib.metadata knows which).
    source = (REPO / script.name).read_text()
    metadata = script_metadata(source)
    assert metadata["requires-python"].startswith(">=3.10")
    listed = set()
    for dependency in map(Requirement, metadata["dependencies"]):  # a listed extra installs its own requirements
        listed.add(canonicalize_name(dependency.name))
        for needed in map(Requirement, importlib.metadata.requires(dependency.name) or []):
            if needed.marker and any(needed.marker.evaluate({"extra": extra}) for extra in dependency.extras):
                listed.add(canonicalize_name(needed.name))
    providers = importlib.metadata.packages_distributions()
    imports = required_imports(source)
    assert {"torch", "numpy", "gymnasium", "tyro"} <= imports
    for module in imports:
        assert {canonicalize_name(d) for d in providers.get(module, [])} & listed, f"{module} is not listed"
