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
"""Deep Deterministic Policy Gradient (DDPG) for vector observations and continuous (Box) actions.

DDPG (Lillicrap et al. 2015, "Continuous control with deep reinforcement learning",
https://arxiv.org/abs/1509.02971) is DQN for continuous actions: the max over actions in DQN's target has no
closed form when actions are real vectors, so a deterministic actor mu(s) learns the action that maximizes
the critic Q(s, a) (Silver et al. 2014's deterministic policy gradient). Each env step:

  1. Act: mu(s) plus exploration noise, clipped to the action bounds. A deterministic policy explores only
     through the noise it is given: Gaussian noise with std `exploration_noise` times each dimension's
     half-range (default), or the paper's Ornstein-Uhlenbeck noise (--ou-noise), which is correlated in time.
     Before `learning_starts`, actions are drawn uniformly within the bounds.
  2. Store the transition (s, a, r, s', terminated) in a replay buffer of the last `buffer_size` transitions;
     a is the clipped action that was sent to the env.
  3. After `learning_starts`, one gradient step per env step, each on a minibatch sampled from the buffer:
     a. critic: regress Q(s, a) on the target
            y = r + gamma * (1 - terminated) * Q'(s', mu'(s')),
        where Q' and mu' are target copies of the critic and the actor (the paper's eq. 4-5);
     b. actor, every `policy_frequency`-th gradient step, against the critic just updated: ascend Q(s, mu(s))
        by the chain rule dQ/da * dmu/dtheta (the deterministic policy gradient, the paper's eq. 6);
     c. with the actor, move both target networks towards the online ones by Polyak averaging,
            theta' <- tau * theta + (1 - tau) * theta'  (the paper's "soft" target updates).
  4. Repeat until `total_timesteps` env steps (summed over envs) have been taken.

The actor's tanh output in (-1, 1) is mapped onto the env's bounds, each dimension by its own center and
half-range (asymmetric bounds included), so the same network serves Pendulum's [-2, 2] and Hopper's [-1, 1].

The defaults are CleanRL's ddpg_continuous_action.py, whose published MuJoCo results this file is compared
with. CleanRL's file follows the DDPG that Fujimoto et al. 2018 (TD3, https://arxiv.org/abs/1802.09477) re-tuned
as a baseline ("Our DDPG"; these are the defaults of OurDDPG.py in their code). In their Table 1 it scored well
above the original settings on HalfCheetah and Walker2d, and a little below them on Hopper and Ant. Where the
defaults differ from the paper:
  - one learning rate, 3e-4, for both networks (paper: 1e-4 actor, 1e-3 critic with L2 weight decay 1e-2);
  - 256-256 ReLU networks that take (s, a) at the critic's input, default initialization (paper: 400-300, a
    entering at the critic's second layer, final layers initialized in +-3e-3, batch normalization);
  - batch 256 and tau 0.005 (paper: 64 and 0.001);
  - Gaussian exploration noise with std 0.1 (paper: Ornstein-Uhlenbeck, theta 0.15, sigma 0.2, here behind
    --ou-noise): Fujimoto et al. found uncorrelated Gaussian noise works as well on MuJoCo;
  - 25k uniformly random steps before learning (the paper describes none);
  - the actor and the targets updated every 2nd gradient step, --policy-frequency 2 (TD3's delayed policy
    updates; --policy-frequency 1 is the paper's DDPG).

Episode ends on gymnasium 1.x: the buffer stores the *real* final observation of an episode as s' (the
vector envs reset a finished env within the same step, autoreset mode SAME_STEP, and hand over the final
observation in `infos["final_obs"]`), and a flag that is true only for termination. A time-limit truncation
therefore bootstraps from Q'(final observation, mu'(final observation)); a termination does not; and no stored
transition joins the last observation of one episode to the first of the next.

Usage:
    python ddpg_continuous.py                                   # Hopper-v4 with CleanRL's defaults
    python ddpg_continuous.py --env-id Pendulum-v1 --total-timesteps 20000 --learning-starts 1000
    python ddpg_continuous.py --env-id HalfCheetah-v4 --ou-noise --policy-frequency 1   # OU noise, actor each step
    python ddpg_continuous.py --save-model --capture-video --track
    python ddpg_continuous.py --eval-checkpoint runs/RUN/ddpg_continuous.pt --capture-video
    python ddpg_continuous.py --checkpoint-every 100000         # the run's whole state, now and then
    python ddpg_continuous.py --resume runs/RUN                 # continue a stopped run exactly
    python ddpg_continuous.py --help                            # every flag
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
    torch_threads: int | None = None
    """CPU threads for torch (None: torch's choice, OMP_NUM_THREADS if set, else one per core); the 256-wide
    layers' products split over free cores, but threads beyond them wait on one another: if cores are busy, use 1"""
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
    """episodes of the deterministic actor (no noise) when evaluating a checkpoint"""
    eval_checkpoint: str | None = None
    """path of a checkpoint to evaluate (and film, with --capture-video) instead of training"""
    checkpoint_every: int = 0
    """every this many env steps, write the run's whole state to runs/{run_name}/state.pt, replacing the last (0: off)"""
    resume: str | None = None
    """continue the run of this folder (or state.pt) from its last state, with its arguments (see --total-timesteps)"""

    # Algorithm arguments (CleanRL's ddpg_continuous_action.py defaults; where they differ from the paper: docstring)
    env_id: str = "Hopper-v4"
    """the id of the environment"""
    total_timesteps: int = 1_000_000
    """total env steps of the experiment, summed over envs; with --resume, a larger value extends the run (no schedule
    depends on it)"""
    learning_rate: float = 3e-4
    """the learning rate of both optimizers (paper: 1e-4 actor, 1e-3 critic; one rate is the TD3 authors' re-tuning)"""
    num_envs: int = 1
    """the number of parallel game environments (each iteration takes one step in each)"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size, in transitions (rounded down to a whole number of steps of all envs)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 0.005
    """the target networks' Polyak averaging rate (paper: 0.001; the TD3 authors' re-tuning moves the targets
    5 times faster)"""
    batch_size: int = 256
    """the batch size of sample from the replay memory (paper: 64; 256 is the TD3 authors' re-tuning)"""
    exploration_noise: float = 0.1
    """the std of the Gaussian exploration noise, in half-ranges of each action dimension (paper: OU noise;
    the TD3 authors found uncorrelated Gaussian noise works as well on MuJoCo)"""
    learning_starts: int = 25_000
    """env steps of uniformly random actions before the first gradient step (the paper describes none; the TD3
    authors' 25k: the first updates see varied actions, not those of an untrained actor)"""
    policy_frequency: int = 2
    """update the actor and the targets every this many gradient steps (paper: 1; CleanRL's 2 is TD3's delayed
    policy update: the actor follows a critic whose error has had steps to settle)"""
    ou_noise: bool = False
    """if toggled, explore with the paper's Ornstein-Uhlenbeck noise instead of Gaussian noise"""
    ou_theta: float = 0.15
    """the Ornstein-Uhlenbeck noise's mean-reversion rate per step (paper: 0.15)"""
    ou_sigma: float = 0.2
    """the Ornstein-Uhlenbeck noise's volatility, in units of the half-range (paper: 0.2)"""


# -------------------------------------------------------------------------------------------------- the networks
class Actor(nn.Module):
    """mu(s): a 256-256 ReLU MLP whose tanh output is mapped onto the action bounds, dimension by dimension:
    action = center + half_range * tanh(.), so tanh's -1 and 1 are the low and high bounds (up to float32
    rounding, e.g. -0.30000004 for a bound of -0.3: the loop clips what it sends). Layers called one by one,
    not through nn.Sequential: fewer module calls, each a fixed Python cost, on a forward pass run every step."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box):
        super().__init__()
        action_dim = action_space.shape[0]
        self.fc1, self.fc2, self.fc_mu = nn.Linear(obs_dim, 256), nn.Linear(256, 256), nn.Linear(256, action_dim)
        low, high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
        # Buffers, not parameters: they move with .to(device) and are saved, but are not trained.
        self.register_buffer("action_scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return torch.addcmul(self.action_bias, self.action_scale, torch.tanh(self.fc_mu(x)))


class QNetwork(nn.Module):
    """Q(s, a): a 256-256 ReLU MLP on the concatenated observation and action, one output."""

    def __init__(self, obs_dim: int, action_dim: int):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(obs_dim + action_dim, 256), nn.Linear(256, 256), nn.Linear(256, 1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(torch.cat([x, a], 1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x).squeeze(1)


# ------------------------------------------------------------------------------------------------------ the math
class OUNoise:
    """Ornstein-Uhlenbeck noise, one process per env and action dimension, started at 0 (the paper's choice).

    The process dx = -theta x dt + sigma dW reverts to 0 at rate theta, so consecutive actions are pushed the
    same way (exploration with momentum, meant for physical control). It is sampled exactly at dt = 1 step:
        x <- exp(-theta) x + sigma * sqrt((1 - exp(-2 theta)) / (2 theta)) * N(0, 1),
    whose stationary std is sigma / sqrt(2 theta) (0.37 for the paper's theta 0.15 and sigma 0.2)."""

    def __init__(self, shape: tuple, theta: float, sigma: float, rng: np.random.Generator):
        self.decay = np.exp(-theta)
        self.step_std = sigma * np.sqrt((1.0 - np.exp(-2.0 * theta)) / (2.0 * theta))
        self.state, self.rng = np.zeros(shape), rng

    def sample(self) -> np.ndarray:
        self.state = self.decay * self.state + self.step_std * self.rng.standard_normal(self.state.shape)
        return self.state

    def reset(self, envs: np.ndarray):
        """Restart the processes of the envs whose episode ended."""
        self.state[envs] = 0.0


class ReplayBuffer:
    """The last `size` transitions in preallocated arrays; the oldest are overwritten first.

    s' is stored beside s (rather than read from the next row) because with several envs and episode ends
    the next row is not the next state: an episode's last transition keeps its real final observation.
    Only `terminated` is stored: a truncated transition must still bootstrap. Each add() writes one step of
    all envs as a block of consecutive rows: `size` is a multiple of the number of envs, so a block never
    wraps around midway, and a slice copies it as one block per array instead of scattering rows by index."""

    ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminations")

    def __init__(self, size: int, obs_shape: tuple, action_dim: int, seed: int | np.random.SeedSequence):
        self.obs = np.zeros((size,) + obs_shape, np.float32)
        self.next_obs = np.zeros((size,) + obs_shape, np.float32)
        self.actions = np.zeros((size, action_dim), np.float32)
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
    def nbytes(size: int, obs_shape: tuple, action_dim: int) -> int:
        """Memory of a buffer of `size` transitions, known before allocating it (Hopper, 1M: 108 MB)."""
        return size * (2 * 4 * int(np.prod(obs_shape)) + 4 * action_dim + 4 + 4)  # all float32

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


def critic_target(rewards, terminations, next_q_target, gamma: float) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * Q'(s', mu'(s')); next_q_target holds Q'(s', mu'(s')) per row.
    A truncated transition is stored as not terminated, so it bootstraps like any other."""
    return rewards + gamma * (1.0 - terminations) * next_q_target


@torch.no_grad()
def polyak_update(target_params: list, params: list, tau: float):
    """target <- tau * online + (1 - tau) * target, all tensors in one fused call (lerp(target, online, tau) is
    exactly target + tau * (online - target)). No autograd: an in-place op fed by weights that require grad
    would make each target a graph node, chained to the previous one at every call, growing for the whole run."""
    torch._foreach_lerp_(target_params, params, tau)


class DDPG:
    """The actor, the critic, their target copies and optimizers, and one gradient step of the algorithm."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, learning_rate: float, device: torch.device):
        action_dim = action_space.shape[0]
        self.actor = Actor(obs_dim, action_space).to(device)
        self.qf = QNetwork(obs_dim, action_dim).to(device)
        self.actor_target = Actor(obs_dim, action_space).to(device)
        self.qf_target = QNetwork(obs_dim, action_dim).to(device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.qf_target.load_state_dict(self.qf.state_dict())
        # The targets are only ever moved by polyak_update, never by gradients.
        self.actor_target.requires_grad_(False)
        self.qf_target.requires_grad_(False)
        # fused: one kernel for the whole parameter update instead of a loop of small ops per tensor
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=learning_rate, fused=True)
        self.q_optimizer = torch.optim.Adam(self.qf.parameters(), lr=learning_rate, fused=True)
        self.online_params = [*self.actor.parameters(), *self.qf.parameters()]
        self.target_params = [*self.actor_target.parameters(), *self.qf_target.parameters()]

    NETWORKS_AND_OPTIMIZERS = ("actor", "qf", "actor_target", "qf_target", "actor_optimizer", "q_optimizer")

    def state_dict(self) -> dict:
        """The four networks and the two optimizers, for a run's state."""
        return {name: getattr(self, name).state_dict() for name in DDPG.NETWORKS_AND_OPTIMIZERS}

    def load_state_dict(self, state: dict):
        """Copy a state_dict() into the networks and optimizers in place (the parameter lists above stay theirs)."""
        for name in DDPG.NETWORKS_AND_OPTIMIZERS:
            getattr(self, name).load_state_dict(state[name])

    def update(self, obs, actions, rewards, next_obs, terminations, gamma: float, tau: float, update_actor: bool):
        """One gradient step on a minibatch: the critic, then (if update_actor) the actor against the updated
        critic and both targets. Returns (critic loss, Q(s, a), actor loss or None), as tensors."""
        with torch.no_grad():  # the target is a constant of the critic's regression: no graph for it
            target = critic_target(rewards, terminations, self.qf_target(next_obs, self.actor_target(next_obs)),
                                   gamma)
        q_values = self.qf(obs, actions)
        qf_loss = F.mse_loss(q_values, target)
        self.q_optimizer.zero_grad()
        qf_loss.backward()
        self.q_optimizer.step()
        if not update_actor:
            return qf_loss, q_values, None

        # The actor's loss needs gradients *through* the critic (dQ/da), not *for* its weights: with the
        # critic's parameters frozen, backward skips their weight gradients, half of its work in the critic.
        self.qf.requires_grad_(False)
        actor_loss = -self.qf(obs, self.actor(obs)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        self.qf.requires_grad_(True)
        polyak_update(self.target_params, self.online_params, tau)
        return qf_loss, q_values, actor_loss


# --------------------------------------------------------------------------------------------- the training loop
def train(args: Args, state: dict | None = None) -> tuple[Actor, Path]:
    """Train on args, or continue the run whose saved `state` is given, and return the actor and the run folder
    (TensorBoard log, checkpoint). main() checks a command line first; from a notebook or a sweep:
        actor, run = train(Args(env_id="Pendulum-v1", total_timesteps=20_000, learning_starts=1000))"""
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
    action_space, obs_shape = envs.single_action_space, envs.single_observation_space.shape
    action_dim, low, high = action_space.shape[0], action_space.low, action_space.high
    half_range = (high.astype(np.float64) - low) / 2.0  # noise is scaled per dimension, like the actor's output
    ou = OUNoise((args.num_envs, action_dim), args.ou_theta, args.ou_sigma, rng) if args.ou_noise else None

    ddpg = DDPG(obs_shape[0], action_space, args.learning_rate, device)
    buffer_size = max(args.buffer_size // args.num_envs, 1) * args.num_envs  # whole steps of all envs
    buffer_bytes = ReplayBuffer.nbytes(buffer_size, obs_shape, action_dim)
    print(f"replay buffer: {buffer_size} transitions, {buffer_bytes / 2**20:.1f} MiB")
    rb = ReplayBuffer(buffer_size, obs_shape, action_dim, replay_seed)

    start_time = time.time()
    # Episode statistics, summed here rather than by gymnasium's RecordEpisodeStatistics wrapper (a few array
    # operations instead of its per-step bookkeeping), and written to TensorBoard with the progress line rather
    # than as episodes end: the writer's thread wakes up for every scalar and takes the GIL.
    episode_returns, episode_lengths = np.zeros(args.num_envs), np.zeros(args.num_envs, np.int64)
    finished = []  # (global_step, return, length) of the episodes not yet written
    recent_returns = deque(maxlen=10)
    num_iterations = -(-args.total_timesteps // args.num_envs)
    print_every = max(1, num_iterations // 50)
    gradient_steps, actor_loss = 0, None
    obs, _ = envs.reset(seed=args.seed)
    first_iteration = 1
    if state:  # everything the next iteration reads, as the stopped run left it
        first_iteration, obs = state["iteration"] + 1, state["obs"].numpy()
        start_time -= state["elapsed"]
        episode_returns, episode_lengths = state["episode_returns"].numpy(), state["episode_lengths"].numpy()
        recent_returns.extend(state["recent_returns"])
        gradient_steps, actor_loss = state["gradient_steps"], state["actor_loss"]
        ddpg.load_state_dict(state["model"])
        rb.load_state_dict(state["replay_buffer"])
        rng.bit_generator.state = state["explore_rng"]
        if ou is not None:
            ou.state = state["ou_noise"].numpy()
        set_rng_state(state["rng"])
        if all(restorable(env) for env in envs.envs):
            for env, saved in zip([envs, *envs.envs], state["envs"]):
                set_env_state(env, saved)
        else:  # the envs restart, seeded from the saved generators; the episodes under way are dropped
            obs = envs.reset(seed=int(np.random.randint(2**31)))[0]
            episode_returns[:], episode_lengths[:] = 0.0, 0
            if ou is not None:
                ou.reset(np.arange(args.num_envs))

    for iteration in range(first_iteration, num_iterations + 1):
        global_step = iteration * args.num_envs

        # 1. Act: uniformly at random during the warm-up, then mu(s) plus noise, clipped to the bounds.
        if global_step <= args.learning_starts:
            actions = rng.uniform(low, high, (args.num_envs, action_dim))
        else:
            with torch.inference_mode():
                actions = ddpg.actor(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            noise = ou.sample() if ou is not None else rng.normal(0.0, args.exploration_noise, actions.shape)
            actions = actions + noise * half_range
        actions = np.clip(actions, low, high).astype(np.float32)
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)

        episode_returns += rewards
        episode_lengths += 1
        dones = np.flatnonzero(terminations | truncations)
        for i in dones:  # SAME_STEP: env i starts afresh next step
            finished.append((global_step, float(episode_returns[i]), int(episode_lengths[i])))
            recent_returns.append(float(episode_returns[i]))
            episode_returns[i], episode_lengths[i] = 0.0, 0
        if ou is not None and len(dones):
            ou.reset(dones)

        # 2. Store (s, a, r, s', terminated), a being the clipped action that was sent: truncations are stored
        #    as not terminated, so they bootstrap.
        rb.add(obs, real_next_obs(next_obs, infos), actions, rewards, terminations)
        obs = next_obs

        # 3. Learn: one gradient step per env step, so num_envs of them per iteration, after the warm-up.
        if global_step > args.learning_starts:
            for _ in range(args.num_envs):
                gradient_steps += 1
                update_actor = gradient_steps % args.policy_frequency == 0
                qf_loss, q_values, loss = ddpg.update(*rb.sample(args.batch_size, device), args.gamma, args.tau,
                                                      update_actor)
                actor_loss = loss if update_actor else actor_loss  # the latest, for the log
                if gradient_steps % 100 == 0:
                    writer.add_scalar("losses/qf_loss", qf_loss.item(), global_step)
                    writer.add_scalar("losses/qf_values", q_values.mean().item(), global_step)
                    if actor_loss is not None:
                        writer.add_scalar("losses/actor_loss", actor_loss.item(), global_step)

        if iteration % print_every == 0 or iteration == num_iterations:
            sps = int(global_step / (time.time() - start_time))
            writer.add_scalar("charts/SPS", sps, global_step)
            for end_step, episodic_return, episodic_length in finished:
                writer.add_scalar("charts/episodic_return", episodic_return, end_step)
                writer.add_scalar("charts/episodic_length", episodic_length, end_step)
            finished.clear()
            mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
            elapsed = time.time() - start_time
            remaining = elapsed * (num_iterations - iteration) / iteration
            print(f"step {global_step}/{args.total_timesteps} | SPS {sps} | return {mean_return} (last 10 episodes)"
                  f" | {elapsed:.0f}s elapsed, ~{remaining:.0f}s left", flush=True)
        if args.checkpoint_every and (global_step // args.checkpoint_every > (global_step - args.num_envs)
                                      // args.checkpoint_every or iteration == num_iterations):
            for end_step, episodic_return, episodic_length in finished:  # the state holds no unwritten episode
                writer.add_scalar("charts/episodic_return", episodic_return, end_step)
                writer.add_scalar("charts/episodic_length", episodic_length, end_step)
            finished.clear()
            writer.flush()  # the log reaches this state's step before the state exists
            save_state(Path("runs") / run_name / "state.pt", {
                "script": "ddpg_continuous.py", "args": asdict(args), "run_name": run_name,
                "wandb_id": wandb.run.id if args.track else None, "iteration": iteration, "global_step": global_step,
                "elapsed": time.time() - start_time, "obs": torch.from_numpy(obs),
                "episode_returns": torch.from_numpy(episode_returns), "episode_lengths": torch.from_numpy(episode_lengths),
                "recent_returns": list(recent_returns), "gradient_steps": gradient_steps,
                "actor_loss": actor_loss.detach() if actor_loss is not None else None,  # logged until the next one
                "model": ddpg.state_dict(), "replay_buffer": rb.state_dict(), "explore_rng": rng.bit_generator.state,
                "ou_noise": torch.from_numpy(ou.state) if ou is not None else None,
                "envs": [env_state(env) for env in [envs, *envs.envs]], "rng": rng_state()})

    envs.close()
    if args.save_model:
        model_path = f"runs/{run_name}/{args.exp_name}.pt"
        torch.save({"model": {"actor": ddpg.actor.state_dict(), "qf": ddpg.qf.state_dict()}, "args": asdict(args)},
                   model_path)
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
    return ddpg.actor, Path("runs") / run_name


# ------------------------------------------------- plumbing: input checks, envs, checkpoints, evaluation, errors
def check_spaces(obs_space: gym.Space, act_space: gym.Space) -> str | None:
    """Why ddpg_continuous.py cannot run on these spaces, or None if it can."""
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) >= 2:
        return f"image observations {obs_space.shape} need a convolutional network: use ppo_atari.py"
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        return f"ddpg_continuous.py needs a flat Box observation space, got {obs_space}"
    if isinstance(act_space, gym.spaces.Discrete):
        return f"ddpg_continuous.py needs a Box action space, got {act_space}: use dqn.py or ppo.py"
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        return f"ddpg_continuous.py needs a 1-D Box action space, got {act_space}"
    unbounded = np.flatnonzero(~(np.isfinite(act_space.low) & np.isfinite(act_space.high)))
    if len(unbounded):
        return (f"ddpg_continuous.py needs finite action bounds (its tanh actor spans them), but action "
                f"dimension(s) {unbounded.tolist()} of {act_space} are unbounded: use ppo.py")
    return None


def check_sizes(args: Args) -> str | None:
    """Why these sizes cannot work, or None if they can."""
    for name in ("total_timesteps", "num_envs", "buffer_size", "batch_size", "policy_frequency",
                 "eval_episodes", "torch_threads"):
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
    if args.exploration_noise < 0 or args.ou_sigma < 0:
        return f"--exploration-noise and --ou-sigma must not be negative, got {args.exploration_noise}, {args.ou_sigma}"
    if args.ou_theta <= 0:
        return f"--ou-theta must be positive, got {args.ou_theta}"
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
    """Rebuild (actor, saved args dict) from a checkpoint written by --save-model.
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
    obs_dim = env.observation_space.shape[0]
    actor, qf = Actor(obs_dim, env.action_space), QNetwork(obs_dim, env.action_space.shape[0])
    networks = ckpt.get("model", ckpt)  # files written before the "model" key held "actor" and "qf" at the top
    try:  # where another script's checkpoint of an env this script also plays fails
        actor.load_state_dict(networks["actor"])
        qf.load_state_dict(networks["qf"])  # acting needs no critic, but a checkpoint loads whole or not at all
    except (KeyError, RuntimeError):
        raise ValueError(f"its weights are not ddpg_continuous.py's networks for {saved['env_id']}: "
                         "another script's checkpoint?") from None
    env.close()
    return actor.to(device), saved


def evaluate(actor: Actor, saved: dict, eval_episodes: int, run_name: str, capture_video: bool,
             device: torch.device, seed: int):
    """Episodic returns of a loaded checkpoint's deterministic actor, without exploration noise."""
    env = make_env(saved["env_id"], 0, capture_video, run_name)()
    low, high = env.action_space.low, env.action_space.high
    returns = []
    obs, _ = env.reset(seed=seed)
    episode_return = 0.0
    while len(returns) < eval_episodes:
        with torch.no_grad():
            action = actor(torch.as_tensor(obs[None], dtype=torch.float32, device=device))[0].cpu().numpy()
        obs, reward, terminated, truncated, _ = env.step(np.clip(action, low, high))
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
    if not isinstance(state, dict) or state.get("script") != "ddpg_continuous.py":
        raise ValueError(f"{path} is not a ddpg_continuous.py run state: another script's, or not written by "
                         "--checkpoint-every")
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
    print(f"ddpg_continuous.py: error: {message}", file=sys.stderr)
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
    buffer_bytes = ReplayBuffer.nbytes(buffer_size, probe.observation_space.shape, probe.action_space.shape[0])
    probe.close()
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if buffer_bytes > 0.8 * available:
        fail(f"a replay buffer of {buffer_size} transitions needs {buffer_bytes / 2**30:.1f} GiB, "
             f"more than the {available / 2**30:.1f} GiB of memory available")
    train(args)


if __name__ == "__main__":
    main()
