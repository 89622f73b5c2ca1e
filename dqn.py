# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "torch>=2.4",
#     "numpy>=1.26",
#     "gymnasium[classic-control,mujoco]>=1.1,<2",
#     "tyro>=0.8",
#     "tensorboard>=2.15",
#     "wandb>=0.18",
#     "moviepy>=1.0",
# ]
# ///
"""Deep Q-Network (DQN) for vector observations and discrete actions.

DQN (Mnih et al. 2015, "Human-level control through deep reinforcement learning", Nature 518) learns the
action-value function Q(s, a) with a neural network and acts epsilon-greedily on it. Each env step:

  1. Act: with probability epsilon a random action, otherwise argmax_a Q(s, a); epsilon decays linearly from
     `start_e` to `end_e` over the first `exploration_fraction` of training.
  2. Store the transition (s, a, r, s', terminated) in a replay buffer of the last `buffer_size` transitions.
     Sampling from it breaks the correlation of consecutive steps (the paper's "experience replay").
  3. Every `train_frequency` env steps (after `learning_starts`), sample a minibatch and regress Q(s, a) on
     the TD target of the paper's loss (its Methods; the target network's parameters are written theta^-)
         y = r + gamma * (1 - terminated) * max_a' Q_target(s', a'),
     where Q_target is a copy of the network refreshed every `target_network_frequency` steps (or moved
     towards it by Polyak averaging with `tau` < 1): regressing on a target that moves with every gradient
     step diverges easily.
  4. Repeat until `total_timesteps` env steps (summed over envs) have been taken.

The loss is the mean squared TD error, as in CleanRL's dqn.py whose published results this file is compared
with. Mnih et al. clipped the TD error's gradient to [-1, 1] (equivalent to a Huber loss) to keep Atari's
large, unscaled errors from producing huge updates; classic-control rewards are small, and where an update
still needs bounding, --max-grad-norm clips the gradient's norm instead. Double DQN (van Hasselt et al. 2016,
https://arxiv.org/abs/1509.06461), behind --double-q, picks a' with the online network and evaluates it with
the target network, which removes most of the max operator's overestimation bias.

Episode ends on gymnasium 1.x: the buffer stores the *real* final observation of an episode as s' (the
vector envs reset a finished env within the same step, autoreset mode SAME_STEP, and hand over the final
observation in `infos["final_obs"]`), and a flag that is true only for termination. A time-limit truncation
therefore bootstraps from Q(final observation); a termination does not; and no stored transition joins the
last observation of one episode to the first of the next.

Usage:
    python dqn.py                                   # CartPole-v1 with CleanRL's defaults
    python dqn.py --env-id Acrobot-v1 --num-envs 4 --double-q
    python dqn.py --save-model --capture-video --track
    python dqn.py --eval-checkpoint runs/RUN/dqn.pt --capture-video   # act (and film) with a checkpoint
    python dqn.py --checkpoint-every 100000                           # the run's whole state, now and then
    python dqn.py --resume runs/RUN                                   # continue a stopped run exactly
    python dqn.py --help                            # every flag
"""

