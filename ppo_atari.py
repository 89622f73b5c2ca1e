# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "torch>=2.4",
#     "numpy>=1.26",
#     "gymnasium>=1.1,<2",
#     "ale-py>=0.10",
#     "opencv-python-headless>=4.8",
#     "tyro>=0.8",
#     "tensorboard>=2.15",
#     "wandb>=0.18",
#     "moviepy>=1.0",
# ]
# ///
"""Proximal Policy Optimization (PPO) from pixels: Atari games through the Arcade Learning Environment.

PPO (Schulman et al. 2017, https://arxiv.org/abs/1707.06347) is an on-policy actor-critic method. The
actor is a policy pi(a|s), a categorical over the game's joystick actions; the critic is a value function
V(s). Both read the screen through one shared convolutional trunk (the Nature-DQN network of Mnih et al.
2015). Each iteration:

  1. Roll out the current policy for `num_steps` steps in each of `num_envs` vectorized envs and store
     observations, actions, their log-probabilities, values and rewards.
  2. Estimate advantages with Generalized Advantage Estimation (Schulman et al. 2016,
     https://arxiv.org/abs/1506.02438, eq. 16): A_t = sum_l (gamma*lambda)^l delta_{t+l}, with the TD error
     delta_t = r_t + gamma * V(s_{t+1}) - V(s_t). Returns (the critic's targets) are A_t + V(s_t).
  3. For `update_epochs` epochs, shuffle the rollout into `num_minibatches` minibatches and take a gradient
     step on each with the loss  L = L_clip - c_ent * entropy + c_vf * L_value,  where the clipped
     surrogate objective (PPO paper, eq. 7) is
         L_clip = -E[min(rho_t * A_t, clip(rho_t, 1 - eps, 1 + eps) * A_t)],  rho_t = pi(a_t|s_t) / pi_old(a_t|s_t),
     so the new policy gains nothing by moving the probability ratio rho_t outside [1 - eps, 1 + eps].
  4. Repeat until `total_timesteps` env steps have been collected.

The implementation details follow Huang et al., "The 37 Implementation Details of Proximal Policy
Optimization" (ICLR blog track 2022), i.e. CleanRL's ppo_atari.py, whose defaults this file uses (those of
the PPO paper's Atari experiments, with 8 envs): orthogonal init, Adam eps 1e-5, learning-rate annealing,
advantage normalization, a clipped value loss, global gradient-norm clipping.

Atari preprocessing (Mnih et al. 2015; Machado et al. 2018, https://arxiv.org/abs/1709.06009), the steps
that published PPO results rely on, in the order they apply:
  a. up to 30 no-op actions at the start of a game, so that games do not all start alike;
  b. each action repeated for 4 frames (frame skip), the observation being the pixel-wise max of the last
     two (some games draw objects only every other frame);
  c. 84x84 grayscale frames;               (a-c: gymnasium's AtariPreprocessing)
  d. FIRE pressed at the start of a game and after each lost life, in games that wait for it (FireReset);
  e. a stack of the last 4 frames, so that the network can see motion (gymnasium's FrameStackObservation);
  f. a lost life ends the *learning* episode: that step is a termination (no bootstrap past it), but the
     game goes on, and the next observation continues the same game (in the training loop);
  g. rewards clipped to their sign, -1, 0 or +1, for learning only (in the training loop).
charts/episodic_return is the game's own score over a whole game, all lives, unclipped: the number that
published results report; charts/episodic_length, its length in agent steps of 4 frames (CleanRL's: frames).

Which env id: the `*NoFrameskip-v4` ids (e.g. BreakoutNoFrameskip-v4, the default) are a deterministic
emulator whose only randomness is the no-op starts: the protocol of DQN, of the PPO paper and of CleanRL's
published ppo_atari.py results, so compare those numbers with these ids. The `ALE/*-v5` ids follow Machado
et al.'s recommendations: "sticky actions" (with probability 0.25 the emulator repeats the previous action
instead of the new one, at every frame), which this file keeps; their scores are usually lower and are
compared with results reported on v5. ALE/*-v5 ids skip 4 frames themselves by default; this file makes
every ALE env with frameskip=1, so that frames are skipped once, by AtariPreprocessing. Every id ends a game
after 108,000 frames (30 minutes of play, 27,000 steps): a truncation, which bootstraps.

Episode ends on gymnasium 1.x: an episode that *terminated* (game over, or a lost life for learning) has
no future, so its last step does not bootstrap; an episode that was *truncated* by the time limit would
have gone on, so its last step bootstraps from V(final observation). The vector envs reset a finished env
within the same step (autoreset mode SAME_STEP) and hand over the real final observation in
`infos["final_obs"]`; the step's `next_obs` is already the next game's first observation, and no
transition crosses that boundary.

Usage:
    python ppo_atari.py                                       # BreakoutNoFrameskip-v4, 10M steps
    python ppo_atari.py --env-id PongNoFrameskip-v4
    python ppo_atari.py --env-id ALE/Breakout-v5 --save-model --capture-video --track
    python ppo_atari.py --eval-checkpoint runs/RUN/ppo_atari.pt --capture-video   # act (and film) with a checkpoint
    python ppo_atari.py --checkpoint-every 1000000            # the run's whole state, now and then
    python ppo_atari.py --resume runs/RUN                     # continue a stopped run exactly
    python ppo_atari.py --help                                # every flag
    torchrun --standalone --nproc-per-node 2 ppo_atari.py     # one agent trained by 2 processes (see below)

Data parallelism with torchrun (optional; the lines marked "torchrun" in train(), which a first reading
can skip). `torchrun --nproc-per-node N ppo_atari.py ...` starts N copies of this script, on one
machine or several (torchrun's --nnodes, --node-rank, --rdzv-endpoint). Each copy, a "rank", plays its own
`num_envs` envs (seeded apart) and collects its own rollout; at every minibatch step the ranks average their
gradients, so that all of them hold the same weights at all times and together take the step a single
process would take on the union of their minibatches (except that each normalizes the advantages of its own
minibatch). N processes with `--num-envs 8` thus learn like one process with 8N envs and the same number of
minibatches, up to N times faster where there are cores or GPUs for them. `--total-timesteps` counts the
steps of all ranks; rank 0 alone writes logs, videos and checkpoints. With --checkpoint-every, every rank writes
what is its own (rank 0 the model and optimizer with its envs, rank r > 0 its envs and generators in
state-rank{r}.pt), and `torchrun --nproc-per-node N ppo_atari.py --resume runs/RUN` continues with the same N.
"""

