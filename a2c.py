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
"""Advantage Actor-Critic (A2C) for vector observations, discrete or continuous actions.

A2C is the synchronous variant of A3C (Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement
Learning", https://arxiv.org/abs/1602.01783): instead of asynchronous workers each pushing gradients, N
parallel envs step together and their experience makes one batch. It is an on-policy actor-critic method.
The actor is a policy pi(a|s) (a categorical over discrete actions, or a Gaussian with mean mu(s) and a
state-independent std sigma for continuous ones); the critic is a value function V(s). Each iteration:

  1. Roll out the current policy for `num_steps` (n, 5 by default) steps in each of `num_envs` vectorized
     envs and store observations, actions, values and rewards.
  2. Estimate advantages with n-step returns bootstrapped from V of the last observation (A3C paper,
     Algorithm S3). They come out of the same function as Generalized Advantage Estimation (Schulman et al.
     2016, https://arxiv.org/abs/1506.02438, eq. 16), A_t = sum_l (gamma*lambda)^l delta_{t+l} with the TD
     error delta_t = r_t + gamma * V(s_{t+1}) - V(s_t); with `--gae-lambda 1.0` (the default) the sum
     telescopes to the plain n-step advantage of the paper:
         A_t = r_t + gamma r_{t+1} + ... + gamma^{n-t-1} r_{n-1} + gamma^{n-t} V(s_n) - V(s_t),
     every step bootstrapping from the observation after the rollout's last step (or after its episode's
     end). Returns (the critic's targets) are A_t + V(s_t).
  3. Take ONE gradient step on the whole batch with the loss  L = L_pg - c_ent * entropy + c_vf * L_value,
     where the policy-gradient loss is  L_pg = -E[log pi(a_t|s_t) * A_t]  (the advantage is a constant: no
     gradient flows through it) and L_value = E[(V(s_t) - R_t)^2]. The data is then thrown away: a rollout
     is used once, by the policy that collected it, so no importance ratio or clipping is needed (that is
     what PPO adds to reuse a rollout for several epochs).
  4. Repeat until `total_timesteps` env steps have been collected.

The defaults are stable-baselines3's A2C (which follows OpenAI Baselines' and the paper's): RMSprop as in the
paper (alpha 0.99; eps 1e-5 as SB3), learning rate 7e-4, value coefficient 0.5, no entropy bonus, no advantage
normalization, global gradient-norm clipping at 0.5, orthogonal init, separate 64-64 tanh networks. Adam is
behind `--optimizer adam`, learning-rate annealing behind `--anneal-lr`. Hyperparameters left unset on the
command line come from a preset for the env's action space (see PRESETS), which follow rl-baselines3-zoo's
A2C hyperparameters: its CartPole-v1 entry for discrete actions, its MuJoCo (-v4) entries for continuous
ones (with observation normalization and reward scaling, Engstrom et al. 2020,
https://arxiv.org/abs/2005.12729), but with 8 envs where those have one.

Episode ends on gymnasium 1.x: an episode that *terminated* (the pole fell) has no future, so its last
step does not bootstrap; an episode that was *truncated* by a time limit would have gone on, so its last
step bootstraps from V(final observation). The vector envs reset a finished env within the same step
(autoreset mode SAME_STEP) and hand over the real final observation in `infos["final_obs"]`; the step's
`next_obs` is already the next episode's first observation, and no transition crosses that boundary.

Usage:
    python a2c.py                                   # CartPole-v1, discrete preset: solves it
    python a2c.py --env-id Hopper-v4                # MuJoCo, continuous preset
    python a2c.py --env-id Hopper-v4 --save-model --capture-video --track
    python a2c.py --eval-checkpoint runs/RUN/a2c.pt --capture-video   # act (and film) with a checkpoint
    python a2c.py --env-id Hopper-v4 --checkpoint-every 100000        # the run's whole state, now and then
    python a2c.py --resume runs/RUN                                   # continue a stopped run exactly
    python a2c.py --help                            # every flag
"""

