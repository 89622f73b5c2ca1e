"""ppo_atari.py: the Atari preprocessing on real games, the score it logs against the emulator's own rewards,
the training loop run in the test's process and read back, evaluation, and the script end to end on Pong. What
every script shares (flags, checkpoints, video, tracking, seeding, one-line errors) is tested on Breakout in
test_common.py."""

import glob

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch

import ppo_atari
from tests.atari_envs import games_in
from tests.helpers import (logged_numbers, one_error_line, read_scalars, run_dir, run_in_process, run_ok, run_script,
                           spy)


def breakout(env_id="BreakoutNoFrameskip-v4"):
    """One env as ppo_atari.py makes it for training, with all its preprocessing."""
    return ppo_atari.make_env(env_id, 0, False, "test")()


# ------------------------------------------------------------------------------------------ preprocessing


def test_observations_are_the_last_four_84x84_grayscale_frames_as_bytes():
    env = breakout()
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=1)
    next_obs, *_ = env.step(0)
    assert obs.shape == next_obs.shape == (4, 84, 84) and next_obs.dtype == np.uint8
    np.testing.assert_array_equal(next_obs[:3], obs[1:])  # the stack moves on by one frame per step
    assert not np.array_equal(next_obs[3], obs[3])  # the ball moved


@pytest.mark.parametrize("env_id, sticky", [("BreakoutNoFrameskip-v4", 0.0), ("ALE/Breakout-v5", 0.25)])
def test_both_id_families_skip_four_frames_once_and_keep_their_sticky_actions(env_id, sticky):
    env = breakout(env_id)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(sticky)
    _, info = env.reset(seed=1)
    before = info["episode_frame_number"]
    _, _, _, _, info = env.step(0)
    assert info["episode_frame_number"] - before == 4  # v5 would skip 4 x 4 = 16 if made with its default


def test_a_reset_fills_the_stack_with_its_first_frame_after_a_varied_number_of_noops():
    frame_numbers = set()
    for seed in range(8):
        obs, info = breakout().reset(seed=seed)
        assert obs[3].any() and all(np.array_equal(obs[k], obs[3]) for k in range(3))
        frame_numbers.add(info["episode_frame_number"])
    assert len(frame_numbers) > 1 and max(frame_numbers) <= 30 + 2 * 4  # then FIRE and action 2, 4 frames each


def test_a_step_observes_the_max_of_its_last_two_frames():
    env = breakout("SpaceInvadersNoFrameskip-v4")
    env.reset(seed=3)
    ale = env.unwrapped.ale
    for _ in range(20):
        state = ale.cloneState()
        obs = env.step(3)[0]
        ale.restoreState(state)  # and replay the step's 4 frames by hand
        frames = []
        for _ in range(4):
            ale.act(3)
            frames.append(ale.getScreenGrayscale())
        np.testing.assert_array_equal(obs[-1], cv2.resize(np.maximum(frames[2], frames[3]), (84, 84),
                                                          interpolation=cv2.INTER_AREA))


def test_the_points_of_the_fire_presses_after_a_lost_life_count():
    class LoseALife(gym.Env):
        """Action 0 loses a life and pays 1; FIRE (1) pays 10 and action 2 pays 20."""
        observation_space, action_space = gym.spaces.Discrete(1), gym.spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            self.lives = 3
            return 0, {"lives": self.lives}

        def step(self, action):
            if action == 0:
                self.lives -= 1
            return 0, {0: 1.0, 1: 10.0, 2: 20.0}[int(action)], False, False, {"lives": self.lives}

    env = ppo_atari.FireReset(LoseALife())
    env.reset()
    assert env.step(0)[1] == 1.0 + 10.0 + 20.0


def test_the_network_sees_pixels_in_0_1_and_evaluation_takes_the_most_probable_action():
    agent = ppo_atari.Agent(4)
    x = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(agent.get_value(x), agent.critic(agent.network(x.float() / 255)).squeeze(-1))
        agent.actor.bias[:] = torch.tensor([0.0, 0.0, 5.0, 0.0])
    assert agent.act_deterministic(torch.zeros(3, 4, 84, 84, dtype=torch.uint8)).tolist() == [2, 2, 2]