import os
import pickle
import random
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment (torch, numpy, random and the envs)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda is used when available"""
    torch_threads: int | None = 1
    """CPU threads for torch (None: torch's choice); small MLPs run fastest on one (more threads only add overhead)"""
    track: bool = False
    """if toggled, the run is tracked with Weights & Biases (WANDB_MODE=offline works without network)"""
    wandb_project_name: str = "single-file-rl"
    """the Weights & Biases project name"""
    wandb_entity: str | None = None
    """the Weights & Biases entity (team)"""
    capture_video: bool = False
    """if toggled, record videos of env 0 under `videos/{run_name}`"""
    save_model: bool = False
    """if toggled, save a checkpoint to `runs/{run_name}/{exp_name}.pt` and evaluate it after training"""
    eval_episodes: int = 10
    """episodes of the greedy policy when evaluating a checkpoint"""
    eval_checkpoint: str | None = None
    """path of a checkpoint to evaluate (and film, with --capture-video) instead of training"""
    checkpoint_every: int = 0
    """every this many env steps, write the run's whole state to runs/{run_name}/state.pt, replacing the last (0: off)"""
    resume: str | None = None
    """continue the run of this folder (or state.pt) from its last state, with its arguments (see --total-timesteps)"""

    # Algorithm arguments (CleanRL's dqn.py defaults)
    env_id: str = "CartPole-v1"
    """the id of the environment"""
    total_timesteps: int = 500_000
    """total env steps of the experiment, summed over envs; with --resume, a larger value extends the run, and
    epsilon's decay (over --exploration-fraction of the total) stretches over the new total from there"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 1
    """the number of parallel game environments (each iteration takes one step in each)"""
    buffer_size: int = 10_000
    """the replay memory buffer size, in transitions (rounded down to a whole number of steps of all envs)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 1.0
    """the target network update rate: 1 copies the Q-network, less moves towards it (Polyak averaging)"""
    target_network_frequency: int = 500
    """the env steps between two updates of the target network"""
    batch_size: int = 128
    """the batch size of sample from the replay memory"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.05
    """the ending epsilon for exploration"""
    exploration_fraction: float = 0.5
    """the fraction of `total-timesteps` it takes from start-e to go end-e"""
    learning_starts: int = 10_000
    """env steps collected before the first gradient step (the buffer fills first)"""
    train_frequency: int = 10
    """the env steps between two gradient steps (with several envs, as many steps as that ratio gives)"""
    double_q: bool = False
    """if toggled, use Double DQN targets: the online network picks a', the target network values it"""
    max_grad_norm: float | None = None
    """if set, clip the gradient's global norm to this value"""


# -------------------------------------------------------------------------------------------------- the networks
class QNetwork(nn.Module):
    """Q(s, .) for every action at once: one output per action (CleanRL's 120-84 ReLU MLP). Layers called one by
    one, not through nn.Sequential: fewer module calls, each a fixed Python cost, on a forward pass run every step."""

    def __init__(self, obs_dim: int, num_actions: int):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(obs_dim, 120), nn.Linear(120, 84), nn.Linear(84, num_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# ------------------------------------------------------------------------------------------------------ the math
def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """Epsilon at step t: from start_e down to end_e over `duration` steps, then constant."""
    return max(end_e, start_e + (end_e - start_e) * t / duration)


class ReplayBuffer:
    """The last `size` transitions in preallocated arrays; the oldest are overwritten first.

    s' is stored beside s (rather than read from the next row) because with several envs and episode ends
    the next row is not the next state: an episode's last transition keeps its real final observation.
    Only `terminated` is stored: a truncated transition must still bootstrap. Each add() writes one step of
    all envs as a block of consecutive rows: `size` is a multiple of the number of envs, so a block never
    wraps around midway, and a slice copies it as one block per array instead of scattering rows by index."""

    ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminations")

    def __init__(self, size: int, obs_shape: tuple, seed: int | np.random.SeedSequence):
        self.obs = np.zeros((size,) + obs_shape, np.float32)
        self.next_obs = np.zeros((size,) + obs_shape, np.float32)
        self.actions = np.zeros(size, np.int64)
        self.rewards = np.zeros(size, np.float32)
        self.terminations = np.zeros(size, np.float32)
        self.size, self.pos, self.count = size, 0, 0
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        """The filled part only, the first `count` rows (the buffer fills from row 0 and wraps once full), where
        the next add() writes, and the sampling generator's state. The tensors view the arrays: no copy."""
        rows = {name: torch.from_numpy(getattr(self, name)[: self.count]) for name in ReplayBuffer.ARRAYS}
        return {**rows, "pos": self.pos, "count": self.count, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict):
        self.pos, self.count = state["pos"], state["count"]
        for name in ReplayBuffer.ARRAYS:
            getattr(self, name)[: self.count] = state[name].numpy()
        self.rng.bit_generator.state = state["rng"]

    @staticmethod
    def nbytes(size: int, obs_shape: tuple) -> int:
        """Memory of a buffer of `size` transitions, known before allocating it."""
        return size * (2 * 4 * int(np.prod(obs_shape)) + 8 + 4 + 4)  # s, s' float32; a int64; r, terminated

    def add(self, obs, next_obs, actions, rewards, terminations):
        """Store one transition per env (arrays with a leading num_envs axis)."""
        rows = slice(self.pos, self.pos + len(actions))
        self.obs[rows], self.next_obs[rows], self.actions[rows] = obs, next_obs, actions
        self.rewards[rows], self.terminations[rows] = rewards, terminations
        self.pos = rows.stop % self.size
        self.count = min(self.count + len(actions), self.size)

    def sample(self, batch_size: int, device: torch.device):
        """A uniform sample (with replacement) of stored transitions, as tensors. np.take(a, idx, axis=0) gathers
        the same rows as a[idx], through NumPy's dedicated gather loop rather than its general indexing machinery."""
        idx = self.rng.integers(0, self.count, batch_size)
        return tuple(torch.as_tensor(np.take(a, idx, axis=0), device=device)
                     for a in (self.obs, self.actions, self.rewards, self.next_obs, self.terminations))


def real_next_obs(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """s' of each env's transition. Where an episode ended, next_obs already holds the next episode's first
    observation; the observation the step really led to is in infos["final_obs"]."""
    if "final_obs" not in infos:  # no episode ended in this step
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(infos["_final_obs"]):
        real[i] = infos["final_obs"][i]
    return real


def td_target(rewards, terminations, next_q_target, gamma: float, next_q_online=None) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * Q_target(s', a'), with a' = argmax of Q_target (DQN) or, given
    next_q_online, of the online network (Double DQN). next_q_* are (batch, num_actions)."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        next_value = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    return rewards + gamma * (1.0 - terminations) * next_value


@torch.no_grad()
def polyak_update(target_params: list, params: list, tau: float):
    """target <- tau * online + (1 - tau) * target, all tensors in one fused call (lerp(target, online, tau) is
    exactly target + tau * (online - target)). No autograd: an in-place op fed by weights that require grad
    would make each target a graph node, chained to the previous one at every call, growing for the whole run."""
    torch._foreach_lerp_(target_params, params, tau)


def target_update_rate(tau: float, global_step: int, num_envs: int, frequency: int) -> float:
    """The step size of this iteration's target-network update: 0 if global_step crossed no multiple of
    `frequency`; else k Polyak steps theta^- <- (1 - tau) theta^- + tau theta taken at once, which move the
    target by 1 - (1 - tau)^k. With several envs an iteration can cross k > 1 multiples, and a target moved
    only once would track more slowly than configured."""
    crossed = global_step // frequency - (global_step - num_envs) // frequency
    return 1.0 - (1.0 - tau) ** crossed


# --------------------------------------------------------------------------------------------- the training loop
def train(args: Args, state: dict | None = None) -> tuple[QNetwork, Path]:
    """Train on args, or continue the run whose saved `state` is given, and return the Q-network and the run folder
    (TensorBoard log, checkpoint). main() checks a command line first; from a notebook or a sweep:
        q_network, run = train(Args(env_id="Acrobot-v1", num_envs=4, double_q=True))"""
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_name = state["run_name"] if state else run_name
    if args.track:
        import wandb

        try:  # a resumed run continues its own W&B run
            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                       config=vars(args), name=run_name, save_code=True, settings=wandb.Settings(init_timeout=60),
                       id=state["wandb_id"] if state else None, resume="allow" if state else None)
        except Exception as e:  # no network or no login: say so instead of a traceback
            fail(f"Weights & Biases did not start ({str(e).splitlines()[0]}); WANDB_MODE=offline logs locally")
    from torch.utils.tensorboard import SummaryWriter

    # purge_step: TensorBoard drops what a stopped run logged after its last state, so that no step is logged twice
    writer = SummaryWriter(f"runs/{run_name}", purge_step=state["global_step"] + 1 if state else None)
    if not state:
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))

    # Seeding: same seed, same numbers on the CPU.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    # Exploration and replay sampling draw from independent streams derived from the seed (two generators
    # seeded with the same number would draw the same numbers, coupling the two).
    explore_seed, replay_seed = np.random.SeedSequence(args.seed).spawn(2)
    rng = np.random.default_rng(explore_seed)

    # Env setup. SAME_STEP autoreset: a finished env is reset inside the step that ended it, and its real
    # final observation comes back in infos["final_obs"] (see the module docstring).
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, i, args.capture_video, run_name) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs_shape, num_actions = envs.single_observation_space.shape, int(envs.single_action_space.n)
    action_start = envs.single_action_space.start  # Discrete(n, start): output i is the env's action start + i

    q_network = QNetwork(obs_shape[0], num_actions).to(device)
    # fused: one kernel for the whole parameter update instead of a loop of small ops per tensor
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    target_network = QNetwork(obs_shape[0], num_actions).to(device)
    target_network.load_state_dict(q_network.state_dict())
    buffer_size = max(args.buffer_size // args.num_envs, 1) * args.num_envs  # whole steps of all envs
    buffer_bytes = ReplayBuffer.nbytes(buffer_size, obs_shape)
    print(f"replay buffer: {buffer_size} transitions, {buffer_bytes / 2**20:.1f} MiB")
    rb = ReplayBuffer(buffer_size, obs_shape, replay_seed)

    start_time = time.time()
    # Episode statistics, summed here rather than by gymnasium's RecordEpisodeStatistics wrapper (a few array
    # operations instead of its per-step bookkeeping), and written to TensorBoard with the progress line rather
    # than as episodes end: the writer's thread wakes up for every scalar and takes the GIL.
    episode_returns, episode_lengths = np.zeros(args.num_envs), np.zeros(args.num_envs, np.int64)
    finished = []  # (global_step, return, length) of the episodes not yet written
    recent_returns = deque(maxlen=10)
    num_iterations = -(-args.total_timesteps // args.num_envs)
    print_every = max(1, num_iterations // 50)
    train_credit = 0  # env steps not yet paid for with a gradient step
    gradient_steps = 0
    obs, _ = envs.reset(seed=args.seed)
    first_iteration = 1
    if state:  # everything the next iteration reads, as the stopped run left it
        first_iteration, obs = state["iteration"] + 1, state["obs"].numpy()
        start_time -= state["elapsed"]
        episode_returns, episode_lengths = state["episode_returns"].numpy(), state["episode_lengths"].numpy()
        recent_returns.extend(state["recent_returns"])
        train_credit, gradient_steps = state["train_credit"], state["gradient_steps"]
        q_network.load_state_dict(state["model"])
        target_network.load_state_dict(state["target_model"])
        optimizer.load_state_dict(state["optimizer"])
        rb.load_state_dict(state["replay_buffer"])
        rng.bit_generator.state = state["explore_rng"]
        set_rng_state(state["rng"])
        if all(restorable(env) for env in envs.envs):
            for env, saved in zip([envs, *envs.envs], state["envs"]):
                set_env_state(env, saved)
        else:  # the envs restart, seeded from the saved generators; the episodes under way are dropped
            obs = envs.reset(seed=int(np.random.randint(2**31)))[0]
            episode_returns[:], episode_lengths[:] = 0.0, 0

    for iteration in range(first_iteration, num_iterations + 1):
        global_step = iteration * args.num_envs

        # 1. Act epsilon-greedily, each env drawing its own coin. The network runs only if some env is greedy,
        #    and random actions are drawn only for the envs that explore (late in training, almost none).
        epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps,
                                  global_step)
        explore = rng.random(args.num_envs) < epsilon
        if explore.all():
            actions = rng.integers(0, num_actions, args.num_envs)
        else:
            with torch.inference_mode():
                actions = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device)).argmax(1).cpu().numpy()
            if explore.any():
                actions[explore] = rng.integers(0, num_actions, explore.sum())
        next_obs, rewards, terminations, truncations, infos = envs.step(actions + action_start)

        episode_returns += rewards
        episode_lengths += 1
        for i in np.flatnonzero(terminations | truncations):  # SAME_STEP: env i starts afresh next step
            finished.append((global_step, float(episode_returns[i]), int(episode_lengths[i])))
            recent_returns.append(float(episode_returns[i]))
            episode_returns[i], episode_lengths[i] = 0.0, 0

        # 2. Store (s, a, r, s', terminated): truncations are stored as not terminated, so they bootstrap.
        rb.add(obs, real_next_obs(next_obs, infos), actions, rewards, terminations)
        obs = next_obs

        # 3. Learn: one gradient step per train_frequency env steps, after the warm-up.
        if global_step > args.learning_starts:
            train_credit += args.num_envs
            while train_credit >= args.train_frequency:
                train_credit -= args.train_frequency
                b_obs, b_actions, b_rewards, b_next_obs, b_terminations = rb.sample(args.batch_size, device)
                with torch.no_grad():
                    next_q_online = q_network(b_next_obs) if args.double_q else None
                    target = td_target(b_rewards, b_terminations, target_network(b_next_obs), args.gamma,
                                       next_q_online)
                q_values = q_network(b_obs).gather(1, b_actions[:, None]).squeeze(1)
                loss = F.mse_loss(q_values, target)
                optimizer.zero_grad()
                loss.backward()
                if args.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm, foreach=True)
                optimizer.step()
                gradient_steps += 1
                if gradient_steps % 100 == 0:
                    writer.add_scalar("losses/td_loss", loss.item(), global_step)
                    writer.add_scalar("losses/q_values", q_values.mean().item(), global_step)

        # Target network: refreshed (tau = 1) or moved towards the Q-network (tau < 1) once for every multiple of
        # target_network_frequency that global_step crossed.
        rate = target_update_rate(args.tau, global_step, args.num_envs, args.target_network_frequency)
        if rate > 0:
            polyak_update(list(target_network.parameters()), list(q_network.parameters()), rate)

        if iteration % print_every == 0 or iteration == num_iterations:
            sps = int(global_step / (time.time() - start_time))
            writer.add_scalar("charts/SPS", sps, global_step)
            writer.add_scalar("charts/epsilon", epsilon, global_step)
            for end_step, episodic_return, episodic_length in finished:
                writer.add_scalar("charts/episodic_return", episodic_return, end_step)
                writer.add_scalar("charts/episodic_length", episodic_length, end_step)
            finished.clear()
            mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
            elapsed = time.time() - start_time
            remaining = elapsed * (num_iterations - iteration) / iteration
            print(f"step {global_step}/{args.total_timesteps} | SPS {sps} | return {mean_return} (last 10 episodes)"
                  f" | epsilon {epsilon:.2f} | {elapsed:.0f}s elapsed, ~{remaining:.0f}s left", flush=True)
        if args.checkpoint_every and (global_step // args.checkpoint_every > (global_step - args.num_envs)
                                      // args.checkpoint_every or iteration == num_iterations):
            for end_step, episodic_return, episodic_length in finished:  # the state holds no unwritten episode
                writer.add_scalar("charts/episodic_return", episodic_return, end_step)
                writer.add_scalar("charts/episodic_length", episodic_length, end_step)
            finished.clear()
            writer.flush()  # the log reaches this state's step before the state exists
            save_state(Path("runs") / run_name / "state.pt", {
                "script": "dqn.py", "args": asdict(args), "run_name": run_name,
                "wandb_id": wandb.run.id if args.track else None, "iteration": iteration, "global_step": global_step,
                "elapsed": time.time() - start_time, "obs": torch.from_numpy(obs),
                "episode_returns": torch.from_numpy(episode_returns), "episode_lengths": torch.from_numpy(episode_lengths),
                "recent_returns": list(recent_returns), "train_credit": train_credit, "gradient_steps": gradient_steps,
                "model": q_network.state_dict(), "target_model": target_network.state_dict(),
                "optimizer": optimizer.state_dict(), "replay_buffer": rb.state_dict(),
                "explore_rng": rng.bit_generator.state,
                "envs": [env_state(env) for env in [envs, *envs.envs]], "rng": rng_state()})

    envs.close()
    if args.save_model:
        model_path = f"runs/{run_name}/{args.exp_name}.pt"
        torch.save({"model": q_network.state_dict(), "args": asdict(args)}, model_path)
        print(f"model saved to {model_path}")
        # Evaluate what was written, not the object in memory: this also proves the checkpoint round-trips.
        episodic_returns = evaluate(*load_checkpoint(model_path, device), args.eval_episodes, f"{run_name}-eval",
                                    args.capture_video, device, args.seed)
        for idx, episodic_return in enumerate(episodic_returns):
            writer.add_scalar("eval/episodic_return", episodic_return, idx)
        print(f"eval: mean return {np.mean(episodic_returns):.2f} over {len(episodic_returns)} episodes")
    writer.close()
    if args.track:
        wandb.finish()
    return q_network, Path("runs") / run_name


# ------------------------------------------------- plumbing: input checks, envs, checkpoints, evaluation, errors
def check_spaces(obs_space: gym.Space, act_space: gym.Space) -> str | None:
    """Why dqn.py cannot run on these spaces, or None if it can."""
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) >= 2:
        return f"image observations {obs_space.shape} need a convolutional network: use ppo_atari.py"
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        return f"dqn.py needs a flat Box observation space, got {obs_space}"
    if isinstance(act_space, gym.spaces.Box):
        return f"dqn.py needs a Discrete action space, got {act_space}: use ppo.py or ddpg_continuous.py"
    if not isinstance(act_space, gym.spaces.Discrete):
        return f"dqn.py needs a Discrete action space, got {act_space}"
    return None