import os
import pickle
import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import tyro

gym.register_envs(ale_py)  # gymnasium 1.x finds the ALE ids only once ale-py registers them (ROMs included)


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
    """CPU threads for torch (None: torch's choice, OMP_NUM_THREADS if set, as torchrun sets it for 2+ processes, else
    one per core): the convolutions gain from free cores, and lose to threads waiting on busy ones: there, use 1"""
    track: bool = False
    """if toggled, the run is tracked with Weights & Biases (WANDB_MODE=offline works without network)"""
    wandb_project_name: str = "single-file-rl"
    """the Weights & Biases project name"""
    wandb_entity: str | None = None
    """the Weights & Biases entity (team)"""
    capture_video: bool = False
    """if toggled, record videos of env 0's games (the real screen, not the 84x84 input) under `videos/{run_name}`"""
    save_model: bool = False
    """if toggled, save a checkpoint to `runs/{run_name}/{exp_name}.pt` and evaluate it after training"""
    eval_episodes: int = 10
    """games of the deterministic policy when evaluating a checkpoint"""
    eval_checkpoint: str | None = None
    """path of a checkpoint to evaluate (and film, with --capture-video) instead of training"""
    checkpoint_every: int = 0
    """every this many env steps, write the run's whole state to runs/{run_name}/state.pt, replacing the last (0: off)"""
    resume: str | None = None
    """continue the run of this folder (or state.pt) from its last state, with its arguments (see --total-timesteps)"""
    async_envs: bool = False
    """if toggled, step the envs in subprocesses (gymnasium's AsyncVectorEnv): faster where the emulators get cores the
    network leaves idle (a GPU machine with cores to spare), a little slower where the update keeps every core busy"""
    dist_timeout: float = 300.0
    """torchrun only: seconds a process waits for the others (to join, or at a gradient exchange) before it
    stops with an error, so that a dead or stuck process or a wrong rendezvous fails instead of hanging"""

    # Algorithm arguments (CleanRL's ppo_atari.py defaults)
    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of the environment: an ALE game, `*NoFrameskip-v4` or `ALE/*-v5`"""
    total_timesteps: int = 10_000_000
    """total env steps of the experiment, summed over envs (a step is 4 frames, the unit of charts/episodic_length);
    with --resume, a larger value extends the run, and the learning rate's annealing stretches over the new total"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments (per process under torchrun)"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """toggle learning rate annealing (linearly to 0 over training)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches per epoch; must divide num_envs * num_steps"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """toggles advantages normalization (per minibatch)"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient epsilon"""
    clip_vloss: bool = True
    """toggles whether or not to use a clipped loss for the value function, as per the paper"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the value function loss"""
    max_grad_norm: float = 0.5
    """the maximum norm for the global gradient clipping"""
    target_kl: float | None = None
    """stop an update's epochs early once the approximate KL exceeds this (off by default)"""