def test_learning_sees_sign_clipped_rewards_and_a_lost_life_as_a_termination():
    reward = np.array([7.0, -3.0, 0.0, 1.0, 30.0])
    terminated = np.array([False, False, False, True, False])
    truncated = np.array([False, False, False, False, True])
    # env 1 lost a life; env 3's game is over (its lives are already the next game's); env 4 was truncated
    lives, prev_lives = np.array([5, 2, 3, 5, 5]), np.array([5, 3, 3, 1, 5])
    rewards, terminations, dones = ppo_atari.learning_signals(reward, terminated, truncated, lives, prev_lives)
    assert rewards.tolist() == [1, -1, 0, 1, 1]
    assert terminations.tolist() == [0, 1, 0, 1, 0]  # truncation is no termination: it bootstraps
    assert dones.tolist() == [0, 1, 0, 1, 1]


def test_a_lost_life_ends_the_learning_episode_but_the_game_goes_on():
    env = breakout()
    env.action_space.seed(1)
    obs, info = env.reset(seed=1)
    lives = info["lives"]
    for _ in range(1000):
        next_obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if info["lives"] < lives:
            break
        obs = next_obs
    else:
        pytest.fail("no life lost in 1000 random steps")
    assert not (terminated or truncated) and info["lives"] == lives - 1
    # The same game: a reset would have filled the stack with one frame and restarted the frame count.
    np.testing.assert_array_equal(next_obs[:3], obs[1:])
    frame = info["episode_frame_number"]
    assert env.step(0)[4]["episode_frame_number"] == frame + 4
    # ... while learning sees the step as the end of an episode, with no bootstrap past it.
    _, terminations, dones = ppo_atari.learning_signals(np.array([reward]), np.array([terminated]),
                                                        np.array([truncated]), np.array([info["lives"]]),
                                                        np.array([lives]))
    assert terminations[0] == dones[0] == 1


def test_breakout_fires_at_the_start_and_after_each_lost_life():
    # Breakout serves the ball only on FIRE. A policy that never fires still loses all 5 lives and ends the
    # game; without FireReset the ball never comes and no life is ever lost.
    env = breakout()
    env.reset(seed=1)
    for _ in range(2000):
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    assert terminated and info["lives"] == 0
    bare = gym.wrappers.AtariPreprocessing(gym.make("BreakoutNoFrameskip-v4", frameskip=1))
    bare.reset(seed=1)
    for _ in range(500):
        _, _, terminated, _, info = bare.step(0)
    assert info["lives"] == 5 and not terminated


def test_video_shows_the_real_screen(tmp_path, monkeypatch):
    from moviepy import VideoFileClip

    monkeypatch.chdir(tmp_path)
    env = ppo_atari.make_env("BreakoutNoFrameskip-v4", 0, True, "film")()
    env.reset(seed=1)
    for _ in range(20):
        env.step(0)
    env.close()
    (video,) = glob.glob(str(tmp_path / "videos" / "film" / "*.mp4"))
    clip = VideoFileClip(video)
    assert tuple(clip.size) == (160, 210) and clip.fps == 15  # the console's screen at its speed, not 84x84


# ------------------------------------------------------------------------------------ the script, end to end


@pytest.mark.slow
def test_the_logged_return_is_the_raw_score_of_whole_games(tmp_path, monkeypatch):
    # Space Invaders (3 lives, 5 to 30 points an alien) under a frame limit: the env writes down every
    # reward the emulator pays; each logged return must be the sum over one whole game, all lives, unclipped,
    # whether the game ended or was cut by the limit (which also runs the truncation bootstrap).
    log = tmp_path / "rewards"
    log.mkdir()
    monkeypatch.setenv("ATARI_REWARD_LOG", str(log))
    run_ok("ppo_atari.py", "--env-id", "tests.atari_envs:SpaceInvadersRewardLog-v0", "--num-envs", "2",
           "--num-steps", "128", "--total-timesteps", "3072", "--update-epochs", "1", "--num-minibatches", "1",
           cwd=tmp_path)
    games = [game for path in sorted(log.iterdir()) for game in games_in(path)]
    assert {"terminated", "truncated"} <= {end for _, end in games}, games  # both kinds of game end happened
    assert any(score not in (0.0, 1.0) for score, _ in games)  # clipping would show
    logged = read_scalars(run_dir(tmp_path))["charts/episodic_return"]
    assert sorted(value for _, value in logged) == sorted(score for score, _ in games)


