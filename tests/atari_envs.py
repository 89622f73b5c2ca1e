"""An Atari game for ppo_atari.py's tests, made by id as "tests.atari_envs:SpaceInvadersRewardLog-v0".

It is the real game (ale-py's AtariEnv, so ppo_atari.py takes it as one) that also writes down, frame by
frame, what the emulator pays: the ground truth against which the score the training loop logs is checked.
"""

import os
from pathlib import Path

import ale_py
import gymnasium as gym


class RewardLogEnv(ale_py.AtariEnv):
    """Appends to a file of its own under $ATARI_REWARD_LOG: `reset` when a game starts, `reward R` for every
    frame that pays, `terminated` or `truncated` when the game ends."""

    def reset(self, **kwargs):
        result = super().reset(**kwargs)
        self.log("reset")
        return result

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if reward:
            self.log(f"reward {reward}")
        if terminated or truncated:
            self.log("terminated" if terminated else "truncated")
        return obs, reward, terminated, truncated, info

    def log(self, line: str):
        with open(os.path.join(os.environ["ATARI_REWARD_LOG"], f"{os.getpid()}-{id(self)}.txt"), "a") as f:
            f.write(line + "\n")


# Space Invaders: 3 lives, and rewards of 5 to 30 points (clipping them to 1 would show). The frame limit of
# 2,000 frames (500 steps) cuts the longer games of a near-random policy and lets the shorter ones end.
REWARD_LOG_FRAME_LIMIT = 2000
gym.register("SpaceInvadersRewardLog-v0", entry_point=RewardLogEnv,
             kwargs=dict(game="space_invaders", frameskip=1, repeat_action_probability=0.0,
                         max_num_frames_per_episode=REWARD_LOG_FRAME_LIMIT))


def games_in(log_file) -> list:
    """(raw score, how it ended) of each finished game a RewardLog env wrote down."""
    games, score = [], None
    for line in Path(log_file).read_text().splitlines():
        if line == "reset":
            score = 0.0
        elif line.startswith("reward"):
            score += float(line.split()[1])
        elif line in ("terminated", "truncated"):
            games.append((score, line))
    return games