# -------------------------------------------------------------------------------------------------- the networks
def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    """Orthogonal weights with gain `std`, zero bias: the init of the original PPO code."""
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """The Nature-DQN trunk (three convolutions, then 512 units, ReLU) shared by a policy head and a value head.
    Pixels arrive as uint8 and are scaled to [0, 1] here, so that the rollout stores bytes. The small final-layer
    gains make the initial policy near-uniform (actor, 0.01) and the initial values near zero (critic, 1.0)."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(4, 32, 8, stride=4)), nn.ReLU(),   # (4, 84, 84) -> (32, 20, 20)
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),  # -> (64, 9, 9)
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),  # -> (64, 7, 7)
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(512, num_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)
        # channels_last: the layout in which oneDNN (CPU) and cuDNN run convolutions fastest; the math is the same.
        self.to(memory_format=torch.channels_last)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's 512 features of a batch of uint8 frame stacks (N, 4, 84, 84)."""
        # The input goes into the weights' layout here, once: left in NCHW, the first convolution converts it
        # itself, in the forward pass and again in the backward pass. The bytes are reordered before scaling:
        # a quarter of the memory to move as floats would be.
        return self.network(x.contiguous(memory_format=torch.channels_last) / 255.0)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.hidden(x)).squeeze(-1)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        """Sample an action (or score the given one): (action, log pi(action|x), entropy, V(x)).

        The categorical distribution's formulas are written out: for a handful of observations, building a
        torch.distributions object costs more than this math.
        """
        hidden = self.hidden(x)
        log_probs = torch.log_softmax(self.actor(hidden), dim=-1)
        if action is None:
            action = torch.multinomial(log_probs.exp(), 1).squeeze(-1)
        logprob = log_probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return action, logprob, entropy, self.critic(hidden).squeeze(-1)

    def act_deterministic(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable action, for evaluation."""
        return self.actor(self.hidden(x)).argmax(-1)


# ------------------------------------------------------------------------------------------------------ the math
def learning_signals(reward, terminated, truncated, lives, prev_lives):
    """What learning sees of one step of the vector envs: (rewards, terminations, dones), float32 arrays.

    f. A lost life ends the learning episode as a termination: its last step does not bootstrap, so the
       agent learns that losing a life loses the future. The env itself goes on (the game is not reset).
       A life lost in the step that ends the game is just the game's end.
    g. Rewards are clipped to their sign, so that one set of hyperparameters suits games whose scores
       differ by orders of magnitude (Mnih et al. 2015). The score logged stays the game's own.
    dones (terminated, truncated, or a lost life) stop GAE's sum at the learning episode's end.
    """
    life_lost = (lives < prev_lives) & ~(terminated | truncated)
    terminations = terminated | life_lost
    return (np.sign(reward).astype(np.float32), terminations.astype(np.float32),
            (terminations | truncated).astype(np.float32))


def compute_gae(rewards, values, next_values, terminations, dones, gamma: float, gae_lambda: float):
    """Generalized Advantage Estimation over a rollout; every argument is a (num_steps, num_envs) array.

    next_values[t] is V of the observation step t really led to: for an episode that ended at t, its
    final observation, not the next episode's first. terminations[t] (1.0 if the episode terminated at
    t) removes the bootstrap term, since a terminal state has no future; a time-limit truncation keeps it.
    dones[t] (terminated or truncated) stops the sum so that no TD error leaks across episodes:
        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}
    Returns (advantages, returns = advantages + values), the returns being the critic's targets.
    (NumPy, not torch: this loop runs step by step, and NumPy's per-operation cost is far lower.)
    """
    deltas = rewards + gamma * (1.0 - terminations) * next_values - values
    advantages = np.zeros_like(rewards)
    last_gae = np.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        last_gae = deltas[t] + gamma * gae_lambda * (1.0 - dones[t]) * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


def clipped_policy_loss(new_logprob, old_logprob, advantages, clip_coef: float) -> torch.Tensor:
    """The negated clipped surrogate objective (PPO paper, eq. 7), to be minimized."""
    ratio = (new_logprob - old_logprob).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(new_values, old_values, returns, clip_coef: float, clip: bool) -> torch.Tensor:
    """0.5 * squared error to the returns. Clipped (as in the original PPO code): the pessimistic max of the
    errors of the new value and of the value kept within clip_coef of the rollout's value."""
    unclipped = (new_values - returns) ** 2
    if not clip:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + (new_values - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (clipped_values - returns) ** 2).mean()


def explained_variance(predictions: np.ndarray, targets: np.ndarray) -> float:
    """1 - Var[targets - predictions] / Var[targets]: 1 is a perfect critic, 0 no better than a constant."""
    var = np.var(targets)
    return float("nan") if var == 0 else float(1 - np.var(targets - predictions) / var)


# --------------------------------------------------------------------------------------------- the training loop
def train(args: Args, state: dict | None = None) -> tuple[Agent, Path]:
    """Train on args, or continue the run whose saved `state` is given (under torchrun, this process's part), and
    return the agent and the run folder (TensorBoard log, checkpoint); under torchrun every process calls it, and
    rank 0 alone logs. main() checks a command line first; from a notebook or a sweep:
        agent, run = train(Args(env_id="PongNoFrameskip-v4", seed=2))"""
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    distributed, rank, local_rank, world_size = torchrun_place()
    batch_size = args.num_envs * args.num_steps  # this process's rollout
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // (batch_size * world_size)
    # Seeds: under torchrun, rank r's env i gets --seed + r * num_envs + i, its action samples --seed + r * num_envs
    seed = args.seed + rank * args.num_envs

    # ---- torchrun: data parallelism across processes (skip on a first reading) ------------------------------
    # Each process: its own GPU if there are GPUs (NCCL between GPUs, gloo between CPUs), rank 0's weights (broadcast
    # below), gradients averaged at each minibatch step (average_gradients), an error after --dist-timeout of waiting.
    if distributed:
        if device.type == "cuda":
            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
            if local_processes > torch.cuda.device_count():
                fail(f"torchrun started {local_processes} processes on a machine with {torch.cuda.device_count()} "
                     f"GPU(s): one process per GPU (--nproc-per-node), or --no-cuda to train on the CPU")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=args.dist_timeout))
        if rank == 0:
            print(f"torchrun: {world_size} processes x {args.num_envs} envs (--num-envs is per process); global batch "
                  f"{world_size} x {args.num_envs} x {args.num_steps} = {world_size * batch_size} steps; {backend} on "
                  f"{device.type}")
    # ----------------------------------------------------------------------------------------------------------

    run_name = f"{args.env_id.replace('/', '-').replace(':', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_name = state["run_name"] if state else run_name
    if distributed:  # torchrun: the run folder is rank 0's, where every process writes its state
        names = [run_name]
        dist.broadcast_object_list(names, src=0)
        run_name = names[0]
    if rank == 0:  # under torchrun, rank 0 alone logs, films and saves the model
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
            writer.add_text("hyperparameters",
                            "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))

    # Seeding: same seed, same numbers on the CPU.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    # Env setup. SAME_STEP autoreset: a finished env is reset inside the step that ended it, and its real
    # final observation comes back in infos["final_obs"] (see the module docstring).
    vector_env = gym.vector.AsyncVectorEnv if args.async_envs else gym.vector.SyncVectorEnv
    envs = vector_env(
        [make_env(args.env_id, i, args.capture_video and rank == 0, run_name) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    envs.action_space.seed(seed)
    obs_shape = envs.single_observation_space.shape

    agent = Agent(int(envs.single_action_space.n)).to(device)
    # fused: one kernel for the whole parameter update instead of a loop of small ops per tensor
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    if distributed:  # torchrun: every process starts from rank 0's weights
        for param in agent.parameters():
            dist.broadcast(param.data, src=0)

    # Rollout storage, allocated once. It lives in NumPy on the CPU: the env speaks NumPy, and writing a row
    # of a NumPy array costs a fraction of a tensor's. The update moves the whole batch to the device once.
    # Observations stay uint8 (the network scales them): a quarter of the memory of float32.
    obs = np.zeros((args.num_steps, args.num_envs) + obs_shape, np.uint8)
    actions = np.zeros((args.num_steps, args.num_envs), np.int64)
    logprobs = np.zeros((args.num_steps, args.num_envs), np.float32)
    rewards = np.zeros_like(logprobs)
    values = np.zeros_like(logprobs)
    final_values = np.zeros_like(logprobs)  # V(final obs) where an episode was truncated
    terminations = np.zeros_like(logprobs)
    dones = np.zeros_like(logprobs)
    rollout_bytes = sum(a.nbytes for a in (obs, actions, logprobs, rewards, values, final_values, terminations, dones))
    if rank == 0:
        print(f"rollout storage: {args.num_steps} steps x {args.num_envs} envs, observations {obs_shape} uint8, "
              f"{rollout_bytes / 2**20:.1f} MiB{' per process' if distributed else ''}")

    global_step = 0
    start_time = time.time()
    # Episode statistics of the games' own scores (all lives, unclipped) and lengths (agent steps), summed here
    # rather than by gymnasium's RecordEpisodeStatistics wrapper (a few array operations instead of its per-step
    # bookkeeping), and written to TensorBoard with the progress line rather than as episodes end: the writer's
    # thread wakes up for every scalar and takes the GIL.
    episode_returns, episode_lengths = np.zeros(args.num_envs), np.zeros(args.num_envs, np.int64)
    finished = []  # (global_step, return, length) of the games not yet written
    recent_returns = deque(maxlen=10)
    print_every = max(1, num_iterations // 50)
    next_obs, infos = envs.reset(seed=seed)
    lives = infos["lives"]
    first_iteration = 1
    if state:  # everything the next iteration reads, as the stopped run left it (this process's envs and generators)
        first_iteration, global_step, next_obs = state["iteration"] + 1, state["global_step"], state["next_obs"].numpy()
        start_time -= state["elapsed"]
        lives = state["lives"].numpy()
        episode_returns, episode_lengths = state["episode_returns"].numpy(), state["episode_lengths"].numpy()
        recent_returns.extend(state["recent_returns"])
        agent.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], device)
        if state["envs"] is not None:
            for env, saved in zip(envs.envs, state["envs"]):
                set_env_state(env, saved)
        else:  # envs in subprocesses: they restart, seeded from the saved generators; the games under way are dropped
            next_obs, infos = envs.reset(seed=int(np.random.randint(2**31)))
            lives, episode_returns[:], episode_lengths[:] = infos["lives"], 0.0, 0

    for iteration in range(first_iteration, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        # 1. Roll out the current policy.
        for step in range(args.num_steps):
            global_step += args.num_envs * world_size  # the steps of all processes
            obs[step] = next_obs
            with torch.inference_mode():
                action, logprob, _, value = agent.get_action_and_value(torch.as_tensor(obs[step], device=device))
            action = action.cpu().numpy()
            actions[step], logprobs[step], values[step] = action, logprob.cpu().numpy(), value.cpu().numpy()

            next_obs, reward, terminated, truncated, infos = envs.step(action)
            # f, g: lost lives end learning episodes; rewards clipped to their sign. (A finished game's infos
            # are the next game's: a full set of lives.)
            rewards[step], terminations[step], dones[step] = learning_signals(reward, terminated, truncated,
                                                                              infos["lives"], lives)
            lives = infos["lives"]
            if truncated.any():
                # The game was cut, not finished: bootstrap from its real final observation.
                final_obs = np.stack(infos["final_obs"][truncated])
                with torch.inference_mode():
                    final_value = agent.get_value(torch.as_tensor(final_obs, device=device))
                final_values[step, truncated] = final_value.cpu().numpy()

            episode_returns += reward  # the game's own score
            episode_lengths += 1
            for i in np.flatnonzero(terminated | truncated):  # game over; SAME_STEP: env i starts afresh
                finished.append((global_step, float(episode_returns[i]), int(episode_lengths[i])))
                episode_returns[i], episode_lengths[i] = 0.0, 0

        # 2. Advantages. After an episode's end the next value is V(final obs) (0 if it terminated:
        # compute_gae masks it); otherwise it is the value of the next stored observation.
        with torch.inference_mode():
            last_value = agent.get_value(torch.as_tensor(next_obs, device=device)).cpu().numpy()
        next_values = np.where(dones.astype(bool), final_values, np.concatenate([values[1:], last_value[None]]))
        advantages, returns = compute_gae(rewards, values, next_values, terminations, dones,
                                          args.gamma, args.gae_lambda)
        final_values[:] = 0.0

        # 3. Optimize the policy and value network on shuffled minibatches.
        b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values = (
            torch.as_tensor(a.reshape((batch_size,) + a.shape[2:]), device=device)
            for a in (obs, actions, logprobs, advantages, returns, values))
        clipfracs = []
        for epoch in range(args.update_epochs):
            b_inds = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch_size):
                mb = b_inds[start : start + minibatch_size]
                # index_select copies whole frame stacks at once, where b_obs[mb] would gather them byte by byte
                _, new_logprob, entropy, new_value = agent.get_action_and_value(b_obs.index_select(0, mb),
                                                                                 b_actions[mb])
                logratio = new_logprob - b_logprobs[mb]
                with torch.no_grad():
                    # KL(old || new) estimators, http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((logratio.exp() - 1) - logratio).mean()
                    clipfracs.append(((logratio.exp() - 1.0).abs() > args.clip_coef).float().mean())

                mb_advantages = b_advantages[mb]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss = clipped_policy_loss(new_logprob, b_logprobs[mb], mb_advantages, args.clip_coef)
                v_loss = value_loss(new_value, b_values[mb], b_returns[mb], args.clip_coef, args.clip_vloss)
                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss

                optimizer.zero_grad()
                loss.backward()
                if distributed:  # torchrun: every process now holds the gradient averaged over all processes
                    average_gradients(agent, world_size)
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
                optimizer.step()

            if distributed and args.target_kl is not None:  # torchrun: all processes stop together, on the mean KL
                dist.all_reduce(approx_kl)
                approx_kl /= world_size
            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        report = iteration % print_every == 0 or iteration == num_iterations
        steps_before = global_step - batch_size * world_size  # the step this iteration started from
        checkpoint = args.checkpoint_every and (global_step // args.checkpoint_every > steps_before // args.checkpoint_every
                                                or iteration == num_iterations)
        if distributed and (report or checkpoint):  # torchrun: rank 0 collects the games every process finished
            gathered = [None] * world_size if rank == 0 else None
            dist.gather_object(finished, gathered, dst=0)
            finished = (sorted((game for games in gathered for game in games), key=lambda game: game[0])
                        if rank == 0 else [])
        if rank == 0:
            # The losses are rank 0's own (under torchrun; approx_kl, with --target-kl, is the mean over processes);
            # the steps, the SPS and the games are all processes'.
            sps = int(global_step / (time.time() - start_time))
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
            writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
            writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
            writer.add_scalar("losses/old_approx_kl", old_approx_kl.item(), global_step)
            writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
            writer.add_scalar("losses/clipfrac", torch.stack(clipfracs).mean().item(), global_step)
            writer.add_scalar("losses/explained_variance", explained_variance(values, returns), global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
            if report or checkpoint:  # the games, at each progress line and before each state (it holds none unwritten)
                for end_step, episodic_return, episodic_length in finished:
                    writer.add_scalar("charts/episodic_return", episodic_return, end_step)
                    writer.add_scalar("charts/episodic_length", episodic_length, end_step)
                    recent_returns.append(episodic_return)
                finished.clear()
            if report:
                mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
                elapsed = time.time() - start_time
                remaining = elapsed * (num_iterations - iteration) / iteration
                print(f"step {global_step}/{args.total_timesteps} | SPS {sps} | return {mean_return} (last 10 episodes)"
                      f" | {elapsed:.0f}s elapsed, ~{remaining:.0f}s left", flush=True)
        if checkpoint:  # every process writes its own part; rank 0's holds the model, the optimizer and the counters
            if rank == 0:
                writer.flush()  # the log reaches this state's step before the state exists
            save_state(Path("runs") / run_name, rank, distributed, {
                "script": "ppo_atari.py", "rank": rank, "world_size": world_size, "iteration": iteration,
                "global_step": global_step, "next_obs": torch.from_numpy(next_obs), "lives": torch.from_numpy(lives),
                "episode_returns": torch.from_numpy(episode_returns), "episode_lengths": torch.from_numpy(episode_lengths),
                "envs": None if args.async_envs else [env_state(env) for env in envs.envs], "rng": rng_state(device),
                **({"args": asdict(args), "run_name": run_name, "wandb_id": wandb.run.id if args.track else None,
                    "elapsed": time.time() - start_time, "recent_returns": list(recent_returns),
                    "model": agent.state_dict(), "optimizer": optimizer.state_dict()} if rank == 0 else {})})

    envs.close()
    if distributed:  # torchrun: no exchange after training (rank 0 saves and evaluates alone)
        dist.destroy_process_group()
    if rank == 0 and args.save_model:
        model_path = f"runs/{run_name}/{args.exp_name}.pt"
        torch.save({"model": agent.state_dict(), "args": asdict(args)}, model_path)
        print(f"model saved to {model_path}")
        # Evaluate what was written, not the object in memory: this also proves the checkpoint round-trips.
        episodic_returns = evaluate(*load_checkpoint(model_path, device), args.eval_episodes, f"{run_name}-eval",
                                    args.capture_video, device, args.seed)
        for idx, episodic_return in enumerate(episodic_returns):
            writer.add_scalar("eval/episodic_return", episodic_return, idx)
        print(f"eval: mean return {np.mean(episodic_returns):.2f} over {len(episodic_returns)} episodes")
    if rank == 0:
        writer.close()
        if args.track:
            wandb.finish()
    return agent, Path("runs") / run_name


# ------------------------------------------------- plumbing: input checks, envs, checkpoints, evaluation, errors
def check_env(env: gym.Env, env_id: str) -> str | None:
    """Why ppo_atari.py cannot run on this env, or None if it can (the env: spaces alone cannot tell an ALE game)."""
    if not isinstance(env.unwrapped, ale_py.AtariEnv):
        return (f"{env_id} is not an Atari game: ppo_atari.py plays ALE games from pixels (e.g. "
                f"BreakoutNoFrameskip-v4, ALE/Pong-v5); for vector observations use ppo.py")
    first = env.unwrapped.get_action_meanings()[0]
    if first != "NOOP":  # else AtariPreprocessing raises when train() makes the envs, the run folder already written
        return f"{env_id}'s action 0 is {first}, not NOOP: ppo_atari.py starts each game with up to 30 NOOPs"
    return None


def check_sizes(args: Args, world_size: int = 1) -> str | None:
    """Why these sizes cannot work, or None if they can; under torchrun world_size processes each collect a rollout."""
    for name in ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs",
                 "eval_episodes", "torch_threads"):
        value = getattr(args, name)
        if value is not None and value <= 0:  # None: --torch-threads left to torch
            return f"--{name.replace('_', '-')} must be positive, got {value}"
    if args.learning_rate <= 0:
        return f"--learning-rate must be positive, got {args.learning_rate}"
    if args.checkpoint_every < 0:
        return f"--checkpoint-every must not be negative, got {args.checkpoint_every}"
    for name in ("gamma", "gae_lambda"):
        if not 0 <= getattr(args, name) <= 1:
            return f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}"
    batch_size = args.num_envs * args.num_steps
    if batch_size % args.num_minibatches:
        return (f"--num-minibatches {args.num_minibatches} does not divide the batch of "
                f"num_envs * num_steps = {batch_size} transitions")
    if args.total_timesteps < batch_size * world_size:
        processes = f" ({world_size} processes x {batch_size})" if world_size > 1 else ""
        return (f"--total-timesteps {args.total_timesteps} is smaller than one rollout of "
                f"{batch_size * world_size} steps{processes}")
    if args.dist_timeout <= 0:
        return f"--dist-timeout must be positive, got {args.dist_timeout}"
    return None


class FireReset(gym.Wrapper):
    """Press FIRE (then action 2, as OpenAI baselines did for the published results) when a game starts and
    after each lost life. Breakout, for one, serves the ball only on FIRE: without this, a policy that has
    not yet learned to press it watches an empty screen until the time limit. The reward of the presses that
    follow a lost life is added to that step's reward, so that the logged score misses nothing."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0

    def press_fire(self):
        reward = 0.0
        for action in (1, 2):
            obs, r, terminated, truncated, info = self.env.step(action)
            reward += r
            if terminated or truncated:
                break
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.press_fire()
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        self.lives = info["lives"]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info["lives"] < self.lives and not (terminated or truncated):
            obs, fire_reward, terminated, truncated, info = self.press_fire()
            reward += fire_reward
        self.lives = info["lives"]
        return obs, reward, terminated, truncated, info


FRAME_SKIP = 4


def make_env(env_id: str, idx: int, capture_video: bool, run_name: str):
    def thunk():
        # frameskip=1: the emulator renders every frame and AtariPreprocessing skips them (ALE/*-v5 ids would
        # otherwise skip 4 themselves, 16 in all). Sticky actions stay as the id sets them. obs_type="grayscale":
        # AtariPreprocessing reads the screen itself, so the env's own per-frame copy of it is waste; in gray it
        # is a third the size of RGB. Videos still film render()'s RGB screen.
        env = gym.make(env_id, frameskip=1, obs_type="grayscale",
                       render_mode="rgb_array" if capture_video and idx == 0 else None)
        # a-c. Up to 30 no-ops on reset; frame skip 4 with a max over the last two frames; 84x84 grayscale.
        # terminal_on_life_loss stays off: the env would then be *reset* after each life (a new game); the
        # training loop ends learning episodes at a lost life instead, and the game goes on.
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=FRAME_SKIP, screen_size=84,
                                              terminal_on_life_loss=False, grayscale_obs=True)
        if capture_video and idx == 0:
            # Above the preprocessing, RecordVideo films the frames the agent acts on in full color and size
            # (render() is the real screen), at the game's speed: 60 frames a second, every 4th kept.
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}", fps=60 // FRAME_SKIP, disable_logger=True)
        # d. FIRE where the game needs it to start.
        if "FIRE" in env.unwrapped.get_action_meanings():
            env = FireReset(env)
        # e. The last 4 frames, (4, 84, 84) uint8; at a reset the stack is filled with the first frame.
        env = gym.wrappers.FrameStackObservation(env, 4)
        return env

    return thunk


def load_checkpoint(path: str, device: torch.device):
    """Rebuild (agent, saved args dict) from a checkpoint written by --save-model.
    weights_only=True: loading someone else's file cannot run their code. The file is read onto the CPU,
    whatever device wrote it, and only the network moves to `device`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "args" not in ckpt:  # e.g. a state_dict saved by hand
        raise ValueError("it holds no saved args: it was not written by --save-model")
    saved = ckpt["args"]
    env = gym.make(saved["env_id"])
    env.close()  # only its spaces are needed
    if check_env(env, saved["env_id"]):  # another script's checkpoint
        raise ValueError(f"it was trained on {saved['env_id']}, not an Atari game")
    agent = Agent(int(env.action_space.n))
    agent.load_state_dict(ckpt["model"])
    return agent.to(device), saved


def evaluate(agent: Agent, saved: dict, eval_episodes: int, run_name: str, capture_video: bool,
             device: torch.device, seed: int):
    """Scores of whole games (all lives, unclipped) of a loaded checkpoint's deterministic policy."""
    env = make_env(saved["env_id"], 0, capture_video, run_name)()
    returns = []
    obs, _ = env.reset(seed=seed)
    episode_return = 0.0
    while len(returns) < eval_episodes:
        with torch.no_grad():
            action = agent.act_deterministic(torch.as_tensor(obs[None], device=device))[0].item()
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += float(reward)
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            obs, _ = env.reset()
    env.close()
    return returns


def save_state(folder: Path, rank: int, distributed: bool, state: dict):
    """Write this process's part of a run's state atomically: into a temporary file, then renamed over the last one,
    so that a run killed while writing leaves the previous state whole. Under torchrun rank r > 0 writes
    state-rank{r}.pt (keeping the one before as state-rank{r}.prev.pt) and rank 0 renames state.pt last: whenever the
    run is killed, state.pt has the parts of its own iteration beside it. The parts hold tensors, numbers, strings,
    tuples and bytes only, so torch.load(weights_only=True) reads them back and loading them cannot run code."""
    path = folder / ("state.pt" if rank == 0 else f"state-rank{rank}.pt")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, path.with_suffix(".tmp"))
    if distributed:
        dist.barrier()  # every part written
        if rank > 0:
            if path.exists():
                os.replace(path, path.with_suffix(".prev.pt"))
            os.replace(path.with_suffix(".tmp"), path)
        dist.barrier()  # every part but rank 0's in place
    if rank == 0:
        os.replace(path.with_suffix(".tmp"), path)