def check_sizes(args: Args) -> str | None:
    """Why these sizes cannot work, or None if they can."""
    for name in ("total_timesteps", "num_envs", "buffer_size", "batch_size", "target_network_frequency",
                 "train_frequency", "eval_episodes", "torch_threads"):
        value = getattr(args, name)
        if value is not None and value <= 0:  # None: --torch-threads left to torch
            return f"--{name.replace('_', '-')} must be positive, got {value}"
    if args.learning_starts < 0:
        return f"--learning-starts must not be negative, got {args.learning_starts}"
    if args.learning_rate <= 0:
        return f"--learning-rate must be positive, got {args.learning_rate}"
    if args.checkpoint_every < 0:
        return f"--checkpoint-every must not be negative, got {args.checkpoint_every}"
    if not 0 <= args.gamma <= 1:
        return f"--gamma must be in [0, 1], got {args.gamma}"
    if not 0 < args.tau <= 1:
        return f"--tau must be in (0, 1], got {args.tau}"
    if not 0 < args.exploration_fraction <= 1:
        return f"--exploration-fraction must be in (0, 1], got {args.exploration_fraction}"
    if not (0 <= args.end_e <= 1 and 0 <= args.start_e <= 1):
        return f"--start-e and --end-e must be probabilities, got {args.start_e} and {args.end_e}"
    if args.batch_size > args.buffer_size:
        return f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}"
    if args.total_timesteps < args.num_envs:
        return f"--total-timesteps {args.total_timesteps} is fewer than one step of {args.num_envs} envs"
    return None


