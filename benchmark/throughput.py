"""Steps per second of a project script beside stable-baselines3 on the same configuration, and beside the
same envs stepped with random actions (the ceiling no learner passes), measured in one run.

Every measurement is a fresh process; the kinds alternate within each repeat so that a noisy
machine slows them alike, and the table reports medians. Both sides are measured twice: as users run them
(the script's defaults; stable-baselines3 with torch's default thread count) and with one torch thread each.

    pip install -r benchmark/requirements.txt
    python benchmark/throughput.py --config ppo-cartpole --repeats 5
    python benchmark/throughput.py --config ppo-cartpole --against c0f0410   # the script there against this one
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
import tyro

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Config:
    script: str
    env_id: str
    flags: tuple = ()
    """the script's flags beyond --env-id and --total-timesteps"""
    sb3_overrides: tuple = ()
    """(keyword, value) pairs that configure SB3 as `flags` configure the script"""


CONFIGS = {
    # ppo.py's discrete preset: 4 envs x 128 steps, 4 epochs of 4 minibatches.
    "ppo-cartpole": Config("ppo.py", "CartPole-v1"),
    # ppo.py's continuous preset: 1 env x 2048 steps, 10 epochs of 32 minibatches, normalization on.
    "ppo-hopper": Config("ppo.py", "Hopper-v4"),
    # dqn.py's defaults (CleanRL's): 1 env, a gradient step of batch 128 every 10 env steps, 120-84 ReLU MLP.
    "dqn-cartpole": Config("dqn.py", "CartPole-v1"),
    # ppo_atari.py's defaults (CleanRL's): 8 preprocessed Breakout envs x 128 steps, 4 epochs of 4 minibatches.
    "ppo-atari-breakout": Config("ppo_atari.py", "BreakoutNoFrameskip-v4"),
    # ddpg_continuous.py's defaults (CleanRL's: 256-256 ReLU, batch 256, one gradient step per env step) with the
    # actor updated every step, as SB3's DDPG does; learning from step 1000 on both sides, so that the window is
    # mostly learning.
    "ddpg-hopper": Config("ddpg_continuous.py", "Hopper-v4", ("--policy-frequency", "1", "--learning-starts", "1000"),
                          (("learning_starts", 1000),)),
    # a2c.py's discrete preset (SB3's A2C defaults, zoo's CartPole-v1): 8 envs x 5 steps, one RMSprop step each.
    "a2c-cartpole": Config("a2c.py", "CartPole-v1"),
}

# ours as users run it, ours with one torch thread, SB3 likewise, and the envs alone with random actions
KINDS = ("ours", "ours-1thread", "sb3", "sb3-1thread", "random")
# with --against REV: the script as users run it, here and as it was at git revision REV
VERSION_KINDS = ("ours", "before")


@dataclass
class Args:
    config: Literal[tuple(CONFIGS)] = "ppo-cartpole"
    """which configuration to measure"""
    total_timesteps: int = 50_000
    """env steps per measurement"""
    repeats: int = 3
    """measurements of each kind; the table shows medians"""
    out: Optional[str] = None
    """also write the measurements as JSON to this file"""
    against: Optional[str] = None
    """a git revision: measure the script as it was there beside the current one (alternating), not SB3"""
    worker: Optional[Literal[KINDS + VERSION_KINDS[1:]]] = None
    """internal: take one measurement of this kind in this process and print its SPS"""


def measure_ours(config: Config, steps: int, threads: Optional[int], revision: Optional[str] = None) -> float:
    """The script's own final charts/SPS (its whole loop: acting, env steps, updates, logging); with `revision`,
    of the script as it was at that git revision."""
    from tests.helpers import read_scalars, run_dir, run_ok

    thread_flags = ("--torch-threads", str(threads)) if threads else ()
    with tempfile.TemporaryDirectory() as tmp:
        script = config.script
        if revision:
            script = str(Path(tmp) / config.script)
            Path(script).write_text(subprocess.run(["git", "show", f"{revision}:{config.script}"], cwd=REPO,
                                                   capture_output=True, text=True, check=True).stdout)
        run_ok(script, "--env-id", config.env_id, "--total-timesteps", str(steps), *config.flags,
               *thread_flags, cwd=Path(tmp))
        return read_scalars(run_dir(Path(tmp)))["charts/SPS"][-1][1]


