"""Steps per second of ppo_atari.py with 1 and with N processes under torchrun, for the same per-process config.

Every measurement is a fresh run in a temporary folder; the kinds alternate within each repeat (plain python,
torchrun with N processes, torchrun with 1 process) so that a noisy machine slows them alike. A run's SPS is
the last charts/SPS rank 0 wrote to TensorBoard: all processes' steps over the run's wall time. The 1-minute load
average is printed before and after each run, since other work on the machine shares the cores.

    python benchmark/torchrun_sps.py --steps-per-process 8192 --repeats 2
"""

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "ppo_atari.py"
sys.path.insert(0, str(REPO))


@dataclass
class Args:
    steps_per_process: int = 8192
    """env steps each process takes (--total-timesteps is this times the number of processes)"""
    processes: int = 2
    """processes of the torchrun runs"""
    repeats: int = 2
    """rounds of the alternating kinds"""
    flags: str = "--num-envs 8 --num-steps 128 --torch-threads 1"
    """ppo_atari.py flags of every run (per process under torchrun); one torch thread per process: torchrun with 2
    or more processes sets that itself, the 1-process runs would otherwise use every core"""


def measure(nproc: int, launcher: str, args: Args) -> None:
    from tests.helpers import read_scalars, run_dir

    command = [sys.executable, str(SCRIPT)] if launcher == "python" else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), str(SCRIPT)]
    command += [*args.flags.split(), "--total-timesteps", str(args.steps_per_process * nproc)]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        run = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
        sps = int(read_scalars(run_dir(Path(folder)))["charts/SPS"][-1][1])
    print(f"{launcher:8s} processes {nproc}  steps {args.steps_per_process * nproc:7d}  SPS {sps:5d}  "
          f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f}  at {time.strftime('%H:%M:%S')}", flush=True)


if __name__ == "__main__":
    args = tyro.cli(Args)
    for _ in range(args.repeats):
        measure(1, "python", args)
        measure(args.processes, "torchrun", args)
        measure(1, "torchrun", args)