def make_env(env_id: str, idx: int, capture_video: bool, run_name: str):
    def thunk():
        if capture_video and idx == 0:
            env = gym.make(env_id, render_mode="rgb_array")
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}", disable_logger=True)
        else:
            env = gym.make(env_id)
        if isinstance(env.observation_space, gym.spaces.Discrete):
            # A Discrete(n) observation (FrozenLake's cell number) names a state, it does not measure one: feed
            # the network a one-hot vector of n inputs, as stable-baselines3 does. For a Discrete space,
            # FlattenObservation is exactly that one-hot encoding.
            env = gym.wrappers.FlattenObservation(env)
        return env

    return thunk


def is_atari(env_id: str) -> bool:
    """Whether env_id names an Atari game. ale-py registers those ids only once imported, and this file
    does not import it (pixels are ppo_atari.py's business), so gym.make alone says "not found"."""
    try:
        import ale_py
    except ImportError:
        return env_id.startswith("ALE/")
    gym.register_envs(ale_py)
    return env_id in gym.registry and str(gym.registry[env_id].entry_point).startswith("ale_py")


def load_checkpoint(path: str, device: torch.device):
    """Rebuild (Q-network, saved args dict) from a checkpoint written by --save-model.
    weights_only=True: loading someone else's file cannot run their code. The file is read onto the CPU,
    whatever device wrote it, and only the network moves to `device`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "args" not in ckpt:  # e.g. a state_dict saved by hand
        raise ValueError("it holds no saved args: it was not written by --save-model")
    saved = ckpt["args"]
    env = make_env(saved["env_id"], 0, False, "")()
    problem = check_spaces(env.observation_space, env.action_space)
    if problem:  # another script's checkpoint
        raise ValueError(f"it was trained on {saved['env_id']}: {problem}")
    q_network = QNetwork(env.observation_space.shape[0], int(env.action_space.n))
    try:  # where another script's checkpoint of an env this script also plays fails
        q_network.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError):
        raise ValueError(f"its weights are not dqn.py's network for {saved['env_id']}: "
                         "another script's checkpoint?") from None
    env.close()
    return q_network.to(device), saved


def evaluate(q_network: QNetwork, saved: dict, eval_episodes: int, run_name: str, capture_video: bool,
             device: torch.device, seed: int):
    """Episodic returns of a loaded checkpoint's greedy policy."""
    env = make_env(saved["env_id"], 0, capture_video, run_name)()
    returns = []
    obs, _ = env.reset(seed=seed)
    episode_return = 0.0
    while len(returns) < eval_episodes:
        with torch.no_grad():
            action = q_network(torch.as_tensor(obs[None], dtype=torch.float32, device=device)).argmax(1).item()
        obs, reward, terminated, truncated, _ = env.step(action + int(env.action_space.start))
        episode_return += float(reward)
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            obs, _ = env.reset()
    env.close()
    return returns