def measure_sb3(config: Config, steps: int, threads: Optional[int]) -> float:
    """stable-baselines3 configured like the script (benchmark/sb3_equivalent.py)."""
    from benchmark.sb3_equivalent import make_model

    if threads:
        torch.set_num_threads(threads)
    model = make_model(config.script, config.env_id, seed=1, **dict(config.sb3_overrides))
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.perf_counter() - start)


def measure_random(config: Config, steps: int) -> float:
    """The same vector envs (as many as the script uses by default, made by the script's own make_env, with its
    preprocessing) stepped with random actions: no learner can be faster."""
    import importlib

    import gymnasium as gym

    from benchmark.sb3_equivalent import EQUIVALENTS, action_kind

    num_envs = EQUIVALENTS[(config.script, action_kind(config.env_id))][1]
    make_env = importlib.import_module(Path(config.script).stem).make_env
    envs = gym.vector.SyncVectorEnv([make_env(config.env_id, i, False, "") for i in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=1)
    envs.action_space.seed(1)
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        envs.step(envs.action_space.sample())
    return steps // num_envs * num_envs / (time.perf_counter() - start)


def worker(kind: str, config: Config, steps: int, revision: Optional[str]) -> float:
    if kind == "before":
        return measure_ours(config, steps, None, revision)
    if kind == "random":
        return measure_random(config, steps)
    threads = 1 if kind.endswith("-1thread") else None
    if kind.startswith("ours"):
        return measure_ours(config, steps, threads)
    return measure_sb3(config, steps, threads)


def main(args: Args):
    config = CONFIGS[args.config]
    if args.worker:
        print(json.dumps({"sps": worker(args.worker, config, args.total_timesteps, args.against)}))
        return
    kinds = VERSION_KINDS if args.against else KINDS
    against = ("--against", args.against) if args.against else ()
    results = {kind: [] for kind in kinds}
    for repeat in range(args.repeats):
        for kind in kinds:
            out = subprocess.run([sys.executable, __file__, "--config", args.config, "--total-timesteps",
                                  str(args.total_timesteps), "--worker", kind, *against], capture_output=True,
                                 text=True)
            if out.returncode:
                sys.exit(f"{kind} failed:\n{out.stderr[-3000:]}")
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1])["sps"])
            print(f"repeat {repeat + 1}/{args.repeats} {kind}: {results[kind][-1]:.0f} SPS", flush=True)
    median = {kind: statistics.median(v) for kind, v in results.items()}
    if args.against:
        print(f"\n{args.config}, {args.repeats} repeats, medians: {median['ours']:.0f} SPS here, "
              f"{median['before']:.0f} at {args.against}, {median['ours'] / median['before']:.3f}x")
        if args.out:
            Path(args.out).write_text(json.dumps({"config": args.config, "against": args.against,
                                                  "total_timesteps": args.total_timesteps,
                                                  "measurements": results, "medians": median}, indent=2))
        return
    print(f"\n{args.config} ({config.script} on {config.env_id}, {args.total_timesteps} steps, "
          f"{args.repeats} repeats, medians)")
    print("| ours (defaults) | ours (1 thread) | SB3 (default threads) | SB3 (1 thread) | random actions "
          "| ours / SB3, defaults | ours / SB3, 1 thread each |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {median['ours']:.0f} | {median['ours-1thread']:.0f} | {median['sb3']:.0f} | {median['sb3-1thread']:.0f} "
          f"| {median['random']:.0f} | {median['ours'] / median['sb3']:.2f}x "
          f"| {median['ours-1thread'] / median['sb3-1thread']:.2f}x |")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "total_timesteps": args.total_timesteps,
                                              "measurements": results, "medians": median}, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
