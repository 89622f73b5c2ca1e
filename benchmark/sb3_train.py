"""Train stable-baselines3, configured like one of the project's scripts, and log what the scripts log.

Writes TensorBoard scalars `charts/episodic_return` and `charts/episodic_length` (the env's own returns,
from SB3's Monitor wrapper, which sits below any normalization) and `charts/SPS`, so that the benchmark
reads SB3's runs exactly as it reads the project's.

    python benchmark/sb3_train.py ppo.py CartPole-v1 --seed 1 --total-timesteps 500000 --out DIR
"""

import sys
import time
from pathlib import Path

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmark.sb3_equivalent import make_model  # noqa: E402


def main(script: str, env_id: str, /, seed: int = 1, total_timesteps: int = 100_000, out: str = "sb3_run",
         torch_threads: int = 1):
    """Train SB3's equivalent of SCRIPT on ENV_ID and log to OUT."""
    from stable_baselines3.common.callbacks import BaseCallback
    from torch.utils.tensorboard import SummaryWriter

    torch.set_num_threads(torch_threads)
    model = make_model(script, env_id, seed)
    writer = SummaryWriter(out)
    start = time.time()

    class LogLikeTheScripts(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    writer.add_scalar("charts/episodic_return", info["episode"]["r"], self.num_timesteps)
                    writer.add_scalar("charts/episodic_length", info["episode"]["l"], self.num_timesteps)
            if self.n_calls % 1000 == 0:
                writer.add_scalar("charts/SPS", int(self.num_timesteps / (time.time() - start)), self.num_timesteps)
            return True

    model.learn(total_timesteps=total_timesteps, callback=LogLikeTheScripts())
    writer.add_scalar("charts/SPS", int(model.num_timesteps / (time.time() - start)), model.num_timesteps)
    writer.close()


if __name__ == "__main__":
    tyro.cli(main)
