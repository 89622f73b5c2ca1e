"""Gradient steps per second of ddpg_continuous.py's update alone: DDPG.update on minibatches sampled from its
ReplayBuffer, filled with random transitions of an env's sizes; no env, no acting, no logging. Beside
throughput.py's whole-loop SPS this shows how much of a training step is the update itself.

    python benchmark/update_speed.py --env-id Hopper-v4 --threads 1 2 --steps 2000 --repeats 3

Each (threads, repeat) is a fresh process, threads alternating within a repeat. Each also times the matrix
products of one update alone (the exact calls, operands and layouts, recorded while an update ran, then replayed
back to back): the arithmetic floor no change to the update's Python or bookkeeping can go below.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import tyro
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class RecordProducts(TorchDispatchMode):
    """Records every matrix product (aten mm and addmm) that runs under it, with copies of its operands that keep
    their strides (a weight enters `linear` transposed), so that the products can be replayed alone."""

    PRODUCTS = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.PRODUCTS:
            copies = [torch.empty_strided(a.shape, a.stride(), dtype=a.dtype).copy_(a) if isinstance(a, torch.Tensor)
                      else a for a in args]
            self.calls.append((func, copies, kwargs or {}))
        return func(*args, **(kwargs or {}))


def measure(env_id: str, steps: int, threads: int, policy_frequency: int, batch_size: int, onednn: bool) -> dict:
    """Updates per second, and how many updates per second the update's matrix products alone would allow."""
    import gymnasium as gym
    import numpy as np

    import ddpg_continuous as ddpg_file

    torch.set_num_threads(threads)
    if onednn:  # the route ddpg_continuous.py once took: oneDNN may compute float32 products, in bfloat16 if it can
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
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
    device = torch.device("cpu")
    ddpg = ddpg_file.DDPG(obs_dim, env.action_space, 3e-4, device)

    def update(i: int):  # the i-th gradient step; the actor's every policy_frequency-th
        ddpg.update(*rb.sample(batch_size, device), 0.99, 0.005, i % policy_frequency == 0)

    def timed(run, count: int) -> float:
        """Seconds that `count` calls of run(i), i = 1..count, take."""
        start = time.perf_counter()
        for i in range(1, count + 1):
            run(i)
        return time.perf_counter() - start

    timed(update, 50)  # warm-up: allocator, optimizer state
    updates_per_s = steps / timed(update, steps)

    # The products of `policy_frequency` consecutive updates (the last of which updates the actor), replayed.
    with RecordProducts() as recorder:
        timed(update, policy_frequency)

    def replay(_):
        for func, operands, kwargs in recorder.calls:
            func(*operands, **kwargs)

    rounds = max(steps // policy_frequency, 1)
    timed(replay, 10)
    return {"steps_per_s": updates_per_s,
            "products_only_steps_per_s": rounds * policy_frequency / timed(replay, rounds),
            "products_per_step": len(recorder.calls) / policy_frequency}


def main(env_id: str = "Hopper-v4", threads: tuple[int, ...] = (1, 2), steps: int = 2000, repeats: int = 3,
         policy_frequency: int = 1, batch_size: int = 256, onednn: bool = False, out: Optional[str] = None,
         worker: Optional[int] = None):
    """Measure update steps per second for each torch thread count.

    Args:
        env_id: whose observation and action sizes to use.
        threads: torch thread counts to compare.
        steps: timed gradient steps per measurement (after 50 untimed ones).
        repeats: measurements per thread count; medians are reported.
        policy_frequency: update the actor every this many steps (1: every step, like stable-baselines3).
        batch_size: the minibatch size.
        onednn: hand the float32 products to oneDNN (torch.backends.mkldnn.matmul.fp32_precision = "bf16") instead
            of torch's default route (MKL), as ddpg_continuous.py did before it stopped changing that process-wide
            setting. Unlike the script then, no probe checks that the products stay float32: where oneDNN has
            bfloat16 kernels, this measures bfloat16 products.
        out: also write the measurements as JSON to this file.
        worker: internal: measure once with this many threads and print the result.
    """
    if worker is not None:
        print(json.dumps(measure(env_id, steps, worker, policy_frequency, batch_size, onednn)))
        return
    results, products = {t: [] for t in threads}, {t: [] for t in threads}
    for repeat in range(repeats):
        for t in threads:
            out_ = subprocess.run([sys.executable, __file__, "--env-id", env_id, "--steps", str(steps),
                                   "--policy-frequency", str(policy_frequency), "--batch-size", str(batch_size),
                                   *(("--onednn",) if onednn else ()), "--worker", str(t)], capture_output=True,
                                   text=True)
            if out_.returncode:
                sys.exit(out_.stderr[-3000:])
            measured = json.loads(out_.stdout.strip().splitlines()[-1])
            results[t].append(measured["steps_per_s"])
            products[t].append(measured["products_only_steps_per_s"])
            print(f"repeat {repeat + 1}/{repeats}, {t} thread(s): {results[t][-1]:.0f} updates/s; its "
                  f"{measured['products_per_step']:.0f} matrix products alone: {products[t][-1]:.0f} per s", flush=True)
    medians = {t: statistics.median(v) for t, v in results.items()}
    products_medians = {t: statistics.median(v) for t, v in products.items()}
    print(" | ".join(f"{t} thread(s): {medians[t]:.0f} updates/s, products alone {products_medians[t]:.0f}/s "
                     f"(the update runs at {medians[t] / products_medians[t]:.0%} of its products' speed)"
                     for t in threads) + " (medians)")
    if out:
        Path(out).write_text(json.dumps({"env_id": env_id, "policy_frequency": policy_frequency,
                                         "batch_size": batch_size, "onednn": onednn, "steps": steps,
                                         "measurements": results,
                                         "medians": medians, "products_only": products,
                                         "products_only_medians": products_medians}, indent=2))


if __name__ == "__main__":
    tyro.cli(main)
