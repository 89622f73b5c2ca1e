"""Write the results tables of README.md and docs/<script>.md from a profile's finished runs, so that the documents
quote the runs as they are. Each table sits between two markers that this tool finds and rewrites:

    <!-- results: all -->        (README.md: every row, ours beside the published figure and stable-baselines3)
    <!-- results: ppo.py -->     (docs/ppo.md: that script's rows with the interval estimates and verdicts)
    <!-- results: summary -->    (benchmark/README.md: summary.md, every runner and env)
    <!-- results: comparison --> (benchmark/README.md: comparison.md, the interval estimates, verdicts, aggregates)
    <!-- /results -->

Usage (after the runs, or any time: it reads what has finished):
    python benchmark/doc_tables.py                     # the full profile's report, then its tables into the documents
"""

import re
import sys
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmark import run  # noqa: E402

# The published figure each row is read beside: CleanRL's published means of the same metric (Atari at 10M steps,
# this benchmark runs 1M), and rl-baselines3-zoo's A2C results (another metric: one agent, evaluated).
PUBLISHED = {
    ("ppo.py", "CartPole-v1"): "490.0 (CleanRL `ppo.py`)",
    ("ppo.py", "Hopper-v4"): "2382.9 (CleanRL `ppo_continuous_action.py`)",
    ("ppo.py", "HalfCheetah-v4"): "about 1443 (CleanRL `ppo_continuous_action.py`)",
    ("ppo.py", "Walker2d-v4"): "about 2288 (CleanRL `ppo_continuous_action.py`)",
    ("dqn.py", "CartPole-v1"): "488.7 (CleanRL `dqn.py`)",
    ("dqn.py", "Acrobot-v1"): "-91.5 (CleanRL `dqn.py`)",
    ("dqn.py", "MountainCar-v0"): "-195.0 (CleanRL `dqn.py`)",
    ("ppo_atari.py", "BreakoutNoFrameskip-v4"): "414.7 (CleanRL, at 10M)",
    ("ppo_atari.py", "PongNoFrameskip-v4"): "20.4 (CleanRL, at 10M)",
    ("ddpg_continuous.py", "HalfCheetah-v4"): "10374 (CleanRL `ddpg_continuous_action.py`)",
    ("ddpg_continuous.py", "Hopper-v4"): "1577 (CleanRL `ddpg_continuous_action.py`)",
    ("a2c.py", "CartPole-v1"): "500.0 (zoo A2C)",
    ("a2c.py", "Acrobot-v1"): "-83.4 (zoo A2C, other settings)",
    ("a2c.py", "InvertedPendulum-v4"): "none published",
    ("a2c.py", "Hopper-v4"): "733.5 (zoo A2C, Hopper-v3)",
}
MARKER = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- /results -->)", re.S)


def budget(steps) -> str:
    steps = int(steps)
    return f"{steps // 1_000_000}M" if steps % 1_000_000 == 0 else f"{steps // 1000}k"


def mean_std(row: dict | None) -> str:
    """A summary row's mean +- std and its number of seeds."""
    if row is None:
        return "not run"
    n = len(row["seeds"].split())
    if n == 1:
        return f"{float(row['mean_return']):.1f} (1 seed)"
    return f"{float(row['mean_return']):.1f} +- {float(row['std_return']):.1f} ({n} seeds)"


def cells(by_key: dict, script: str, env_id: str) -> tuple[str, str, str, str]:
    """One row's budget, ours, stable-baselines3's and the published figure, as table cells."""
    ours = by_key[(script, env_id)]
    return (budget(ours["budget"]), mean_std(ours), mean_std(by_key.get(("sb3-" + script, env_id))),
            PUBLISHED.get((script, env_id), "none quoted"))


def all_rows(summary: list) -> str:
    """README.md's table: every row of ours, the published figure, stable-baselines3 on the same config."""
    by_key = {(r["runner"], r["env_id"]): r for r in summary}
    lines = ["| script | env | budget | ours | published | stable-baselines3 here |", "|---|---|---|---|---|---|"]
    for script in dict.fromkeys(script for script, _ in PUBLISHED):
        for runner, env_id in by_key:
            if runner == script:
                steps, ours, sb3, published = cells(by_key, script, env_id)
                lines.append(f"| `{script}` | {env_id} | {steps} | {ours} | {published} | {sb3} |")
    return "\n".join(lines)


def script_rows(summary: list, comparisons: list, script: str) -> str:
    """docs/<script>.md's table: per env, both sides' training returns, then per metric the seeds both finished,
    the probability that a run of ours scores above one of stable-baselines3's with its interval, and the verdict."""
    by_key = {(r["runner"], r["env_id"]): r for r in summary}
    ci = lambda interval: f"[{interval[0]:.2f}, {interval[1]:.2f}]"  # noqa: E731
    lines = ["| env | budget | ours | stable-baselines3 | published | metric | seeds a side | mean, ours (SB3) | "
             "P(ours > SB3) [95% CI] | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for runner, env_id in by_key:
        if runner != script:
            continue
        first = "| " + " | ".join((env_id, *cells(by_key, script, env_id)))
        compared = [c for c in comparisons if c["runner"] == script and c["env_id"] == env_id]
        if not compared:
            lines.append(f"{first} | | | | | |")
        for index, c in enumerate(compared):
            lead = first if index == 0 else "| | | | |"
            lines.append(f"{lead} | {c['metric']} | {c['seeds']} | {c['mean']:.1f} ({c['mean_reference']:.1f}) | "
                         f"{c['p_improvement']:.2f} {ci(c['p_improvement_ci'])} | {c['verdict']} |")
    return "\n".join(lines)


def rewrite(text: str, tables: dict) -> str:
    """The document with each marked table replaced by tables[name] (names not in tables stay as they are)."""
    return MARKER.sub(lambda m: m[1] + tables[m[2]] + "\n" + m[4] if m[2] in tables else m[0], text)


def main(profile: str = "full"):
    """Report on benchmark/results/<profile>/ (run.py --report-only), then rewrite the marked tables of README.md,
    benchmark/README.md and docs/*.md from it."""
    out, jobs = run.REPO / "benchmark" / "results" / profile, run.jobs_of(run.PROFILES[profile])
    summary, comparisons = run.report(out, jobs)
    summary = [{key: str(value) for key, value in row.items()} for row in summary]
    tables = {"all": all_rows(summary), "summary": (out / "summary.md").read_text().strip(),
              "comparison": (out / "comparison.md").read_text().strip(),
              **{script: script_rows(summary, comparisons, script) for script in dict.fromkeys(s for s, _ in PUBLISHED)}}
    paths = [run.REPO / "README.md", run.REPO / "benchmark" / "README.md", *sorted((run.REPO / "docs").glob("*.md"))]
    for path in paths:
        text = path.read_text()
        new = rewrite(text, tables)
        if new != text:
            path.write_text(new)
            print(f"rewrote the tables of {path.relative_to(run.REPO)}")


if __name__ == "__main__":
    tyro.cli(main)
