"""Train stable-baselines3, configured like one of the project's scripts, and log what the scripts log.

Writes TensorBoard scalars `charts/episodic_return` and `charts/episodic_length` (the env's own returns,
from SB3's Monitor wrapper, which sits below any normalization) and `charts/SPS`, so that the benchmark
reads SB3's runs exactly as it reads the project's.

    python benchmark/sb3_train.py ppo.py CartPole-v1 --seed 1 --total-timesteps 500000 --out DIR --eval-episodes 10

With --eval-episodes N, the trained model then plays N episodes with its deterministic policy on a fresh env
seeded with --seed, its observation normalization frozen, and `eval/episodic_return` logs each one at steps
0..N-1: the protocol of rl-baselines3-zoo, and what the scripts log after --save-model.

With --checkpoint, a run that is cut short resumes: every --checkpoint-every steps the model (optimizer
included), the replay buffer and VecNormalize's statistics are saved, and a run started again with the same
folders continues from the last save, on fresh envs (the episode under way when the run stopped is lost).
Its logs continue too: the scalars that the stopped run wrote after its last save are dropped (all of them if
it stopped before its first save), and the wall clock of the log skips the time the run was stopped, so SPS and
wall time count training only.
"""

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmark.sb3_equivalent import make_envs, make_model  # noqa: E402

STATE = "state.json"  # written last: a folder with it holds a whole checkpoint


def save_checkpoint(model, folder: Path, clock: dict):
    """Write everything a resumed run needs to `folder` (`clock`: the run's first start and its training time
    so far, in seconds). It replaces the previous checkpoint so that a whole one exists at every moment: in
    `folder`, or in `folder`.old while the new one is moved in."""
    new, old = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    model.save(new / "model.zip")
    if hasattr(model, "replay_buffer"):  # off-policy: the buffer is half of what has been learned
        model.save_replay_buffer(new / "replay_buffer.pkl")
    if model.get_vec_normalize_env() is not None:
        model.get_vec_normalize_env().save(str(new / "vec_normalize.pkl"))
    (new / STATE).write_text(json.dumps(dict(clock, num_timesteps=model.num_timesteps)))
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(folder: Path) -> Optional[Path]:
    """The folder of the last whole checkpoint, or None."""
    candidates = (folder, folder.with_name(folder.name + ".old"))
    return next((path for path in candidates if (path / STATE).exists()), None)


def resume(model, checkpoint: Path, seed: int):
    """`model` (fresh, with its envs) replaced by the saved one, on the same envs."""
    from stable_baselines3.common.vec_env import VecNormalize

    env = model.get_env()
    if model.get_vec_normalize_env() is not None:  # its running statistics are part of what was learned
        env = VecNormalize.load(str(checkpoint / "vec_normalize.pkl"), env.venv)
    model = type(model).load(checkpoint / "model.zip", env=env, device=model.device)
    if hasattr(model, "replay_buffer"):
        model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
    model._last_obs = None  # the envs are new: learn() resets them instead of stepping on from a stale state
    model.set_random_seed(seed + model.num_timesteps)  # fresh random numbers, not a replay of the first ones
    return model


def evaluate(model, script: str, env_id: str, episodes: int, seed: int) -> list:
    """The env's own returns of `episodes` episodes of the model's deterministic policy, on one fresh env seeded
    with `seed`, the training run's observation statistics frozen."""
    import copy

    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_envs(script, env_id, 1, seed)
    if model.get_vec_normalize_env() is not None:
        env = VecNormalize(env, training=False, norm_reward=False)
        env.obs_rms = copy.deepcopy(model.get_vec_normalize_env().obs_rms)
    returns, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    env.close()
    return returns


def main(script: str, env_id: str, /, seed: int = 1, total_timesteps: int = 100_000, out: str = "sb3_run",
         torch_threads: int = 1, checkpoint: Optional[str] = None, checkpoint_every: int = 100_000,
         eval_episodes: int = 0):
    """Train SB3's equivalent of SCRIPT on ENV_ID and log to OUT.

    Args:
        seed: the seed of the model and its envs.
        total_timesteps: env steps to train for, in all.
        out: the TensorBoard folder.
        torch_threads: CPU threads for torch.
        checkpoint: save to (and resume from) this folder; no checkpoints if not given.
        checkpoint_every: env steps between checkpoints.
        eval_episodes: episodes of the deterministic policy after training, logged as eval/episodic_return; none
            if 0.
    """
    from stable_baselines3.common.callbacks import BaseCallback
    from torch.utils.tensorboard import SummaryWriter

    torch.set_num_threads(torch_threads)
    model = make_model(script, env_id, seed)
    # purge_step 0: a run that starts from scratch replaces whatever was logged in `out` before (by an earlier
    # start that stopped before its first checkpoint, say)
    first_start, elapsed_before, purge_step = None, 0.0, 0
    saved = latest_checkpoint(Path(checkpoint)) if checkpoint else None
    if saved:
        model = resume(model, saved, seed)
        state = json.loads((saved / STATE).read_text())
        first_start, elapsed_before = state["first_start"], state["elapsed"]
        purge_step = model.num_timesteps + 1  # the scalars the stopped run wrote after its last save are dropped
        print(f"resuming from {saved} at step {model.num_timesteps}", flush=True)
    writer = SummaryWriter(out, purge_step=purge_step)
    start = time.time()
    first_start = first_start or start

    def elapsed() -> float:  # seconds of training, across resumptions
        return elapsed_before + time.time() - start

    def log(tag: str, value: float, step: int):
        # the log's clock is the first start plus the training time: a pause between runs does not count
        writer.add_scalar(tag, value, step, walltime=first_start + elapsed())

    class LogLikeTheScripts(BaseCallback):
        saved_at = model.num_timesteps

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    log("charts/episodic_return", info["episode"]["r"], self.num_timesteps)
                    log("charts/episodic_length", info["episode"]["l"], self.num_timesteps)
            if self.n_calls % 1000 == 0:
                log("charts/SPS", int(self.num_timesteps / elapsed()), self.num_timesteps)
            return True

        def _on_rollout_start(self):
            # between a rollout and the next: every transition stored, every update made
            steps = self.model.num_timesteps
            if checkpoint and steps // checkpoint_every > self.saved_at // checkpoint_every:
                writer.flush()  # everything logged so far is on disk before the checkpoint says so
                save_checkpoint(self.model, Path(checkpoint), {"first_start": first_start, "elapsed": elapsed()})
                self.saved_at = steps

    model.learn(total_timesteps=max(total_timesteps - model.num_timesteps, 0), callback=LogLikeTheScripts(),
                reset_num_timesteps=False)
    log("charts/SPS", int(model.num_timesteps / elapsed()), model.num_timesteps)
    if eval_episodes > 0:
        for idx, episodic_return in enumerate(evaluate(model, script, env_id, eval_episodes, seed)):
            writer.add_scalar("eval/episodic_return", episodic_return, idx)
    writer.close()


if __name__ == "__main__":
    tyro.cli(main)