def record_vector_steps(monkeypatch) -> list:
    """Make every SyncVectorEnv.step also append (reward, terminated, truncated, lives, final observations)."""
    steps, real = [], gym.vector.SyncVectorEnv.step

    def recording(self, actions):
        result = real(self, actions)
        _, reward, terminated, truncated, infos = result
        steps.append((reward.copy(), terminated.copy(), truncated.copy(), infos["lives"].copy(),
                      [None if o is None else np.array(o) for o in infos.get("final_obs", [None] * len(reward))]))
        return result

    monkeypatch.setattr(gym.vector.SyncVectorEnv, "step", recording)
    return steps


def test_the_loop_learns_from_clipped_rewards_lost_lives_and_real_final_observations(tmp_path, monkeypatch):
    # One rollout of 2 envs x 512 steps on Space Invaders cut at 500 steps: games end by termination and by
    # truncation within it. --learning-rate 1e-12: the agent at the end is the one that collected the rollout.
    monkeypatch.setenv("ATARI_REWARD_LOG", str(tmp_path))
    steps, clips = record_vector_steps(monkeypatch), spy(monkeypatch, torch.nn.utils, "clip_grad_norm_")
    loop = run_in_process("ppo_atari.py", "--env-id", "tests.atari_envs:SpaceInvadersRewardLog-v0", "--num-envs",
                          "2", "--num-steps", "512", "--total-timesteps", "1024", "--update-epochs", "2",
                          "--num-minibatches", "4", "--learning-rate", "1e-12", "--torch-threads", "1",
                          cwd=tmp_path / "run", monkeypatch=monkeypatch)
    reward, terminated, truncated, lives = (np.stack([step[k] for step in steps]) for k in range(4))
    assert reward.max() > 1 and terminated.any() and truncated.any()
    np.testing.assert_array_equal(loop["rewards"], np.sign(reward))
    life_lost = (lives < np.concatenate([[[3, 3]], lives[:-1]])) & ~(terminated | truncated)  # 3 lives a game
    np.testing.assert_array_equal(loop["terminations"], terminated | life_lost)
    np.testing.assert_array_equal(loop["dones"], terminated | truncated | life_lost)
    # The next value is V of the next stored observation within a learning episode, and of the real final
    # observation where a game was cut.
    dones, next_values, agent = loop["dones"].astype(bool), loop["next_values"], loop["agent"]
    np.testing.assert_array_equal(next_values[:-1][~dones[:-1]], loop["values"][1:][~dones[:-1]])
    with torch.no_grad():
        for t, i in zip(*np.nonzero(truncated)):
            assert next_values[t, i] == pytest.approx(agent.get_value(torch.as_tensor(steps[t][4][i][None])).item(),
                                                      abs=1e-4)
    advantages, _ = ppo_atari.compute_gae(loop["rewards"], loop["values"], next_values, loop["terminations"],
                                          loop["dones"], 0.99, 0.95)
    np.testing.assert_allclose(loop["advantages"], advantages, rtol=1e-5, atol=1e-5)
    # The update: every minibatch clips the gradient at --max-grad-norm, and the loss weighs its terms as set.
    assert [clip[1] for clip in clips] == [0.5] * 2 * 4
    assert loop["loss"].item() == pytest.approx(
        (loop["pg_loss"] - 0.01 * loop["entropy_loss"] + 0.5 * loop["v_loss"]).item(), rel=1e-5)


def test_target_kl_stops_the_epochs(tmp_path, monkeypatch):
    clips = spy(monkeypatch, torch.nn.utils, "clip_grad_norm_")
    run_in_process("ppo_atari.py", "--num-envs", "1", "--num-steps", "64", "--total-timesteps", "128",
                   "--update-epochs", "4", "--num-minibatches", "2", "--target-kl", "1e-9", "--torch-threads", "1",
                   cwd=tmp_path, monkeypatch=monkeypatch)
    assert len(clips) == 2 * 2  # 2 iterations of one epoch of 2 minibatches, not 4 epochs


def test_the_rate_anneals_linearly_and_the_checkpoint_holds_the_trained_weights(tmp_path, monkeypatch):
    loop = run_in_process("ppo_atari.py", "--num-envs", "1", "--num-steps", "32", "--total-timesteps", "128",
                          "--update-epochs", "1", "--save-model", "--eval-episodes", "1", "--torch-threads", "1",
                          cwd=tmp_path, monkeypatch=monkeypatch)
    run = run_dir(tmp_path)
    assert [v for _, v in read_scalars(run)["charts/learning_rate"]] == pytest.approx(
        [2.5e-4 * (1 - k / 4) for k in range(4)])
    trained = loop["agent"].state_dict()
    loaded, _ = ppo_atari.load_checkpoint(str(run / "ppo_atari.pt"), torch.device("cpu"))
    assert all(torch.equal(value, trained[name]) for name, value in loaded.state_dict().items())


