"""--checkpoint-every and --resume: a run killed for real (right after a state, or while writing one) and resumed from
its last state logs exactly the numbers of the same run left alone; checkpointing changes no number; envs whose state
cannot be saved restart; a resumed run can be extended; a state that cannot be resumed gets one line."""

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, one_error_line, read_scalars, run_dir, run_ok, run_script, script_env

# (script, env, flags of a run of a few seconds with a state every few iterations)
RUNS = [
    ("ppo.py", "CartPole-v1", ("--total-timesteps", "40960", "--checkpoint-every", "4096")),
    ("ppo.py", "Hopper-v4", ("--total-timesteps", "10240", "--num-steps", "512", "--num-minibatches", "8",
                             "--update-epochs", "2", "--checkpoint-every", "2048")),
    ("a2c.py", "CartPole-v1", ("--total-timesteps", "20000", "--checkpoint-every", "4000")),
    ("a2c.py", "Hopper-v4", ("--total-timesteps", "8000", "--checkpoint-every", "2000")),
    # a replay buffer that has wrapped by the first state, and gradient steps that straddle iterations (3 per 2 envs)
    ("dqn.py", "CartPole-v1", ("--total-timesteps", "6000", "--num-envs", "2", "--learning-starts", "1000",
                               "--buffer-size", "1200", "--train-frequency", "3", "--checkpoint-every", "1500")),
    # the same, with OU noise under way and an actor loss logged from an earlier gradient step (--policy-frequency 3)
    ("ddpg_continuous.py", "Pendulum-v1", ("--total-timesteps", "3000", "--num-envs", "2", "--learning-starts", "500",
                                           "--buffer-size", "800", "--batch-size", "64", "--ou-noise",
                                           "--policy-frequency", "3", "--torch-threads", "1",
                                           "--checkpoint-every", "1000")),
    # games under way at each state (frame stacks, lives, no-op starts to come)
    ("ppo_atari.py", "BreakoutNoFrameskip-v4", ("--total-timesteps", "1024", "--num-envs", "2", "--num-steps", "32",
                                         "--num-minibatches", "2", "--update-epochs", "1", "--torch-threads", "1",
                                         "--checkpoint-every", "256")),
]
ON_POLICY = ("ppo.py", "a2c.py")
SCRIPTS = (*ON_POLICY, "dqn.py", "ddpg_continuous.py", "ppo_atari.py")


def short(script: str, total: int | None = None, env_id: str | None = None) -> tuple:
    """Flags of a run of a second or two on CartPole-v1 (Pendulum-v1 for ddpg_continuous.py, Breakout for
    ppo_atari.py); the replay-buffer scripts learn after 400 steps of warm-up."""
    if script in ON_POLICY:
        return ("--env-id", env_id or "CartPole-v1", "--total-timesteps", str(total or 1280))
    if script == "ppo_atari.py":  # Breakout, 64 steps an iteration
        return ("--env-id", env_id or "BreakoutNoFrameskip-v4", "--total-timesteps", str(total or 256), "--num-envs",
                "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1", "--torch-threads", "1")
    env_id = env_id or ("CartPole-v1" if script == "dqn.py" else "Pendulum-v1")
    flags = ("--env-id", env_id, "--total-timesteps", str(total or 600), "--learning-starts", "400", "--batch-size", "32")
    return flags if script == "dqn.py" else (*flags, "--torch-threads", "1")


def numbers(run: Path) -> dict:
    """Every scalar of a run as TensorBoard reads it (what a resumed run purged is gone), but the wall-clock SPS."""
    scalars = read_scalars(run)
    scalars.pop("charts/SPS")
    return scalars


