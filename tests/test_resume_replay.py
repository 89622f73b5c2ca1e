"""--checkpoint-every and --resume in the replay-buffer scripts, dqn.py and ddpg_continuous.py: the state holds the
buffer's filled part and everything else the next step reads, as the loop left it; a finished run is extended by a
larger --total-timesteps. (Exact continuation after a kill, restarted envs and one-line errors: tests/test_resume.py.)"""

import glob

import numpy as np
import pytest
import torch

import dqn
from tests.helpers import read_scalars, run_dir, run_in_process, run_ok
from tests.test_resume import numbers, short

REPLAY = ("dqn.py", "ddpg_continuous.py")


def equal(a: dict, b: dict) -> bool:
    """Two state_dicts (of networks or optimizers, nested) hold the same numbers."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.mark.parametrize("buffer_size", [1000, 500], ids=["filling", "wrapped"])
@pytest.mark.parametrize("script", REPLAY)
def test_the_state_holds_the_filled_part_of_the_buffer_and_what_the_next_step_reads(tmp_path, monkeypatch, script,
                                                                                     buffer_size):
    # The last state is written at the run's last step: it must be the loop's objects as the loop returns.
    extra = ("--ou-noise", "--policy-frequency", "3") if script == "ddpg_continuous.py" else ("--train-frequency", "3")
    loop = run_in_process(script, *short(script), "--buffer-size", str(buffer_size), "--checkpoint-every", "250",
                          *extra, cwd=tmp_path, monkeypatch=monkeypatch)
    state = torch.load(tmp_path / "runs" / loop["run_name"] / "state.pt", weights_only=True)
    rb, saved = loop["rb"], state["replay_buffer"]
    filled = min(600, buffer_size)  # one env: a transition per step, the oldest overwritten once the buffer is full
    assert saved["count"] == rb.count == filled and saved["pos"] == rb.pos == 600 % buffer_size
    for name in dqn.ReplayBuffer.ARRAYS:  # the filled rows only, not the whole preallocated array
        assert saved[name].shape[0] == filled and np.array_equal(saved[name].numpy(), getattr(rb, name)[:filled]), name
    assert saved["rng"] == rb.rng.bit_generator.state
    assert state["explore_rng"] == loop["rng"].bit_generator.state
    assert state["iteration"] == state["global_step"] == 600 and state["gradient_steps"] == loop["gradient_steps"]
    assert torch.equal(state["obs"], torch.from_numpy(loop["obs"]))
    assert state["recent_returns"] == list(loop["recent_returns"])
    assert torch.equal(state["episode_returns"], torch.from_numpy(loop["episode_returns"]))
    if script == "dqn.py":
        assert state["train_credit"] == loop["train_credit"]
        assert equal(state["model"], loop["q_network"].state_dict())
        assert equal(state["target_model"], loop["target_network"].state_dict())
        assert equal(state["optimizer"], loop["optimizer"].state_dict())
    else:
        assert equal(state["model"], loop["ddpg"].state_dict())
        assert torch.equal(state["ou_noise"], torch.from_numpy(loop["ou"].state))
        assert torch.equal(state["actor_loss"], loop["actor_loss"].detach())


@pytest.mark.slow
def test_a_finished_ddpg_run_extended_by_a_larger_total_logs_the_numbers_of_the_longer_run(tmp_path):
    # No schedule of ddpg_continuous.py depends on --total-timesteps: 600 steps and 400 more are one run of 1000.
    for name in ("extended", "longer"):
        (tmp_path / name).mkdir()
    run_ok("ddpg_continuous.py", *short("ddpg_continuous.py"), "--checkpoint-every", "600", cwd=tmp_path / "extended")
    run = run_dir(tmp_path / "extended")
    result = run_ok("ddpg_continuous.py", "--resume", str(run), "--total-timesteps", "1000", cwd=tmp_path / "extended")
    assert "step 1000/1000" in result.stdout
    run_ok("ddpg_continuous.py", *short("ddpg_continuous.py", 1000), cwd=tmp_path / "longer")
    assert numbers(run) == numbers(run_dir(tmp_path / "longer"))


@pytest.mark.slow
def test_a_finished_dqn_run_is_extended_and_epsilon_decays_over_the_new_total(tmp_path):
    flags = ("--total-timesteps", "1000", "--learning-starts", "400", "--batch-size", "32", "--checkpoint-every",
             "500", "--track")
    run_ok("dqn.py", *flags, cwd=tmp_path)
    run = run_dir(tmp_path)
    result = run_ok("dqn.py", "--resume", str(run / "state.pt"), "--total-timesteps", "3000", "--track",
                    "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    assert "step 3000/3000" in result.stdout and "eval: mean return" in result.stdout
    # W&B continues the same run: both offline logs carry its one id (offline-run-TIME-ID)
    wandb_runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert len(wandb_runs) == 2 and len({path.rsplit("-", 1)[1] for path in wandb_runs}) == 1, wandb_runs
    epsilon = read_scalars(run)["charts/epsilon"]
    assert epsilon[-1][0] == 3000 and [step for step, _ in epsilon] == sorted({step for step, _ in epsilon})
    for step, value in epsilon:  # half of the total each time: 1000 steps, then 3000 from step 1000 on
        assert value == pytest.approx(dqn.linear_schedule(1.0, 0.05, 0.5 * (1000 if step <= 1000 else 3000), step))
