"""What every algorithm script promises, tested on each: its flags, logs, checkpoints, evaluation, seeding,
handling of time-limit truncation, and one-line errors for a user's mistakes."""

import glob
from dataclasses import dataclass, field

import pytest
import torch

import dqn
import ppo
from tests.envs import CONSTANT_REWARD_LIMIT
from tests.helpers import logged_numbers, read_scalars, run_dir, run_ok, run_script


@dataclass(frozen=True)
class Script:
    name: str
    short_run: tuple
    """flags of a run of a few seconds on CartPole-v1"""
    tags: tuple
    """the TensorBoard tags a training run logs"""
    constant_reward_run: tuple
    """flags that learn the value of tests.envs:ConstantReward-v0's only state"""
    start_value: callable
    """checkpoint path -> the learned value of the all-zero observation"""
    env_id: str = "CartPole-v1"
    """the env short_run trains on (the script's default env)"""
    skips: dict = field(default_factory=dict)
    """the shared tests that cannot apply to this script, {test name (or a common bad input's message): why};
    pytest reports them as skipped, with the reason"""


def ppo_start_value(path):
    agent, _, _ = ppo.load_checkpoint(path, torch.device("cpu"))
    return agent.get_value(torch.zeros(1, 1)).item()


def dqn_start_value(path):
    q_network, _ = dqn.load_checkpoint(path, torch.device("cpu"))
    return q_network(torch.zeros(1, 1)).max().item()


SCRIPTS = [
    Script("ppo.py", ("--total-timesteps", "2048"),
           ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
            "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/old_approx_kl",
            "losses/clipfrac", "losses/explained_variance"),
           ("--total-timesteps", "20480", "--learning-rate", "1e-3"), ppo_start_value),
    Script("dqn.py", ("--total-timesteps", "3000", "--learning-starts", "500", "--buffer-size", "1000",
                      "--batch-size", "32", "--target-network-frequency", "100"),
           ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/epsilon", "losses/td_loss",
            "losses/q_values"),
           ("--total-timesteps", "20000", "--learning-starts", "500", "--train-frequency", "1", "--buffer-size",
            "5000", "--batch-size", "64", "--target-network-frequency", "100", "--learning-rate", "1e-3"),
           dqn_start_value),
    # Pixels: ppo_atari.py takes ALE games only, so the tests on the tiny envs of tests/envs.py cannot apply.
    # tests/test_ppo_atari.py covers that ground on real games: logged scores checked game by game against
    # the emulator's own rewards, including games cut by a frame limit.
    Script("ppo_atari.py", ("--num-envs", "4", "--num-steps", "128", "--total-timesteps", "3072",
                            "--update-epochs", "1", "--num-minibatches", "2"),
           ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
            "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/old_approx_kl",
            "losses/clipfrac", "losses/explained_variance"),
           (), None, env_id="BreakoutNoFrameskip-v4",
           skips={"test_truncated_episodes_bootstrap_to_the_infinite_horizon_value":
                  "needs tests.envs:ConstantReward-v0, not an ALE game",
                  "test_episode_statistics_add_up_every_step_of_every_env":
                  "needs tests.envs:ConstantReward-v0, not an ALE game",
                  "test_discrete_actions_may_be_numbered_from_any_start": "ALE games number their actions from 0",
                  "ppo_atari.py": "the message names this script itself, so the row could not fail; "
                                  "ppo_atari.py's own row asks for 'not an Atari game'"}),
]
by_name = pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])


@pytest.fixture(autouse=True)
def skip_what_cannot_apply(request):
    """Skip a shared test (or a common bad input) that the script lists in its `skips`, with the reason."""
    params = request.node.callspec.params if hasattr(request.node, "callspec") else {}
    script = params.get("script")
    for key in (request.node.originalname, params.get("message")):
        if script is not None and key in script.skips:
            pytest.skip(f"{script.name}: {script.skips[key]}")


@by_name
def test_smoke_with_checkpoint_video_tracking_and_evaluation(tmp_path, script):
    result = run_ok(script.name, *script.short_run, "--save-model", "--capture-video", "--track",
                    "--eval-episodes", "2", cwd=tmp_path)
    assert "eval: mean return" in result.stdout
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
    evaluation = run_ok(script.name, "--eval-checkpoint", str(run / f"{stem}.pt"), "--eval-episodes", "3",
                        "--capture-video", cwd=tmp_path)
    assert "over 3 episodes" in evaluation.stdout
    assert glob.glob(str(tmp_path / "videos" / f"{stem}-eval__*" / "*.mp4")), "no video of the checkpoint"


@by_name
def test_same_seed_gives_the_same_numbers(tmp_path, script):
    first, second = (logged_numbers(script.name, "--seed", "3", *script.short_run, cwd=tmp_path / name)
                     for name in ("a", "b"))
    assert first == second
    assert len(first["charts/episodic_return"]) >= 10


