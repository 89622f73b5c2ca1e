"""Gradient steps per second of ddpg_continuous.py's update alone: DDPG.update on minibatches sampled from its
ReplayBuffer, filled with random transitions of an env's sizes; no env, no acting, no logging. Beside
throughput.py's whole-loop SPS this shows how much of a training step is the update itself.

    python benchmark/update_speed.py --env-id Hopper-v4 --threads 1 2 --steps 2000 --repeats 3

Each (threads, repeat) is a fresh process, threads alternating within a repeat.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import tyro

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(env_id: str, steps: int, threads: int, policy_frequency: int, batch_size: int) -> float:
    import gymnasium as gym
    import numpy as np
    import torch

    import ddpg_continuous as ddpg_file

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    env = gym.make(env_id)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    rb = ddpg_file.ReplayBuffer(100_000, (obs_dim,), action_dim, seed=1)
    rng = np.random.default_rng(1)
    for _ in range(100):  # 100 blocks of 1000 random transitions
        n = 1000
        rb.add(rng.standard_normal((n, obs_dim)), rng.standard_normal((n, obs_dim)),
               rng.uniform(env.action_space.low, env.action_space.high, (n, action_dim)),
               rng.standard_normal(n), rng.random(n) < 0.01)
    ddpg = ddpg_file.DDPG(obs_dim, env.action_space, 3e-4, torch.device("cpu"))
    device = torch.device("cpu")
    for i in range(50):  # warm-up: allocator, optimizer state
        ddpg.update(*rb.sample(batch_size, device), 0.99, 0.005, i % policy_frequency == 0)
    start = time.perf_counter()
    for i in range(1, steps + 1):
        ddpg.update(*rb.sample(batch_size, device), 0.99, 0.005, i % policy_frequency == 0)
    return steps / (time.perf_counter() - start)


def main(env_id: str = "Hopper-v4", threads: tuple[int, ...] = (1, 2), steps: int = 2000, repeats: int = 3,
         policy_frequency: int = 1, batch_size: int = 256, out: Optional[str] = None, worker: Optional[int] = None):
    """Measure update steps per second for each torch thread count.

    Args:
        env_id: whose observation and action sizes to use.
        threads: torch thread counts to compare.
        steps: timed gradient steps per measurement (after 50 untimed ones).
        repeats: measurements per thread count; medians are reported.
        policy_frequency: update the actor every this many steps (1: every step, like stable-baselines3).
        batch_size: the minibatch size.
        out: also write the measurements as JSON to this file.
        worker: internal: measure once with this many threads and print the result.
    """
    if worker is not None:
        print(json.dumps({"steps_per_s": measure(env_id, steps, worker, policy_frequency, batch_size)}))
        return
    results = {t: [] for t in threads}
    for repeat in range(repeats):
        for t in threads:
            out_ = subprocess.run([sys.executable, __file__, "--env-id", env_id, "--steps", str(steps),
                                   "--policy-frequency", str(policy_frequency), "--batch-size", str(batch_size),
                                   "--worker", str(t)], capture_output=True, text=True)
            if out_.returncode:
                sys.exit(out_.stderr[-3000:])
            results[t].append(json.loads(out_.stdout.strip().splitlines()[-1])["steps_per_s"])
            print(f"repeat {repeat + 1}/{repeats}, {t} thread(s): {results[t][-1]:.0f} updates/s", flush=True)
    medians = {t: statistics.median(v) for t, v in results.items()}
    print(" | ".join(f"{t} thread(s): {m:.0f} updates/s" for t, m in medians.items()) + " (medians)")
    if out:
        Path(out).write_text(json.dumps({"env_id": env_id, "policy_frequency": policy_frequency,
                                         "batch_size": batch_size, "steps": steps, "measurements": results,
                                         "medians": medians}, indent=2))


if __name__ == "__main__":
    tyro.cli(main)