def descendants(pid: int) -> list[int]:
    """The processes that `pid` started, and theirs (torchrun starts its workers in sessions of their own), from /proc."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (name)": state, parent pid, ...
        except OSError:  # it ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, todo = [], [pid]
    while todo:
        started = children.get(todo.pop(), [])
        found += started
        todo += started
    return found


def killed_after_a_checkpoint(script: str, flags: tuple, cwd: Path, while_writing: bool = False,
                              launcher: tuple = (sys.executable,), env: dict | None = None) -> Path:
    """Start `python SCRIPT FLAGS` (or LAUNCHER SCRIPT FLAGS, e.g. torchrun, with `env` added), SIGKILL it and every
    process it started as soon as its first state file exists (or, `while_writing`, in the middle of writing its
    second), and return its run folder."""
    cwd.mkdir(parents=True)
    process = subprocess.Popen([*launcher, str(REPO / script), *flags], cwd=cwd, env=script_env(**(env or {})),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not glob.glob(str(cwd / "runs" / "*" / "state.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    if while_writing:
        # The next state goes into state.tmp: made a pipe, it holds the writer in the middle of the file for as long
        # as nobody reads on. Read its first kilobyte, kill the writer there, and leave on disk what a kill during
        # the write leaves: the part written.
        tmp = Path(glob.glob(str(cwd / "runs" / "*" / "state.pt"))[0]).with_suffix(".tmp")
        os.mkfifo(tmp)
        pipe, written = os.open(tmp, os.O_RDONLY | os.O_NONBLOCK), b""
        while len(written) < 1024 and process.poll() is None and time.time() < deadline:
            try:
                written += os.read(pipe, 1024 - len(written))
            except BlockingIOError:  # the writer has not reached the file yet
                time.sleep(0.001)
    for pid in [process.pid, *descendants(process.pid)]:  # the script and, under a launcher, its workers
        os.kill(pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    if while_writing:
        os.close(pipe)
        tmp.unlink()
        tmp.write_bytes(written)
        assert len(written) == 1024
    return run_dir(cwd)


@pytest.mark.slow
@pytest.mark.parametrize("script, env_id, flags", RUNS, ids=[f"{s}-{e}" for s, e, _ in RUNS])
def test_a_run_killed_and_resumed_logs_the_numbers_of_the_run_left_alone(tmp_path, script, env_id, flags):
    flags = ("--env-id", env_id, "--seed", "3", *flags)
    total = int(flags[flags.index("--total-timesteps") + 1])
    no_checkpoints = (*flags[:-2], "--checkpoint-every", "0")
    for name in ("alone", "checkpointed"):
        (tmp_path / name).mkdir()
    run_ok(script, *no_checkpoints, cwd=tmp_path / "alone")
    alone = numbers(run_dir(tmp_path / "alone"))
    run_ok(script, *flags, cwd=tmp_path / "checkpointed")
    assert numbers(run_dir(tmp_path / "checkpointed")) == alone  # writing states changes no number

    run = killed_after_a_checkpoint(script, flags, tmp_path / "killed")
    stopped_at = torch.load(run / "state.pt", weights_only=True)["global_step"]
    assert stopped_at < total
    (run / "state.tmp").write_bytes(b"what a kill in the middle of writing the next state leaves")
    result = run_ok(script, "--resume", str(run), cwd=tmp_path / "killed")
    assert f"step {total}/{total}" in result.stdout and f"step {stopped_at}/" not in result.stdout
    assert run_dir(tmp_path / "killed") == run  # the same run folder, one event log continued
    resumed = numbers(run)
    assert resumed == alone
    for tag, points in resumed.items():
        steps = [step for step, _ in points]
        assert steps == sorted(steps), tag
        if not tag.startswith("charts/episodic"):  # two envs can end episodes at the same step
            assert len(set(steps)) == len(steps), f"{tag}: a step logged twice"
    assert torch.load(run / "state.pt", weights_only=True)["global_step"] == total


@pytest.mark.slow
@pytest.mark.parametrize("script", ON_POLICY)
def test_a_run_killed_while_writing_its_state_resumes_from_the_state_before(tmp_path, script):
    flags = ("--seed", "4", "--total-timesteps", "24000", "--checkpoint-every", "4000")
    (tmp_path / "alone").mkdir()
    run_ok(script, *flags[:-2], cwd=tmp_path / "alone")
    run = killed_after_a_checkpoint(script, flags, tmp_path / "killed", while_writing=True)
    assert torch.load(run / "state.pt", weights_only=True)["global_step"] < 8000  # the first state, whole
    run_ok(script, "--resume", str(run), cwd=tmp_path / "killed")
    assert numbers(run) == numbers(run_dir(tmp_path / "alone"))


@pytest.mark.slow
@pytest.mark.parametrize("script, env_id, total, num_envs, every", [
    ("ppo.py", "tests.envs:OpaqueState-v0", 8192, 4, 2048),
    ("a2c.py", "tests.envs:OpaqueState-v0", 4000, 8, 1000),
    ("dqn.py", "tests.envs:OpaqueState-v0", 3000, 2, 1000),
    ("ddpg_continuous.py", "tests.envs:OpaqueStateBox-v0", 3000, 2, 1000)])
def test_envs_whose_state_cannot_be_saved_restart_and_the_episodes_under_way_are_dropped(tmp_path, script, env_id,
                                                                                          total, num_envs, every):
    flags = (*short(script, total, env_id), "--num-envs", str(num_envs), "--seed", "1", "--checkpoint-every", str(every))
    (tmp_path / "alone").mkdir()
    run_ok(script, *flags[:-2], cwd=tmp_path / "alone")
    alone = numbers(run_dir(tmp_path / "alone"))
    run = killed_after_a_checkpoint(script, flags, tmp_path / "killed")
    stopped_at = torch.load(run / "state.pt", weights_only=True)["global_step"]
    run_ok(script, "--resume", str(run), cwd=tmp_path / "killed")
    resumed = numbers(run)
    for tag, points in alone.items():  # up to the state, the run that was stopped; then it finishes
        assert [p for p in resumed[tag] if p[0] <= stopped_at] == [p for p in points if p[0] <= stopped_at], tag
    for tag in alone:  # and it finishes
        assert tag.startswith("charts/episodic") or resumed[tag][-1][0] == alone[tag][-1][0], tag
    # The envs restarted: every episode that ends after the state began after it (with num_envs envs, an episode
    # of length L ending at step S began after S - num_envs * L), which the run left alone does not show.
    begun_after = lambda points: all(length <= (step - stopped_at) // num_envs  # noqa: E731
                                     for step, length in points if step > stopped_at)
    assert begun_after(resumed["charts/episodic_length"]) and not begun_after(alone["charts/episodic_length"])
    assert any(step > stopped_at for step, _ in resumed["charts/episodic_length"])


@pytest.mark.slow
def test_atari_envs_in_subprocesses_restart_on_resume_and_the_rest_continues(tmp_path):
    flags = (*short("ppo_atari.py", 1024), "--async-envs", "--seed", "1", "--checkpoint-every", "256")
    (tmp_path / "alone").mkdir()
    run_ok("ppo_atari.py", *flags[:-2], cwd=tmp_path / "alone")
    alone = numbers(run_dir(tmp_path / "alone"))
    run = killed_after_a_checkpoint("ppo_atari.py", flags, tmp_path / "killed")
    stopped_at = torch.load(run / "state.pt", weights_only=True)["global_step"]
    assert torch.load(run / "state.pt", weights_only=True)["envs"] is None  # the games in subprocesses are not saved
    run_ok("ppo_atari.py", "--resume", str(run), cwd=tmp_path / "killed")
    resumed = numbers(run)
    for tag, points in alone.items():  # up to the state, the run that was stopped; then it finishes
        assert [p for p in resumed[tag] if p[0] <= stopped_at] == [p for p in points if p[0] <= stopped_at], tag
        assert tag.startswith("charts/episodic") or resumed[tag][-1][0] == 1024, tag
    # on fresh games from the state on: what the policy saw, and so what it learnt, is not the run left alone's
    assert resumed["losses/value_loss"] != alone["losses/value_loss"]


@pytest.mark.slow
def test_a_finished_run_is_extended_by_a_larger_total_and_its_checkpoint_evaluates(tmp_path):
    flags = ("--total-timesteps", "4096", "--checkpoint-every", "2048", "--seed", "2", "--track")
    run_ok("ppo.py", *flags, cwd=tmp_path)
    run = run_dir(tmp_path)
    result = run_ok("ppo.py", "--resume", str(run / "state.pt"), "--total-timesteps", "6144", "--save-model",
                    "--track", cwd=tmp_path)
    assert "step 6144/6144" in result.stdout and "eval: mean return" in result.stdout
    # W&B continues the same run: both offline logs carry its one id (offline-run-TIME-ID)
    wandb_runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert len(wandb_runs) == 2 and len({path.rsplit("-", 1)[1] for path in wandb_runs}) == 1, wandb_runs
    steps = [step for step, _ in read_scalars(run)["losses/value_loss"]]
    assert steps == list(range(512, 6144 + 1, 512))
    evaluation = run_ok("ppo.py", "--eval-checkpoint", str(run / "ppo.pt"), "--eval-episodes", "2", cwd=tmp_path)
    assert "over 2 episodes" in evaluation.stdout


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> dict:
    """The run state of a short finished run of ppo.py and of dqn.py, each another script's to the others."""
    states = {}
    for script in ("ppo.py", "dqn.py"):
        cwd = tmp_path_factory.mktemp(script.replace(".py", ""))
        run_ok(script, *short(script), "--checkpoint-every", "500", cwd=cwd)
        states[script] = str(run_dir(cwd) / "state.pt")
    return states