@by_name
def test_truncated_episodes_bootstrap_to_the_infinite_horizon_value(tmp_path, script):
    # Every episode of ConstantReward-v0 is cut by its time limit; the state's true value is 1 / (1 - gamma).
    gamma = 0.9
    run_ok(script.name, "--env-id", "tests.envs:ConstantReward-v0", "--gamma", str(gamma),
           *script.constant_reward_run, "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    value = script.start_value(str(run_dir(tmp_path) / f"{script.name[: -len('.py')]}.pt"))
    truncated_sum = (1 - gamma**CONSTANT_REWARD_LIMIT) / (1 - gamma)  # 6.5: the most "truncation = end" learns
    assert value == pytest.approx(1 / (1 - gamma), abs=0.5), f"V(s0) = {value}, truncated sum {truncated_sum:.2f}"


@by_name
def test_episode_statistics_add_up_every_step_of_every_env(tmp_path, script):
    # ConstantReward-v0 pays 1 per step and cuts every episode after CONSTANT_REWARD_LIMIT steps, so each
    # env's episodes all return and last exactly that many, and end together every LIMIT iterations.
    num_envs = 3
    run_ok(script.name, *script.short_run, "--env-id", "tests.envs:ConstantReward-v0", "--num-envs", str(num_envs),
           cwd=tmp_path)
    scalars = read_scalars(run_dir(tmp_path))
    returns, lengths = scalars["charts/episodic_return"], scalars["charts/episodic_length"]
    iterations = scalars["charts/SPS"][-1][0] // num_envs
    assert len(returns) == len(lengths) == num_envs * (iterations // CONSTANT_REWARD_LIMIT) > 0
    assert {value for _, value in returns + lengths} == {CONSTANT_REWARD_LIMIT}
    assert {step for step, _ in returns} == {num_envs * CONSTANT_REWARD_LIMIT * k
                                             for k in range(1, iterations // CONSTANT_REWARD_LIMIT + 1)}


@by_name
def test_discrete_actions_may_be_numbered_from_any_start(tmp_path, script):
    # ShiftedActions-v0 takes actions -1 and 0 and fails on anything else, in training and in evaluation.
    run_ok(script.name, *script.short_run, "--env-id", "tests.envs:ShiftedActions-v0", "--save-model",
           "--eval-episodes", "1", cwd=tmp_path)


COMMON_BAD_INPUTS = [
    (("--env-id", "NoSuchEnv-v0"), "NoSuchEnv"),
    (("--env-id", "tests.envs:ImageObs-v0"), "ppo_atari.py"),
    (("--total-timesteps", "0"), "--total-timesteps must be positive"),
    (("--num-envs", "-1"), "--num-envs must be positive"),
    (("--learning-rate", "0"), "--learning-rate must be positive"),
    (("--eval-checkpoint", "missing.pt"), "no checkpoint"),
]
BAD_INPUTS = [(script, flags, message) for script in SCRIPTS for flags, message in COMMON_BAD_INPUTS] + [
    (SCRIPTS[0], ("--env-id", "tests.envs:MultiDiscreteAction-v0"), "MultiDiscrete"),
    (SCRIPTS[0], ("--num-minibatches", "3"), "does not divide"),
    (SCRIPTS[0], ("--num-steps", "0"), "--num-steps must be positive"),
    (SCRIPTS[0], ("--total-timesteps", "100"), "smaller than one rollout"),
    (SCRIPTS[1], ("--env-id", "Pendulum-v1"), "ppo.py or ddpg_continuous.py"),
    (SCRIPTS[1], ("--batch-size", "64", "--buffer-size", "32"), "larger than --buffer-size"),
    (SCRIPTS[1], ("--buffer-size", "0"), "--buffer-size must be positive"),
    (SCRIPTS[1], ("--tau", "1.5"), "--tau must be in (0, 1]"),
    (SCRIPTS[1], ("--exploration-fraction", "0"), "--exploration-fraction must be in (0, 1]"),
    (SCRIPTS[1], ("--buffer-size", "100000000000"), "GiB of memory available"),
]
BAD_INPUTS += [(next(s for s in SCRIPTS if s.name == "ppo_atari.py"), flags, message) for flags, message in [
    (("--env-id", "CartPole-v1"), "for vector observations use ppo.py"),
    (("--env-id", "tests.envs:ImageObs-v0"), "not an Atari game"),
    (("--num-minibatches", "3"), "does not divide"),
    (("--total-timesteps", "100"), "smaller than one rollout"),
]]


@pytest.mark.parametrize("script, flags, message", BAD_INPUTS,
                         ids=[f"{script.name}-{message}" for script, _, message in BAD_INPUTS])
def test_bad_input_gets_one_line_and_writes_nothing(tmp_path, script, flags, message):
    result = run_script(script.name, *flags, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{script.name}: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert list(tmp_path.iterdir()) == []


@by_name
def test_a_file_that_is_not_a_checkpoint_gets_one_line(tmp_path, script):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    result = run_script(script.name, "--eval-checkpoint", "notes.pt", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{script.name}: error: cannot load checkpoint notes.pt" in result.stderr
