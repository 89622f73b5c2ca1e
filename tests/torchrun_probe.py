"""Run ppo_atari.py exactly as `torchrun ... ppo_atari.py FLAGS` would, then let a test see inside each process:
`torchrun ... tests/torchrun_probe.py FLAGS` trains with ppo_atari.py's own code (as __main__, its flags from the
command line) and afterwards saves this process's final weights, its own env-step count, its envs' seeds, its
last KL estimate and whether its first env filmed to $TORCHRUN_PROBE_OUT/rank{RANK}.pt. The script itself has no
hook for this."""

import os
import runpy
import sys
from pathlib import Path

import torch

script = Path(__file__).resolve().parent.parent / "ppo_atari.py"
sys.argv = [str(script), *sys.argv[1:]]
main = runpy.run_path(str(script), run_name="__main__")
torch.save({"params": {name: value.detach().cpu() for name, value in main["agent"].state_dict().items()},
            "own_steps": main["num_iterations"] * main["batch_size"],
            "env_seeds": list(main["envs"].np_random_seed), "approx_kl": float(main["approx_kl"]),
            "films": "RecordVideo" in str(main["envs"].envs[0])},
           Path(os.environ["TORCHRUN_PROBE_OUT"]) / f"rank{os.environ['RANK']}.pt")