def env_state(env: gym.Env) -> dict:
    """What a game's next steps depend on, wrapper by wrapper: the frame stack, FireReset's lives,
    AtariPreprocessing's last two frames (a game that ends within a frame skip maxes over them) and lives, the env's
    generator (the no-op starts), and the emulator's whole state with its own generator (ALE's cloneState with
    include_rng: memory, registers, frame counters, the sticky actions' draws), as bytes. Videos restart. Not saved,
    because ALE keeps it outside its state: the action that sticky actions (ALE/*-v5) repeat, which restarts as NOOP,
    so a resumed v5 game may differ from its first frame on (a *NoFrameskip-v4 game, with no sticky actions, cannot)."""
    state, layer = {}, env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.FrameStackObservation):
            state["frames"] = torch.from_numpy(np.stack(layer.obs_queue))
        elif isinstance(layer, FireReset):
            state["fire_lives"] = layer.lives
        elif isinstance(layer, gym.wrappers.AtariPreprocessing):
            state["max_frames"], state["lives"] = torch.from_numpy(np.stack(layer.obs_buffer)), layer.lives
            state["game_over"] = layer.game_over
        layer = layer.env
    state["np_random"] = env.unwrapped.np_random.bit_generator.state
    state["ale"] = env.unwrapped.ale.cloneState(include_rng=True).serialize()
    return state


