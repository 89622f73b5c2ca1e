"""--checkpoint-every and --resume: a run killed for real and resumed from its last state logs exactly the numbers of
the same run left alone; checkpointing changes no number; a resumed run can be extended; a state that cannot be
resumed gets one line."""

import glob
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
]


def numbers(run: Path) -> dict:
    """Every scalar of a run as TensorBoard reads it (what a resumed run purged is gone), but the wall-clock SPS."""
    scalars = read_scalars(run)
    scalars.pop("charts/SPS")
    return scalars


def killed_after_a_checkpoint(script: str, flags: tuple, cwd: Path) -> Path:
    """Start `python SCRIPT FLAGS`, SIGKILL it as soon as its first state file exists, and return its run folder."""
    cwd.mkdir(parents=True)
    process = subprocess.Popen([sys.executable, str(REPO / script), *flags], cwd=cwd, env=script_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not glob.glob(str(cwd / "runs" / "*" / "state.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
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


def test_a_state_that_cannot_be_resumed_gets_one_line_and_writes_nothing(tmp_path):
    for name in ("done", "elsewhere"):
        (tmp_path / name).mkdir()
    run_ok("ppo.py", "--total-timesteps", "1024", "--checkpoint-every", "512", "--save-model", "--eval-episodes", "1",
           cwd=tmp_path / "done")
    run = run_dir(tmp_path / "done")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run / "state.pt").read_bytes()[:1000])
    cases = {
        (str(tmp_path / "nowhere"),): "no run state at",
        (str(truncated),): "cannot load run state",
        (str(run / "ppo.pt"),): "is not a ppo.py run state",
        (str(run), "--learning-rate", "0.1"): "--learning-rate 0.1 would change the run it resumes",
        (str(run),): "the run already reached step 1024: a larger --total-timesteps extends it",
    }
    for (where, *flags), message in cases.items():
        result = run_script("ppo.py", "--resume", where, *flags, cwd=tmp_path / "elsewhere")
        assert message in one_error_line(result, "ppo.py")
        assert not (tmp_path / "elsewhere" / "runs").exists()
