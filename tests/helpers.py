"""What every script test needs: run a project script as a user would, and read what it logged."""

import glob
import os
import runpy
import subprocess
import sys
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parent.parent


def script_env(**extra: str) -> dict:
    """The environment a test gives a script: offline, headless, and the repo root on PYTHONPATH so that
    --env-id tests.envs:NAME-v0 resolves; `extra` adds variables or replaces these."""
    return {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "MUJOCO_GL": "egl",
            "SDL_VIDEODRIVER": "dummy", "PYTHONWARNINGS": "ignore::DeprecationWarning", **extra}


def run_script(script: str, *flags: str, cwd: Path, timeout: float = 600, launcher: tuple = (sys.executable,),
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python SCRIPT FLAGS...` (or LAUNCHER SCRIPT FLAGS..., e.g. torchrun) in `cwd`, so that runs/, videos/
    and wandb/ land there, with script_env plus `env`."""
    return subprocess.run([*launcher, str(REPO / script), *flags], cwd=cwd, env=script_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)


def run_ok(script: str, *flags: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """run_script, failing the test with the script's own output if it did not exit 0."""
    result = run_script(script, *flags, cwd=cwd, **kwargs)
    assert result.returncode == 0, (f"{script} {' '.join(flags)} failed:\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-5000:]}")
    return result


def train_locals(script: Path) -> dict:
    """Run the script's main() (its command line is sys.argv) in this process and return the local variables of its
    train() as that returns, or {} if it returned without training."""
    module = runpy.run_path(str(script), run_name="train_locals")  # defines the script's functions only
    train_code, loop = module["train"].__code__, {}

    def in_train(frame, event, arg):  # train()'s own hook: keeps following it, takes its locals as it returns
        if event == "return":
            loop.update(frame.f_locals)
        return in_train

    def on_call(frame, event, arg):  # sys.settrace's hook for each new frame: only train()'s is followed
        if frame.f_code is not train_code:
            return None
        frame.f_trace_lines = False  # its return, not each of its lines
        return in_train

    sys.settrace(on_call)
    try:
        module["main"]()
    finally:
        sys.settrace(None)
    return loop


def run_in_process(script: str, *flags: str, cwd: Path, monkeypatch) -> dict:
    """Run `python SCRIPT FLAGS... --no-cuda` inside this process (in `cwd`, offline) and return the local variables
    of the script's train() as it returns: the training loop's own objects (its replay buffer, its noise process, its
    last step's variables), which a test can inspect where a separate process would only leave logs. On the CPU even
    on a GPU machine, so that a test can feed the loop's networks its own tensors (the tests that run scripts as users
    do cover CUDA). The torch thread count is restored after."""
    cwd.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(REPO / script), *flags, "--no-cuda"])
    for name, value in script_env().items():
        monkeypatch.setenv(name, value)
    threads = torch.get_num_threads()
    try:
        loop = train_locals(REPO / script)
    finally:
        torch.set_num_threads(threads)
    assert loop, f"{script} returned without training"
    return loop


def spy(monkeypatch, owner, name: str) -> list:
    """Replace owner.name (e.g. torch's `_foreach_lerp_`, which a script looks up at each call) with a wrapper that
    records each call's positional arguments and then makes the call; return the record, filled as the script runs."""
    calls, real = [], getattr(owner, name)

    def recording(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls


def one_error_line(result: subprocess.CompletedProcess, script: str) -> str:
    """The one `SCRIPT: error: ...` line a script that refused its input printed, having exited with status 2 and
    without a traceback (a user's mistake gets a sentence)."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{script}: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def run_dir(cwd: Path) -> Path:
    """The single run folder a script wrote under cwd/runs."""
    dirs = glob.glob(str(cwd / "runs" / "*"))
    assert len(dirs) == 1, f"expected one run folder, found {dirs}"
    return Path(dirs[0])


def read_scalars(path: Path, wall_time: bool = False) -> dict:
    """{tag: [(step, value), ...]} of every scalar in a run folder's TensorBoard events; with wall_time,
    (step, value, seconds since the epoch) triples."""
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value, e.wall_time) if wall_time else (e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def last_mean(scalars: dict, tag: str, n: int) -> float:
    """Mean of the last n values logged under tag."""
    values = [v for _, v in scalars[tag][-n:]]
    assert len(values) == n, f"only {len(values)} values of {tag}"
    return sum(values) / n


def logged_numbers(script: str, *flags: str, cwd: Path) -> dict:
    """Every scalar a run logged except the wall-clock ones, for comparing runs."""
    cwd.mkdir(parents=True, exist_ok=True)
    run_ok(script, *flags, cwd=cwd)
    scalars = read_scalars(run_dir(cwd))
    scalars.pop("charts/SPS")
    return scalars