def set_env_state(env: gym.Env, state: dict):
    """Put a game back where env_state found it."""
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.FrameStackObservation):
            layer.obs_queue.extend(frame.numpy() for frame in state["frames"])  # the deque keeps the last 4
        elif isinstance(layer, FireReset):
            layer.lives = state["fire_lives"]
        elif isinstance(layer, gym.wrappers.AtariPreprocessing):
            layer.obs_buffer = [frame.numpy() for frame in state["max_frames"]]
            layer.lives, layer.game_over = state["lives"], state["game_over"]
        layer = layer.env
    env.unwrapped.np_random.bit_generator.state = state["np_random"]
    env.unwrapped.ale.restoreState(ale_py.ALEState(state["ale"]))


def rng_state(device: torch.device) -> dict:
    """Every random generator the loop draws from: Python's, NumPy's global one, torch's on the CPU and on this
    process's GPU (under torchrun each process has its own)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: dict, device: torch.device):
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# The flags a resumed run may take anew: they change what is written or watched, not the run's numbers (and a larger
# --total-timesteps extends it).
RESUME_MAY_CHANGE = ("total_timesteps", "checkpoint_every", "save_model", "eval_episodes", "capture_video", "track",
                     "wandb_project_name", "wandb_entity", "dist_timeout")


def load_state(path: str, given: Args, rank: int, world_size: int) -> tuple[Args, dict]:
    """The arguments and state of the run to resume from its folder or state file (under torchrun, this process's
    part merged in), or ValueError with the one line for a missing, truncated or foreign state, for another number
    of processes, or for a flag that would change the run (--total-timesteps may extend it). Every process reads
    every part, so that all of them find the same mistake."""
    path = Path(path) / "state.pt" if Path(path).is_dir() else Path(path)
    state = read_part(path, 0)
    if state["world_size"] != world_size:
        n = state["world_size"]
        launch = f"torchrun --nproc-per-node {n} ppo_atari.py" if n > 1 else "python ppo_atari.py"
        raise ValueError(f"the run ran in {n} process{'es' if n > 1 else ''}, not {world_size}: resume it with the "
                         f"same number, {launch} --resume ...")
    parts = [state]
    for r in range(1, world_size):  # the part of state.pt's iteration: the last, or the one before
        candidates = [path.with_name(f"state-rank{r}{suffix}") for suffix in (".pt", ".prev.pt")]
        found = [part for part in (read_part(c, r) for c in candidates if c.is_file())
                 if part["iteration"] == state["iteration"]]
        if not found:
            raise ValueError(f"no state of process {r} at iteration {state['iteration']} in {path.parent}")
        parts.append(found[0])
    saved, default = Args(**state["args"]), Args()
    changed = {name: value for name, value in asdict(given).items()
               if name != "resume" and value != getattr(default, name)}
    for name, value in changed.items():
        if name not in RESUME_MAY_CHANGE and value != getattr(saved, name):
            raise ValueError(f"--{name.replace('_', '-')} {value} would change the run it resumes "
                             f"(it ran with {getattr(saved, name)}); only --total-timesteps may extend it")
    resumed = replace(saved, **{name: changed[name] for name in RESUME_MAY_CHANGE if name in changed}, resume=None)
    if resumed.total_timesteps // (resumed.num_envs * resumed.num_steps * world_size) <= state["iteration"]:
        raise ValueError(f"the run already reached step {state['global_step']}: a larger --total-timesteps extends it")
    return resumed, {**state, **parts[rank]}


def read_part(path: Path, rank: int) -> dict:
    """One process's part of a run state, or ValueError with the one line."""
    if not path.is_file():
        raise ValueError(f"no run state at {path}")
    try:
        part = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, or not torch's format
        raise ValueError(f"cannot load run state {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(part, dict) or part.get("script") != "ppo_atari.py" or part.get("rank") != rank:
        raise ValueError(f"{path} is not a ppo_atari.py run state: another script's, or not written by "
                         f"--checkpoint-every")
    return part


def torchrun_place() -> tuple[bool, int, int, int]:
    """torchrun: (distributed, rank, local rank, world size) from torchrun's variables; a plain run is rank 0 of 1."""
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
    distributed = all(name in os.environ for name in names)
    return (distributed, *(int(os.environ[name]) for name in names)) if distributed else (False, 0, 0, 1)


def average_gradients(agent: nn.Module, world_size: int):
    """torchrun: replace every process's gradients by their mean over all processes, sent flattened into one tensor: one
    message per minibatch step instead of one per parameter. (DDP would do the same from hooks, overlapping the exchange
    with the backward pass; it syncs only through the wrapped module's forward(), which this agent does not use, and on
    a 1.7M-parameter network the overlap buys little. The plain all_reduce keeps the update readable.)"""
    grads = [p.grad for p in agent.parameters()]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)  # the sum over processes (gloo has no average)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def fail(message: str):
    """A user's mistake: one line on stderr, exit status 2, nothing written. (Under torchrun every process
    finds the same mistake; the first on each machine says it.)"""
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        print(f"ppo_atari.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def main():
    """The command line: evaluate a checkpoint or train, each input checked before the first file is written."""
    args, state = tyro.cli(Args), None
    _, rank, _, world_size = torchrun_place()  # torchrun: which of how many processes this is
    if args.resume is not None:
        try:
            args, state = load_state(args.resume, args, rank, world_size)
        except ValueError as e:
            fail(str(e))
    if args.torch_threads is not None:
        torch.set_num_threads(max(args.torch_threads, 1))
    if state:
        problem = check_sizes(args, world_size)  # a new --total-timesteps
        if problem:
            fail(problem)
        train(args, state)
        return

    if args.eval_checkpoint is not None:
        device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        if world_size > 1:
            fail("--eval-checkpoint runs in one process: python ppo_atari.py --eval-checkpoint ...")
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
            fail(f"cannot make the env of checkpoint {args.eval_checkpoint}: {e}")
        returns = evaluate(*checkpoint, args.eval_episodes, run_name, args.capture_video, device, args.seed)
        print(f"eval: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes")
        return
    try:
        probe = gym.make(args.env_id)
    except Exception as e:  # a wrong id, a missing package: one line each
        fail(f"cannot make env {args.env_id!r}: {e}")
    problem = check_env(probe, args.env_id) or check_sizes(args, world_size)
    if problem:
        fail(problem)
    probe.close()
    train(args)


if __name__ == "__main__":
    main()