@pytest.mark.parametrize("script", [script if script == "ppo.py" else pytest.param(script, marks=pytest.mark.slow)
                                    for script in SCRIPTS])  # one script in the quick tier, every script in the suite
def test_a_state_that_cannot_be_resumed_gets_one_line_and_writes_nothing(tmp_path, script, states):
    for name in ("done", "elsewhere"):
        (tmp_path / name).mkdir()
    run_ok(script, *short(script), "--checkpoint-every", "500", "--save-model", "--eval-episodes", "1",
           cwd=tmp_path / "done")
    run = run_dir(tmp_path / "done")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run / "state.pt").read_bytes()[:1000])
    reached = torch.load(run / "state.pt", weights_only=True)["global_step"]  # the last whole iteration's step
    a_script = f"a{'n' if script[0] in 'a' else ''} {script}"
    cases = {
        (str(tmp_path / "nowhere"),): "no run state at",
        (str(truncated),): "cannot load run state",
        (states["dqn.py" if script == "ppo.py" else "ppo.py"],): f"is not {a_script} run state",  # another script's
        (str(run / script.replace(".py", ".pt")),): f"is not {a_script} run state",  # a --save-model checkpoint
        (str(run), "--learning-rate", "0.1"): "--learning-rate 0.1 would change the run it resumes",
        (str(run),): f"the run already reached step {reached}: a larger --total-timesteps extends it",
    }
    for (where, *flags), message in cases.items():
        result = run_script(script, "--resume", where, *flags, cwd=tmp_path / "elsewhere")
        assert message in one_error_line(result, script)
        assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_negative_checkpoint_interval_gets_one_line_and_writes_nothing(tmp_path, script):
    result = run_script(script, *short(script), "--checkpoint-every", "-5", cwd=tmp_path)
    assert "--checkpoint-every must not be negative, got -5" in one_error_line(result, script)
    assert list(tmp_path.iterdir()) == []
