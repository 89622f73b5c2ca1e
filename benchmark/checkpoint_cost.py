"""What --checkpoint-every costs: the size of a run's state and the time to write and read it, at its largest.

  * ddpg_continuous.py on Hopper-v4 with a full 1M-transition replay buffer (the state at the end of a 1M-step run):
    the file's size, the time of save_state (write, then rename) and of torch.load(weights_only=True) plus
    load_state_dict, each the median of `repeats`.
  * ppo_atari.py on BreakoutNoFrameskip-v4 (8 envs, the defaults): the same short run with and without a state every
    10% of it, in alternating order, `repeats` times each; the wall time of each run and the size of its state.

A state every 10% of a run costs 10 writes; the fraction of a whole run's wall time follows from these figures and
the run's length (see THROUGHPUT.md).
    python benchmark/checkpoint_cost.py --repeats 3 --out benchmark/results/checkpoint_cost.json
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import ddpg_continuous  # noqa: E402


@dataclass
class Args:
    repeats: int = 3
    """measurements of each kind (their median is reported)"""
    atari_steps: int = 20480
    """length of the ppo_atari.py runs, with a state every tenth of it"""
    out: str | None = None
    """write the figures to this JSON file as well"""


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def ddpg_full_buffer(repeats: int) -> dict:
    """A full 1M-transition Hopper-v4 buffer (obs 11, action 3) of random numbers, saved and loaded as the script does."""
    rb = ddpg_continuous.ReplayBuffer(1_000_000, (11,), 3, seed=0)
    rng = np.random.default_rng(0)
    for name in ddpg_continuous.ReplayBuffer.ARRAYS:
        array = getattr(rb, name)
        array[:] = rng.standard_normal(array.shape, dtype=np.float32)
    rb.pos, rb.count = 0, rb.size
    state = {"script": "ddpg_continuous.py", "replay_buffer": rb.state_dict()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.pt"
        saves = [timed(lambda: ddpg_continuous.save_state(path, state)) for _ in range(repeats)]
        loads = [timed(lambda: rb.load_state_dict(torch.load(path, weights_only=True)["replay_buffer"]))
                 for _ in range(repeats)]
        size = path.stat().st_size
    return {"state_mib": size / 2**20, "save_s": statistics.median(saves), "load_s": statistics.median(loads)}


def atari_run(steps: int, checkpoint_every: int, cwd: Path) -> tuple[float, int]:
    """Wall time of one ppo_atari.py run and the size of its state (0 without one)."""
    cwd.mkdir(parents=True)
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore::DeprecationWarning")
    command = [sys.executable, str(REPO / "ppo_atari.py"), "--total-timesteps", str(steps),
               "--checkpoint-every", str(checkpoint_every), "--no-cuda"]
    wall = timed(lambda: subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True))
    states = list(cwd.glob("runs/*/state.pt"))
    return wall, states[0].stat().st_size if states else 0


def ppo_atari_short_runs(steps: int, repeats: int) -> dict:
    walls = {"off": [], "every 10%": []}
    size = 0
    with tempfile.TemporaryDirectory() as folder:
        for i in range(repeats):
            for kind, every in (("off", 0), ("every 10%", steps // 10))[:: 1 if i % 2 == 0 else -1]:
                wall, written = atari_run(steps, every, Path(folder) / f"{i}-{every}")
                walls[kind].append(wall)
                size = max(size, written)
    off, on = statistics.median(walls["off"]), statistics.median(walls["every 10%"])
    return {"steps": steps, "wall_s": walls, "median_off_s": off, "median_on_s": on,
            "cost_fraction": (on - off) / off, "state_mib": size / 2**20}


def main():
    args = tyro.cli(Args)
    figures = {"ddpg_continuous.py Hopper-v4, full 1M buffer": ddpg_full_buffer(args.repeats),
               "ppo_atari.py BreakoutNoFrameskip-v4": ppo_atari_short_runs(args.atari_steps, args.repeats),
               "torch": torch.__version__, "cpus": os.cpu_count()}
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
