"""ppo_atari.py under torchrun (torch.distributed): 2 processes on the CPU (gloo), short runs, each process with
its own envs, one agent. And a plain `python ppo_atari.py` run, which must not have changed."""

import glob
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ppo_atari
from tests.atari_envs import games_in
from tests.helpers import REPO, logged_numbers, one_error_line, read_scalars, run_dir, run_ok, run_script, script_env
from tests.test_resume import killed_after_a_checkpoint, numbers

TINY = ("--num-steps", "64", "--update-epochs", "2", "--num-minibatches", "2")
# The processes train on the CPU even where there is a GPU (on one GPU, two processes would get a one-line error).
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}


def launcher(nproc: int = 2) -> tuple:
    """The command line of `torchrun --standalone --nproc-per-node NPROC`."""
    return sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)


def torchrun(script: str, *flags: str, cwd: Path, nproc: int = 2, **env: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node NPROC SCRIPT FLAGS...` in cwd, as a user runs it; fails the test
    with the output if it did not exit 0."""
    return run_ok(script, *flags, cwd=cwd, timeout=300, launcher=launcher(nproc), env=dict(CPU_ONLY, **env))


@pytest.mark.slow
def test_a_plain_run_gives_the_numbers_it_gave_before_torchrun_support(tmp_path):
    # The reference is ppo_atari.py as it was before torchrun support (commit 13c9713 of the project's
    # history), run from a copy: same flags, same seed, every logged number but the wall-clock ones must agree.
    # One torch thread on both sides, the old default: sums split over more threads round differently.
    before = subprocess.run(["git", "show", "13c9713:ppo_atari.py"], cwd=REPO, capture_output=True, text=True)
    if before.returncode != 0:
        pytest.skip("no git history here to take ppo_atari.py before torchrun support from")
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / "ppo_atari.py").write_text(before.stdout)
    assert "torch.distributed" not in before.stdout
    flags = ("--seed", "3", "--num-envs", "2", *TINY, "--total-timesteps", "768", "--torch-threads", "1")
    old = logged_numbers(str(tmp_path / "before" / "ppo_atari.py"), *flags, cwd=tmp_path / "old")
    new = logged_numbers("ppo_atari.py", *flags, cwd=tmp_path / "new")
    assert old == new
    assert old["charts/episodic_return"], "no game finished: the comparison would miss the episode statistics"


@pytest.mark.slow
def test_two_processes_train_one_agent_and_rank_0_alone_writes(tmp_path):
    # Space Invaders writes down every reward the emulator pays, in a file per env (named by process id): the
    # games of both processes must reach the one log, each with its whole raw score.
    log = tmp_path / "rewards"
    log.mkdir()
    # 2 processes x 1 env x 64 steps = 128 steps an iteration, 8 iterations: each env plays 512 steps, more
    # than the 500 of a game cut by the env's frame limit, so that each process finishes games.
    num_envs, total = 1, 1024
    result = torchrun("ppo_atari.py", "--env-id", "tests.atari_envs:SpaceInvadersRewardLog-v0", "--num-envs",
                      str(num_envs), *TINY, "--total-timesteps", str(total), "--capture-video", "--track",
                      cwd=tmp_path, ATARI_REWARD_LOG=str(log))
    assert result.stdout.count("torchrun: 2 processes x 1 envs (--num-envs is per process); global batch "
                               "2 x 1 x 64 = 128 steps; gloo on cpu") == 1
    assert result.stdout.count(f"step {total}/{total}") == 1  # one progress line, from rank 0

    # One writer: one run folder with one event file, one W&B run, one video folder.
    run = run_dir(tmp_path)
    assert len(glob.glob(str(run / "events.out.tfevents.*"))) == 1
    assert len(glob.glob(str(tmp_path / "wandb" / "offline-run-*"))) == 1
    assert [Path(p).name for p in glob.glob(str(tmp_path / "videos" / "*"))] == [run.name]

    # Steps and SPS count both processes' steps.
    scalars = read_scalars(run)
    assert [step for step, _ in scalars["charts/SPS"]] == [128 * k for k in range(1, 9)]

    # Every game of both processes, and only those, logged with its raw score; the processes' envs played
    # different games (seeded apart).
    games = {path.name: games_in(path) for path in log.iterdir()}
    processes = {name.split("-")[0] for name, played in games.items() if played}
    assert len(processes) == 2, games  # each process finished games of its own
    logged = sorted(value for _, value in scalars["charts/episodic_return"])
    assert logged == sorted(score for played in games.values() for score, _ in played)
    # (compared reward by reward: two different games can end with the same score)
    by_process = [sorted(path.read_text() for path in log.glob(f"{pid}-*")) for pid in processes]
    assert by_process[0] != by_process[1]


@pytest.mark.slow
def test_the_processes_hold_identical_weights_after_training(tmp_path):
    # tests/torchrun_probe.py runs ppo_atari.py under torchrun and then saves each process's final weights
    # and how many env steps that process took itself.
    # (--target-kl 1000 never stops an update early, but makes the processes agree on the KL every epoch.)
    result = torchrun("tests/torchrun_probe.py", "--num-envs", "1", *TINY, "--total-timesteps", "384",
                      "--target-kl", "1000", "--save-model", "--eval-episodes", "1", cwd=tmp_path,
                      TORCHRUN_PROBE_OUT=str(tmp_path))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["params"].keys() == rank1["params"].keys()
    for name in rank0["params"]:
        assert torch.equal(rank0["params"][name], rank1["params"][name]), f"{name} differs between the processes"
    # ... and they trained: every weight moved from where rank 0 started (its init under --seed 1, which the
    # upper bound checks), by no more than the 3 x 2 x 2 Adam steps of lr <= 2.5e-4 allow (a few lr a step).
    torch.manual_seed(1)
    initial = ppo_atari.Agent(4).state_dict()
    for name in initial:
        moved = (rank0["params"][name] - initial[name]).abs().max().item()
        assert 0 < moved < 12 * 2.5e-4 * 4, f"{name} moved by {moved}"

    # The logged step count is the sum of the processes' own steps.
    run = run_dir(tmp_path)
    assert read_scalars(run)["charts/SPS"][-1][0] == rank0["own_steps"] + rank1["own_steps"] == 384
    # rank 0's checkpoint is those weights; it was evaluated once, by rank 0
    saved = torch.load(run / "ppo_atari.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[name], rank0["params"][name]) for name in saved)
    assert len(read_scalars(run)["eval/episodic_return"]) == 1 and result.stdout.count("eval: mean return") == 1


@pytest.mark.slow
def test_the_processes_seed_their_envs_apart_agree_on_the_kl_and_rank_0_alone_films(tmp_path):
    torchrun("tests/torchrun_probe.py", "--num-envs", "2", *TINY, "--total-timesteps", "256", "--seed", "5",
             "--target-kl", "1000", "--capture-video", cwd=tmp_path, TORCHRUN_PROBE_OUT=str(tmp_path))
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["env_seeds"] == [5, 6] and rank1["env_seeds"] == [7, 8]  # seed + rank * num_envs + env index
    assert rank0["approx_kl"] == rank1["approx_kl"]  # each epoch's --target-kl test sees the processes' mean
    assert rank0["films"] and not rank1["films"]


@pytest.mark.slow
def test_two_processes_killed_and_resumed_log_the_numbers_of_the_run_left_alone_and_only_two_resume(tmp_path):
    # 2 processes x 1 env x 64 steps = 128 steps an iteration; a state every 2 iterations: each process's own part
    flags = ("--num-envs", "1", *TINY, "--total-timesteps", "1024", "--seed", "2", "--checkpoint-every", "256")
    (tmp_path / "alone").mkdir()
    torchrun("ppo_atari.py", *flags[:-2], cwd=tmp_path / "alone")
    run = killed_after_a_checkpoint("ppo_atari.py", flags, tmp_path / "killed", launcher=launcher(), env=CPU_ONLY)
    stopped_at = torch.load(run / "state.pt", weights_only=True)["global_step"]
    assert torch.load(run / "state-rank1.pt", weights_only=True)["global_step"] == stopped_at < 1024
    result = run_script("ppo_atari.py", "--resume", str(run), cwd=tmp_path / "killed", env=CPU_ONLY)
    assert ("the run ran in 2 processes, not 1: resume it with the same number, torchrun --nproc-per-node 2 "
            "ppo_atari.py --resume ...") in one_error_line(result, "ppo_atari.py")
    torchrun("ppo_atari.py", "--resume", str(run), cwd=tmp_path / "killed")
    assert numbers(run) == numbers(run_dir(tmp_path / "alone"))
    assert torch.load(run / "state-rank1.pt", weights_only=True)["global_step"] == 1024


def test_average_gradients_leaves_every_parameter_the_mean_of_the_processes(monkeypatch):
    # One process standing for two: all_reduce adds the other process's gradients, as gloo's sum would.
    torch.manual_seed(0)
    agent = ppo_atari.Agent(4)
    mine = [torch.randn_like(p) for p in agent.parameters()]
    theirs = [torch.randn_like(p) for p in agent.parameters()]
    for p, g in zip(agent.parameters(), mine):
        p.grad = g.clone()  # conv gradients keep the weights' channels_last layout

    def all_reduce_of_two(flat):
        flat += torch.cat([g.reshape(-1) for g in theirs])

    monkeypatch.setattr(ppo_atari.dist, "all_reduce", all_reduce_of_two)
    ppo_atari.average_gradients(agent, world_size=2)
    for p, a, b in zip(agent.parameters(), mine, theirs):
        torch.testing.assert_close(p.grad, (a + b) / 2)


def test_a_mistake_under_torchrun_gets_one_line_before_any_rendezvous(tmp_path):
    # As torchrun starts rank 0 of 2, but with no rendezvous address: the size check (the global batch, 2 x 8
    # x 128 steps, exceeds the budget) must stop the process before it tries to meet the others.
    result = subprocess.run([sys.executable, str(REPO / "ppo_atari.py"), "--total-timesteps", "1500"], cwd=tmp_path,
                            env=script_env(RANK="0", LOCAL_RANK="0", WORLD_SIZE="2"), capture_output=True, text=True,
                            timeout=300)
    assert one_error_line(result, "ppo_atari.py") == ("ppo_atari.py: error: --total-timesteps 1500 is smaller than "
                                                      "one rollout of 2048 steps (2 processes x 1024)")
    assert list(tmp_path.iterdir()) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_stuck_process_stops_the_others_with_an_error_not_a_hang(tmp_path):
    # Two processes started by hand, as torchrun would start them (its environment variables), so that the test
    # can freeze one of them mid-training: the other must stop with a timeout error within --dist-timeout.
    # (torchrun itself ends the others when a process dies; a stuck process, or a machine lost from a
    # multi-machine run, leaves them waiting at the next gradient exchange.)
    port, timeout = free_port(), 5
    flags = ("--num-envs", "1", "--num-steps", "16", "--num-minibatches", "1", "--update-epochs", "1",
             "--total-timesteps", "6400", "--dist-timeout", str(timeout))
    processes = [subprocess.Popen([sys.executable, str(REPO / "ppo_atari.py"), *flags], cwd=tmp_path,
                                  env=script_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **CPU_ONLY),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    rank0, rank1 = processes
    try:
        for line in rank0.stdout:  # training is under way once rank 0 reports progress
            if line.startswith("step "):
                break
        else:
            pytest.fail(f"rank 0 never reported progress:\n{rank0.stderr.read()[-3000:]}")
        rank1.send_signal(signal.SIGSTOP)
        stopped = time.time()
        _, stderr = rank0.communicate(timeout=timeout + 60)
        waited = time.time() - stopped
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert rank0.returncode != 0
    assert f"Timed out waiting {timeout * 1000}ms" in stderr, stderr[-3000:]
    assert waited < timeout + 30, f"rank 0 took {waited:.0f}s to give up"
