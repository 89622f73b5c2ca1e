"""Final returns of finished runs, CleanRL's way: the mean episodic return of each run's last 100 training
episodes, then mean and standard deviation across runs (seeds).

    python benchmark/summarize.py runs/Hopper-v4__ppo__*
"""

import statistics
import sys
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import read_scalars  # noqa: E402


def final_return(run: Path, episodes: int = 100) -> float:
    returns = [value for _, value in read_scalars(run)["charts/episodic_return"][-episodes:]]
    return sum(returns) / len(returns)


def main(runs: list[Path], /, episodes: int = 100):
    """Print each run's mean return over its last `episodes` episodes, then their mean +- std."""
    finals = []
    for run in runs:
        finals.append(final_return(run, episodes))
        sps = read_scalars(run)["charts/SPS"][-1][1]
        print(f"{run.name}: {finals[-1]:.1f} (last {episodes} episodes), final SPS {sps:.0f}")
    spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
    print(f"mean {statistics.mean(finals):.1f} +- {spread:.1f} over {len(finals)} runs")


if __name__ == "__main__":
    tyro.cli(main)