def save_state(path: Path, state: dict):
    """Write a run's state atomically: into a temporary file, then renamed over the last state, so that a run
    killed while writing leaves the previous state whole. It holds tensors, numbers, strings, tuples and bytes
    only, so torch.load(weights_only=True) reads it back and loading it cannot run code."""
    torch.save(state, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def plain(value):
    """value as the state file keeps it (an array as a tensor), or None for what it does not keep."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(value.copy())
    if isinstance(value, (bool, int, float, str, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
        return value
    return None


RESTORABLE = ("gymnasium.envs.classic_control", "gymnasium.envs.toy_text", "gymnasium.envs.mujoco")
"""The env families whose whole state env_state saves: plain numbers and arrays (classic control, toy text) or
MuJoCo's simulator state. Any other env (Box2D keeps its physics in C++ objects; a user's env may keep anything)
restarts when a run resumes."""


def restorable(env: gym.Env) -> bool:
    return type(env.unwrapped).__module__.startswith(RESTORABLE)


def env_state(env: gym.Env) -> dict:
    """What an env's next steps depend on: the numbers each of its layers keeps (a TimeLimit's elapsed steps,
    classic control's physics in `state`, the vector env's bookkeeping), its random generator, and for MuJoCo the
    simulator's whole integration state (positions, velocities, time, the solver's warm start). Videos restart."""
    layers, layer = [], env
    while layer is not None:
        keep = not isinstance(layer, gym.wrappers.RecordVideo)
        layers.append({k: plain(v) for k, v in vars(layer).items() if keep and plain(v) is not None})
        layer = layer.env if isinstance(layer, gym.Wrapper) else None
    state = {"layers": layers}
    base = env.unwrapped if isinstance(env, gym.Env) else None
    if base is not None:
        state["np_random"] = base.np_random.bit_generator.state
        if hasattr(base, "model") and hasattr(base, "data"):  # MuJoCo
            import mujoco

            full = np.empty(mujoco.mj_stateSize(base.model, mujoco.mjtState.mjSTATE_INTEGRATION))
            mujoco.mj_getState(base.model, base.data, full, mujoco.mjtState.mjSTATE_INTEGRATION)
            state["mujoco"] = torch.from_numpy(full)
    return state


def set_env_state(env: gym.Env, state: dict):
    """Put an env back where env_state found it."""
    layer = env
    for saved in state["layers"]:
        for name, value in saved.items():
            setattr(layer, name, value.numpy() if isinstance(value, torch.Tensor) else value)
        layer = layer.env if isinstance(layer, gym.Wrapper) else None
    if "np_random" in state:
        env.unwrapped.np_random.bit_generator.state = state["np_random"]
    if "mujoco" in state:
        import mujoco

        base = env.unwrapped
        mujoco.mj_setState(base.model, base.data, state["mujoco"].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)


def rng_state() -> dict:
    """Every random generator the loop draws from: Python's, NumPy's global one, torch's on the CPU and on CUDA (the
    state keeps exploration's and the replay buffer's own generators beside these)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict):
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# The flags a resumed run may take anew: they change what is written or watched, not the run's numbers (and a larger
# --total-timesteps extends it).
RESUME_MAY_CHANGE = ("total_timesteps", "checkpoint_every", "save_model", "eval_episodes", "capture_video", "track",
                     "wandb_project_name", "wandb_entity")