@pytest.mark.slow
def test_evaluation_scores_whole_raw_games_from_its_seed(tmp_path, monkeypatch):
    seeds, real_reset = [], ale_py.AtariEnv.reset

    def recording_reset(self, *, seed=None, options=None):
        seeds.append(seed)
        return real_reset(self, seed=seed, options=options)

    monkeypatch.setattr(ale_py.AtariEnv, "reset", recording_reset)
    torch.manual_seed(0)
    agent, saved = ppo_atari.Agent(6), {"env_id": "tests.atari_envs:SpaceInvadersRewardLog-v0"}
    games = []
    for k in range(2):
        (tmp_path / str(k)).mkdir()
        monkeypatch.setenv("ATARI_REWARD_LOG", str(tmp_path / str(k)))
        returns = ppo_atari.evaluate(agent, saved, 2, "eval", False, torch.device("cpu"), seed=7)
        (log,) = (tmp_path / str(k)).iterdir()
        games.append([score for score, _ in games_in(log)])
        assert returns == games[-1] and any(score not in (0.0, 1.0) for score in returns)
    assert seeds[0] == 7 and games[0] == games[1]


@pytest.mark.slow
def test_pong_smoke_and_its_checkpoint_loads_onto_any_device(tmp_path):
    run_ok("ppo_atari.py", "--env-id", "PongNoFrameskip-v4", "--num-envs", "2", "--num-steps", "64",
           "--total-timesteps", "256", "--update-epochs", "1", "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    run = run_dir(tmp_path)
    (eval_return,) = [value for _, value in read_scalars(run)["eval/episodic_return"]]
    assert -21 <= eval_return <= 21
    # The file is read onto the CPU whatever the device asked for (here "meta", which holds no data: code
    # that moved the file onto the device first and then read it would fail).
    agent, saved = ppo_atari.load_checkpoint(str(run / "ppo_atari.pt"), torch.device("meta"))
    assert saved["env_id"] == "PongNoFrameskip-v4" and agent.actor.out_features == 6
    assert {p.device.type for p in agent.parameters()} == {"meta"}


@pytest.mark.slow
def test_async_envs_step_the_same_games_in_subprocesses(tmp_path):
    flags = ("--num-envs", "2", "--num-steps", "128", "--total-timesteps", "1024", "--update-epochs", "1")
    in_process = logged_numbers("ppo_atari.py", *flags, cwd=tmp_path / "sync")
    assert in_process["charts/episodic_return"]  # some games ended, so the comparison covers episode ends
    assert logged_numbers("ppo_atari.py", *flags, "--async-envs", cwd=tmp_path / "async") == in_process


@pytest.mark.slow
def test_another_scripts_checkpoint_gets_one_line(tmp_path):
    run_ok("ppo.py", "--env-id", "Pendulum-v1", "--total-timesteps", "1024", "--num-steps", "512",
           "--num-minibatches", "4", "--save-model", "--eval-episodes", "1", cwd=tmp_path)
    error = one_error_line(run_script("ppo_atari.py", "--eval-checkpoint", str(run_dir(tmp_path) / "ppo.pt"),
                                      cwd=tmp_path), "ppo_atari.py")
    assert error.startswith("ppo_atari.py: error: cannot load checkpoint") and error.endswith("not an Atari game")


def test_a_game_whose_action_0_is_not_noop_gets_one_line_and_writes_nothing(tmp_path):
    # The no-op starts play action 0 as NOOP, and gymnasium's AtariPreprocessing refuses a game where action 0 is
    # something else (Backgammon's is FIRE) by raising inside the vector env's constructor, after the run folder is
    # written: the script must say so in a line, before it writes anything.
    assert gym.make("ALE/Backgammon-v5").unwrapped.get_action_meanings()[0] == "FIRE"
    result = run_script("ppo_atari.py", "--env-id", "ALE/Backgammon-v5", cwd=tmp_path)
    assert one_error_line(result, "ppo_atari.py") == ("ppo_atari.py: error: ALE/Backgammon-v5's action 0 is FIRE, not "
                                                      "NOOP: ppo_atari.py starts each game with up to 30 NOOPs")
    assert list(tmp_path.iterdir()) == []