import math
import os
import pickle
import random
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
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
    """episodes of the deterministic policy when evaluating a checkpoint"""
    eval_checkpoint: str | None = None
    """path of a checkpoint to evaluate (and film, with --capture-video) instead of training"""
    checkpoint_every: int = 0
    """every this many env steps, write the run's whole state to runs/{run_name}/state.pt, replacing the last (0: off)"""
    resume: str | None = None
    """continue the run of this folder (or state.pt) from its last state, with its arguments (see --total-timesteps)"""

    # Algorithm arguments. `None` means: take the value from PRESETS for the env's action space.
    env_id: str = "CartPole-v1"
    """the id of the environment"""
    total_timesteps: int | None = None
    """total env steps of the experiment, summed over envs (preset: 500k discrete, 1M continuous); with --resume, a
    larger value extends the run, and the learning rate's annealing (--anneal-lr) stretches over the new total from
    there"""
    learning_rate: float = 7e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 5
    """the number of steps to run in each environment per policy rollout (the n of the n-step returns)"""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """RMSprop as in the A3C paper (alpha 0.99; eps 1e-5 as stable-baselines3), or Adam (eps 1e-5)"""
    anneal_lr: bool = False
    """toggle learning rate annealing (linearly to 0 over training)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 1.0
    """the lambda for the general advantage estimation (1.0: the plain n-step advantage)"""
    norm_adv: bool = False
    """toggles advantages normalization (per batch; not in the original A2C)"""
    ent_coef: float = 0.0
    """coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the value function loss"""
    max_grad_norm: float = 0.5
    """the maximum norm for the global gradient clipping"""
    action_mapping: Literal["normalized", "clip"] = "normalized"
    """continuous actions: the policy acts in [-1, 1] rescaled onto the env's bounds (normalized), or in the env's
    own units, clipped to its bounds (clip, as stable-baselines3)"""
    norm_obs: bool | None = None
    """normalize observations by a running mean and std (preset: off discrete, on continuous)"""
    norm_reward: bool | None = None
    """scale rewards by the running std of the discounted return (preset: off discrete, on continuous)"""
    obs_clip: float = 10.0
    """normalized observations are clipped to [-obs_clip, obs_clip]"""
    reward_clip: float = 10.0
    """scaled rewards are clipped to [-reward_clip, reward_clip]"""


PRESETS = {
    # rl-baselines3-zoo's A2C CartPole-v1 entry: stable-baselines3's A2C defaults (Args' defaults here: 8 envs,
    # 5 steps, lr 7e-4, RMSprop); it solves CartPole-v1 and learns Acrobot-v1.
    "discrete": dict(total_timesteps=500_000, norm_obs=False, norm_reward=False),
    # rl-baselines3-zoo's A2C MuJoCo entries (Hopper-v4, HalfCheetah-v4, ...): the same defaults with
    # `normalize: true` (observation normalization and reward scaling), 1M steps. One change: 8 envs (Args'
    # default) where the zoo has 1: with one env, a gradient step every 5 env steps costs more than the steps.
    "continuous": dict(total_timesteps=1_000_000, norm_obs=True, norm_reward=True),
}


# -------------------------------------------------------------------------------------------------- the networks
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain `std`, zero bias: the init of OpenAI Baselines' A2C and of SB3."""
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Separate actor and critic MLPs (64-64, tanh). The small final-layer gains make the initial policy
    near-uniform (actor, 0.01) and the initial values near zero (critic, 1.0)."""

    def __init__(self, obs_dim: int, action_space: gym.Space):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        act_dim = action_space.shape[0] if self.continuous else int(action_space.n)
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, act_dim), std=0.01),
        )
        if self.continuous:
            # State-independent log-std: sigma is learned, but does not depend on s.
            self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def sample_action_and_value(self, x: torch.Tensor):
        """Acting in the rollout: an action drawn from pi(.|x), and V(x). Unlike PPO, A2C keeps nothing else
        of the acting policy: its one update per rollout recomputes log pi(a|s), with gradients."""
        out = self.actor(x)
        if self.continuous:  # Gaussian N(mu = out, sigma)
            action = out + self.actor_logstd.exp() * torch.randn_like(out)
        else:  # Gumbel-max trick: argmax(logits + Gumbel(0, 1) noise) is a draw from softmax(logits). For a few
            # rows, these elementwise ops on the logits cost less than a softmax and torch.multinomial's call.
            action = (out - torch.log(-torch.log(torch.rand_like(out)))).argmax(-1)
        return action, self.get_value(x)

    def evaluate_actions(self, x: torch.Tensor, action: torch.Tensor):
        """(log pi(action|x), entropy of pi(.|x), V(x)) for the update.

        The two distributions' formulas are written out: for a handful of observations, building
        torch.distributions objects costs more than this math.
        """
        out = self.actor(x)
        if self.continuous:  # Gaussian N(mu = out, sigma) with independent dimensions: sums over them
            log_std = self.actor_logstd.expand_as(out)
            logprob = (-0.5 * ((action - out) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1)
        else:  # categorical over the logits
            log_probs = torch.log_softmax(out, dim=-1)
            logprob = log_probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
        return logprob, entropy, self.get_value(x)

    def act_deterministic(self, x: torch.Tensor) -> torch.Tensor:
        """The mean action (continuous) or the most probable one (discrete), for evaluation."""
        out = self.actor(x)
        return out if self.continuous else out.argmax(-1)


# ------------------------------------------------------------------------------------------------------ the math
def action_to_env(space: gym.Space, mapping: str = "normalized"):
    """Return the map from policy actions to env actions.

    The Gaussian policy acts in a normalized space where [-1, 1] spans the env's bounds: the same
    initial std then explores every Box alike, whatever its scale. Actions are rescaled and clipped only
    on their way to the env; training keeps the sampled action, whose log-probability the policy knows.
    A dimension bounded on both sides maps [-1, 1] onto [low, high]; any other passes unscaled. Then every
    finite bound clips on its own (low=0, high=inf clips at 0), as gymnasium's ClipAction does. Discrete
    actions are indices 0..n-1 for the policy and start..start+n-1 for a Discrete(n, start) env (start is
    usually 0). mapping="clip" skips the rescaling: the policy acts in the env's units, clipped to its bounds.
    """
    if isinstance(space, gym.spaces.Discrete):
        return lambda action: action + space.start
    if mapping == "clip":
        return lambda action: np.clip(action, space.low, space.high)
    finite = np.isfinite(space.low) & np.isfinite(space.high)
    low, high = np.where(finite, space.low, -1.0), np.where(finite, space.high, 1.0)  # not both finite: identity
    center, half_range = (high + low) / 2.0, (high - low) / 2.0
    return lambda action: np.clip(center + half_range * action, space.low, space.high)


class RunningMeanStd:
    """Running mean and variance of a stream of batches (Chan et al.'s parallel update, as in SB3)."""

    def __init__(self, shape=()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray):
        batch_mean, batch_var, batch_count = x.mean(0), x.var(0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total


class ObsNormalizer:
    """(obs - running mean) / running std, clipped. Its statistics are part of the agent: a checkpoint
    without them would feed the network inputs on a different scale than it was trained on."""

    def __init__(self, shape, clip: float, enabled: bool):
        self.rms, self.clip, self.enabled = RunningMeanStd(shape), clip, enabled

    def __call__(self, obs: np.ndarray, update: bool = True) -> np.ndarray:
        if not self.enabled:
            return obs
        if update:
            self.rms.update(obs)
        return np.clip((obs - self.rms.mean) / np.sqrt(self.rms.var + 1e-8), -self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"mean": torch.from_numpy(self.rms.mean), "var": torch.from_numpy(self.rms.var),
                "count": torch.tensor(self.rms.count, dtype=torch.float64)}

    def load_state_dict(self, state: dict):
        self.rms.mean, self.rms.var = state["mean"].numpy(), state["var"].numpy()
        self.rms.count = state["count"].item()


class RewardScaler:
    """Divide rewards by the running std of the discounted return (not of the reward itself), then clip.
    This keeps the critic's targets near unit scale whatever the env's reward scale (Engstrom et al. 2020)."""

    def __init__(self, num_envs: int, gamma: float, clip: float, enabled: bool):
        self.returns, self.rms = np.zeros(num_envs), RunningMeanStd()
        self.gamma, self.clip, self.enabled = gamma, clip, enabled

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return reward
        self.returns = self.returns * self.gamma + reward
        self.rms.update(self.returns)
        self.returns[done] = 0.0
        return np.clip(reward / np.sqrt(self.rms.var + 1e-8), -self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"returns": torch.from_numpy(self.returns), "mean": torch.from_numpy(np.asarray(self.rms.mean)),
                "var": torch.from_numpy(np.asarray(self.rms.var)), "count": self.rms.count}

    def load_state_dict(self, state: dict):
        self.returns, self.rms.count = state["returns"].numpy(), state["count"]
        self.rms.mean, self.rms.var = state["mean"].numpy()[()], state["var"].numpy()[()]


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


def policy_gradient_loss(logprob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-E[log pi(a_t|s_t) * A_t], to be minimized: its gradient is the policy gradient with the critic as
    baseline (REINFORCE with a baseline; A3C paper, Section 4), raising the log-probability of actions that
    did better than the critic expected. The advantages are constants (computed from the rollout)."""
    return -(logprob * advantages).mean()


def mean_squared_error(new_values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """The value loss: the mean squared error to the n-step returns, as stable-baselines3's A2C. Unlike ppo.py's
    value_loss it has no factor 0.5: --vf-coef 0.5 puts it back, as in OpenAI Baselines."""
    return ((new_values - returns) ** 2).mean()


def explained_variance(predictions: np.ndarray, targets: np.ndarray) -> float:
    """1 - Var[targets - predictions] / Var[targets]: 1 is a perfect critic, 0 no better than a constant."""
    var = np.var(targets)
    return float("nan") if var == 0 else float(1 - np.var(targets - predictions) / var)


# --------------------------------------------------------------------------------------------- the training loop
def train(args: Args, state: dict | None = None) -> tuple[Agent, ObsNormalizer, Path]:
    """Train on args (presets resolved), or continue the run whose saved `state` is given, and return the agent, its
    observation normalizer and the run folder (TensorBoard log, checkpoint). main() checks a command line first:
        agent, obs_norm, run = train(resolve_presets(Args(env_id="Hopper-v4", seed=2), continuous=True))"""
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size

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

    writer = SummaryWriter(f"runs/{run_name}", purge_step=state["global_step"] + 1 if state else None)
    if not state:
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))

    # Seeding: same seed, same numbers on the CPU.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    # Env setup. SAME_STEP autoreset: a finished env is reset inside the step that ended it, and its real
    # final observation comes back in infos["final_obs"] (see the module docstring).
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, i, args.capture_video, run_name) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    envs.action_space.seed(args.seed)
    obs_shape, action_shape = envs.single_observation_space.shape, envs.single_action_space.shape
    to_env = action_to_env(envs.single_action_space, args.action_mapping)
    obs_norm = ObsNormalizer(obs_shape, args.obs_clip, args.norm_obs)
    reward_scaler = RewardScaler(args.num_envs, args.gamma, args.reward_clip, args.norm_reward)

    agent = Agent(obs_shape[0], envs.single_action_space).to(device)
    # RMSprop (eps 1e-5 as SB3, not torch's 1e-8) has no fused kernel: foreach batches all parameter tensors' updates.
    if args.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(agent.parameters(), lr=args.learning_rate, alpha=0.99, eps=1e-5, foreach=True)
    else:  # fused: one kernel for the whole parameter update instead of a loop of small ops per tensor
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)

    # Rollout storage, allocated once. It lives in NumPy on the CPU: the env speaks NumPy, and writing a row
    # of a NumPy array costs a fraction of a tensor's. The update moves the whole batch to the device once.
    obs = np.zeros((args.num_steps, args.num_envs) + obs_shape, np.float32)
    actions = np.zeros((args.num_steps, args.num_envs) + action_shape, np.float32)
    rewards = np.zeros((args.num_steps, args.num_envs), np.float32)
    values = np.zeros_like(rewards)
    final_values = np.zeros_like(rewards)  # V(final obs) where an episode was truncated
    terminations = np.zeros_like(rewards)
    dones = np.zeros_like(rewards)

    global_step = 0
    start_time = time.time()
    # Episode statistics of the env's own (unscaled) rewards, summed here rather than by gymnasium's
    # RecordEpisodeStatistics wrapper (a few array operations instead of its per-step bookkeeping), and written
    # to TensorBoard with the progress line rather than as episodes end: the writer's thread wakes up for
    # every scalar and takes the GIL.
    episode_returns, episode_lengths = np.zeros(args.num_envs), np.zeros(args.num_envs, np.int64)
    finished = []  # (global_step, return, length) of the episodes not yet written
    recent_returns = deque(maxlen=10)
    print_every = max(1, num_iterations // 50)
    # An iteration is only num_envs * num_steps env steps (40 by default): the losses go to TensorBoard every
    # log_every iterations, as SB3's A2C logs every 100 updates, and not every iteration (see the note above).
    log_every = 100
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = obs_norm(next_obs)
    first_iteration = 1
    if state:  # everything the next iteration reads, as the stopped run left it
        first_iteration, global_step, next_obs = state["iteration"] + 1, state["global_step"], state["next_obs"].numpy()
        start_time -= state["elapsed"]
        episode_returns, episode_lengths = state["episode_returns"].numpy(), state["episode_lengths"].numpy()
        recent_returns.extend(state["recent_returns"])
        agent.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        obs_norm.load_state_dict(state["obs_rms"])
        reward_scaler.load_state_dict(state["reward_scaler"])
        set_rng_state(state["rng"])
        if all(restorable(env) for env in envs.envs):
            for env, saved in zip([envs, *envs.envs], state["envs"]):
                set_env_state(env, saved)
        else:  # the envs restart, seeded from the saved generators; the episodes under way are dropped
            next_obs = obs_norm(envs.reset(seed=int(np.random.randint(2**31)))[0])
            episode_returns[:], episode_lengths[:], reward_scaler.returns[:] = 0.0, 0, 0.0

    for iteration in range(first_iteration, num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        # 1. Roll out the current policy.
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            with torch.inference_mode():
                action, value = agent.sample_action_and_value(torch.as_tensor(obs[step], device=device))
            action = action.cpu().numpy()
            actions[step], values[step] = action, value.cpu().numpy()

            raw_obs, reward, terminated, truncated, infos = envs.step(to_env(action))
            done = terminated | truncated
            next_obs = obs_norm(raw_obs)
            rewards[step], terminations[step], dones[step] = reward_scaler(reward, done), terminated, done
            if truncated.any():
                # The episode was cut, not finished: bootstrap from its real final observation (normalized
                # with the current statistics, which it must not update: it is not a state the agent acts in).
                final_obs = obs_norm(np.stack(infos["final_obs"][truncated]), update=False)
                with torch.inference_mode():
                    final_value = agent.get_value(torch.as_tensor(final_obs, dtype=torch.float32, device=device))
                final_values[step, truncated] = final_value.cpu().numpy()

            episode_returns += reward
            episode_lengths += 1
            for i in np.flatnonzero(done):  # SAME_STEP: env i starts afresh next step
                finished.append((global_step, float(episode_returns[i]), int(episode_lengths[i])))
                recent_returns.append(float(episode_returns[i]))
                episode_returns[i], episode_lengths[i] = 0.0, 0

        # 2. Advantages. After an episode's end the next value is V(final obs) (0 if it terminated:
        # compute_gae masks it); otherwise it is the value of the next stored observation.
        with torch.inference_mode():
            last_value = agent.get_value(torch.as_tensor(next_obs, dtype=torch.float32, device=device)).cpu().numpy()
        next_values = np.where(dones.astype(bool), final_values, np.concatenate([values[1:], last_value[None]]))
        advantages, returns = compute_gae(rewards, values, next_values, terminations, dones,
                                          args.gamma, args.gae_lambda)
        final_values[:] = 0.0

        # 3. One gradient step on the whole rollout, then thrown away: the next rollout comes from the updated policy.
        b_obs, b_actions, b_advantages, b_returns = (
            torch.as_tensor(a.reshape((batch_size,) + a.shape[2:]), device=device)
            for a in (obs, actions, advantages, returns))
        new_logprob, entropy, new_value = agent.evaluate_actions(b_obs, b_actions)
        if args.norm_adv:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
        pg_loss = policy_gradient_loss(new_logprob, b_advantages)
        v_loss = mean_squared_error(new_value, b_returns)
        entropy_loss = entropy.mean()
        loss = pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss

        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
        optimizer.step()

        sps = int(global_step / (time.time() - start_time))
        if iteration % log_every == 0 or iteration == num_iterations:
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
            writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
            writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
            writer.add_scalar("losses/explained_variance", explained_variance(values, returns), global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
        if iteration % print_every == 0 or iteration == num_iterations:
            for end_step, episodic_return, episodic_length in finished:
                writer.add_scalar("charts/episodic_return", episodic_return, end_step)
                writer.add_scalar("charts/episodic_length", episodic_length, end_step)
            finished.clear()
            mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
            elapsed = time.time() - start_time
            remaining = elapsed * (num_iterations - iteration) / iteration
            print(f"step {global_step}/{args.total_timesteps} | SPS {sps} | return {mean_return} (last 10 episodes)"
                  f" | {elapsed:.0f}s elapsed, ~{remaining:.0f}s left", flush=True)
        if args.checkpoint_every and (global_step // args.checkpoint_every > (global_step - batch_size)
                                      // args.checkpoint_every or iteration == num_iterations):
            for end_step, episodic_return, episodic_length in finished:  # the state holds no unwritten episode
                writer.add_scalar("charts/episodic_return", episodic_return, end_step)
                writer.add_scalar("charts/episodic_length", episodic_length, end_step)
            finished.clear()
            writer.flush()  # the log reaches this state's step before the state exists
            save_state(Path("runs") / run_name / "state.pt", {
                "script": "a2c.py", "args": asdict(args), "run_name": run_name,
                "wandb_id": wandb.run.id if args.track else None, "iteration": iteration, "global_step": global_step,
                "elapsed": time.time() - start_time, "next_obs": torch.from_numpy(next_obs),
                "episode_returns": torch.from_numpy(episode_returns), "episode_lengths": torch.from_numpy(episode_lengths),
                "recent_returns": list(recent_returns), "model": agent.state_dict(), "optimizer": optimizer.state_dict(),
                "obs_rms": obs_norm.state_dict(), "reward_scaler": reward_scaler.state_dict(),
                "envs": [env_state(env) for env in [envs, *envs.envs]], "rng": rng_state()})

    envs.close()
    if args.save_model:
        model_path = f"runs/{run_name}/{args.exp_name}.pt"
        torch.save({"model": agent.state_dict(), "obs_rms": obs_norm.state_dict(), "args": asdict(args)}, model_path)
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
    return agent, obs_norm, Path("runs") / run_name


# ------------------------------------------------- plumbing: input checks, envs, checkpoints, evaluation, errors
def resolve_presets(args: Args, continuous: bool) -> Args:
    """Fill every field left as None with the preset for the action space."""
    preset = PRESETS["continuous" if continuous else "discrete"]
    return replace(args, **{k: v for k, v in preset.items() if getattr(args, k) is None})


def check_spaces(obs_space: gym.Space, act_space: gym.Space) -> str | None:
    """Why a2c.py cannot run on these spaces, or None if it can."""
    if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) >= 2:
        return f"image observations {obs_space.shape} need a convolutional network: use ppo_atari.py"
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        return f"a2c.py needs a flat Box observation space, got {obs_space}"
    if isinstance(act_space, gym.spaces.Discrete):
        return None
    if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        return None
    return f"a2c.py handles Discrete and 1-D Box action spaces, got {act_space}"


def check_sizes(args: Args) -> str | None:
    """Why these (preset-resolved) sizes cannot work, or None if they can."""
    for name in ("total_timesteps", "num_envs", "num_steps", "eval_episodes", "torch_threads"):
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
    if args.total_timesteps < batch_size:
        return f"--total-timesteps {args.total_timesteps} is smaller than one rollout of {batch_size} steps"
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
    """Rebuild (agent, obs normalizer, saved args dict) from a checkpoint written by --save-model.
    weights_only=True: loading someone else's file cannot run their code. The file is read onto the CPU,
    whatever device wrote it: the statistics become NumPy arrays, and only the network moves to `device`."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "args" not in ckpt:  # e.g. a state_dict saved by hand
        raise ValueError("it holds no saved args: it was not written by --save-model")
    saved = ckpt["args"]
    env = make_env(saved["env_id"], 0, False, "")()
    problem = check_spaces(env.observation_space, env.action_space)
    if problem:  # another script's checkpoint
        raise ValueError(f"it was trained on {saved['env_id']}: {problem}")
    agent = Agent(env.observation_space.shape[0], env.action_space)
    try:  # where another script's checkpoint of an env this script also plays fails
        agent.load_state_dict(ckpt["model"])
        obs_norm = ObsNormalizer(env.observation_space.shape, saved["obs_clip"], saved["norm_obs"])
        obs_norm.load_state_dict(ckpt["obs_rms"])
    except (KeyError, RuntimeError):
        raise ValueError(f"its weights are not a2c.py's networks for {saved['env_id']}: "
                         "another script's checkpoint?") from None
    env.close()
    return agent.to(device), obs_norm, saved


def evaluate(agent: Agent, obs_norm: ObsNormalizer, saved: dict, eval_episodes: int, run_name: str,
             capture_video: bool, device: torch.device, seed: int):
    """Episodic returns of a loaded checkpoint's deterministic policy, statistics frozen."""
    env = make_env(saved["env_id"], 0, capture_video, run_name)()
    to_env = action_to_env(env.action_space, saved.get("action_mapping", "normalized"))
    returns = []
    obs, _ = env.reset(seed=seed)
    episode_return = 0.0
    while len(returns) < eval_episodes:
        with torch.no_grad():
            x = torch.as_tensor(obs_norm(obs[None], update=False), dtype=torch.float32, device=device)
            action = agent.act_deterministic(x)[0].cpu().numpy()
        obs, reward, terminated, truncated, _ = env.step(to_env(action))
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
    """Every random generator the loop draws from: Python's, NumPy's global one, torch's on the CPU and on CUDA."""
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
    if not isinstance(state, dict) or state.get("script") != "a2c.py":
        raise ValueError(f"{path} is not an a2c.py run state: another script's, or not written by --checkpoint-every")
    saved, default = Args(**state["args"]), Args()
    changed = {name: value for name, value in asdict(given).items()
               if name != "resume" and value != getattr(default, name)}
    for name, value in changed.items():
        if name not in RESUME_MAY_CHANGE and value != getattr(saved, name):
            raise ValueError(f"--{name.replace('_', '-')} {value} would change the run it resumes "
                             f"(it ran with {getattr(saved, name)}); only --total-timesteps may extend it")
    resumed = replace(saved, **{name: changed[name] for name in RESUME_MAY_CHANGE if name in changed}, resume=None)
    if resumed.total_timesteps // (resumed.num_envs * resumed.num_steps) <= state["iteration"]:  # no iteration left
        raise ValueError(f"the run already reached step {state['global_step']}: a larger --total-timesteps extends it")
    return resumed, state


def fail(message: str):
    """A user's mistake: one line on stderr, exit status 2, nothing written."""
    print(f"a2c.py: error: {message}", file=sys.stderr)
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
    problem = check_spaces(probe.observation_space, probe.action_space)
    if problem:
        fail(problem)
    continuous = isinstance(probe.action_space, gym.spaces.Box)
    probe.close()
    args = resolve_presets(args, continuous)
    problem = check_sizes(args)
    if problem:
        fail(problem)
    train(args)


if __name__ == "__main__":
    main()