def load_state(path: str, given: Args) -> tuple[Args, dict]:
    """The arguments and state of the run to resume from its folder or state file, or ValueError with the one line
    for a missing, truncated or foreign state, or for a flag that would change the run (--total-timesteps may
    extend it)."""
    path = Path(path) / "state.pt" if Path(path).is_dir() else Path(path)
    if not path.is_file():
        raise ValueError(f"no run state at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, or not torch's format
        raise ValueError(f"cannot load run state {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("script") != "dqn.py":
        raise ValueError(f"{path} is not a dqn.py run state: another script's, or not written by --checkpoint-every")
    saved, default = Args(**state["args"]), Args()
    changed = {name: value for name, value in asdict(given).items()
               if name != "resume" and value != getattr(default, name)}
    for name, value in changed.items():
        if name not in RESUME_MAY_CHANGE and value != getattr(saved, name):
            raise ValueError(f"--{name.replace('_', '-')} {value} would change the run it resumes "
                             f"(it ran with {getattr(saved, name)}); only --total-timesteps may extend it")
    resumed = replace(saved, **{name: changed[name] for name in RESUME_MAY_CHANGE if name in changed}, resume=None)
    if -(-resumed.total_timesteps // resumed.num_envs) <= state["iteration"]:  # no iteration left
        raise ValueError(f"the run already reached step {state['global_step']}: a larger --total-timesteps extends it")
    return resumed, state


def fail(message: str):
    """A user's mistake: one line on stderr, exit status 2, nothing written."""
    print(f"dqn.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def gl_failure(e: Exception) -> str | None:
    """The one line for a MuJoCo env whose OpenGL backend cannot load, None for any other failure. MuJoCo loads
    the backend that MUJOCO_GL names when it is imported, i.e. inside the first gym.make of a MuJoCo env."""
    if any("gl_context" in frame.filename for frame in traceback.extract_tb(e.__traceback__)):
        return (f"MuJoCo cannot load its OpenGL backend MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                f"({type(e).__name__}: {e}); install that library, or set MUJOCO_GL=disable to run without video")
    return None


def main():
    """The command line: evaluate a checkpoint or train, each input checked before the first file is written."""
    args, state = tyro.cli(Args), None
    if args.resume is not None:
        try:
            args, state = load_state(args.resume, args)
        except ValueError as e:
            fail(str(e))
    if args.torch_threads is not None:
        torch.set_num_threads(max(args.torch_threads, 1))
    if args.capture_video and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo's offscreen GL backend when there is no display
    if state:
        problem = check_sizes(args)  # a new --total-timesteps
        if problem:
            fail(problem)
        train(args, state)
        return

    if args.eval_checkpoint is not None:
        device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        if not os.path.isfile(args.eval_checkpoint):
            fail(f"no checkpoint at {args.eval_checkpoint}")
        if args.eval_episodes <= 0:
            fail(f"--eval-episodes must be positive, got {args.eval_episodes}")
        run_name = f"{Path(args.eval_checkpoint).stem}-eval__{int(time.time())}"
        try:
            checkpoint = load_checkpoint(args.eval_checkpoint, device)
        except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError, ValueError) as e:
            fail(f"cannot load checkpoint {args.eval_checkpoint}: {str(e).splitlines()[0]}")
        except Exception as e:  # its env cannot be made on this machine
            fail(gl_failure(e) or f"cannot make the env of checkpoint {args.eval_checkpoint}: {e}")
        returns = evaluate(*checkpoint, args.eval_episodes, run_name, args.capture_video, device, args.seed)
        print(f"eval: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes")
        return
    try:
        probe = make_env(args.env_id, 0, False, "")()
    except Exception as e:  # a wrong id, a missing package, a GL library MuJoCo cannot load: one line each
        if is_atari(args.env_id):
            fail(f"{args.env_id} is an Atari game, played from pixels: use ppo_atari.py")
        fail(gl_failure(e) or f"cannot make env {args.env_id!r}: {e}")
    problem = check_spaces(probe.observation_space, probe.action_space) or check_sizes(args)
    if problem:
        fail(problem)
    buffer_size = max(args.buffer_size // args.num_envs, 1) * args.num_envs  # as train() rounds it
    buffer_bytes = ReplayBuffer.nbytes(buffer_size, probe.observation_space.shape)
    probe.close()
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if buffer_bytes > 0.8 * available:
        fail(f"a replay buffer of {buffer_size} transitions needs {buffer_bytes / 2**30:.1f} GiB, "
             f"more than the {available / 2**30:.1f} GiB of memory available")
    train(args)


if __name__ == "__main__":
    main()
