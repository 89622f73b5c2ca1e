"""Run ppo_atari.py exactly as `torchrun ... ppo_atari.py FLAGS` would, then let a test see inside each process:
`torchrun ... tests/torchrun_probe.py FLAGS` trains with ppo_atari.py's own code (its main(), its flags from the
command line) and afterwards saves this process's final weights, its own env-step count, its envs' seeds, its
last KL estimate and whether its first env filmed to $TORCHRUN_PROBE_OUT/rank{RANK}.pt, all read from the local
variables of ppo_atari.py's train() as it returns. The script itself has no hook for this."""

import os
import sys
from pathlib import Path

import torch

from tests.helpers import train_locals

script = Path(__file__).resolve().parent.parent / "ppo_atari.py"
sys.argv = [str(script), *sys.argv[1:]]
loop = train_locals(script)
torch.save({"params": {name: value.detach().cpu() for name, value in loop["agent"].state_dict().items()},
            "own_steps": loop["num_iterations"] * loop["batch_size"],
            "env_seeds": list(loop["envs"].np_random_seed), "approx_kl": float(loop["approx_kl"]),
            "films": "RecordVideo" in str(loop["envs"].envs[0])},
           Path(os.environ["TORCHRUN_PROBE_OUT"]) / f"rank{os.environ['RANK']}.pt")
