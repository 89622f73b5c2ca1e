"""The project's benchmark: train the real scripts as a user would (and stable-baselines3 configured the same
way, where an entry asks for it), then turn their logs into tidy CSVs, a results table and learning curves.

    pip install -r benchmark/requirements.txt
    python benchmark/run.py --profile quick          # a few minutes: every script on a small env, one seed
    python benchmark/run.py --profile full           # hours: the published budgets, 3 or 10 seeds, beside SB3
    python benchmark/run.py --profile full --report-only   # tables and plots from the runs finished so far
    python benchmark/run.py --profile action-mapping # a2c.py, ppo.py: normalized against clipped actions, 10 seeds
    python benchmark/run.py --profile full --scripts dqn.py --envs Acrobot-v1   # run only these rows
    # one long run on both cores of a 2-core machine: SB3's DDPG on Hopper, hours on two threads
    # (stopped and started again, it resumes from its last checkpoint)
    python benchmark/run.py --profile full --scripts ddpg_continuous.py --envs Hopper-v4 --seeds 1 --side sb3 \
        --jobs 1 --threads 2

Everything lands in benchmark/results/{profile}/:
  runs/{runner}__{env}__{seed}/episodes.csv   one tidy CSV per finished run (global_step, wall_time,
                                              episodic_return, sps); its existence marks the run as done,
                                              so an interrupted benchmark resumes where it stopped
  runs/{runner}__{env}__{seed}/eval.csv       the final deterministic evaluation (episode, episodic_return),
                                              for entries that evaluate; they are done when it exists too
  runs/{runner}__{env}__{seed}/work/           an unfinished run's files, with its checkpoint (every
                                              CHECKPOINT_EVERY steps) from which it resumes: SB3's, and the
                                              scripts' that have --resume (RESUMABLE); the wall time of a
                                              resumed run of a script includes the time it was stopped
  summary.csv, summary.md                      per (runner, env): mean +- std across seeds of the mean return
                                              of the last 100 training episodes (CleanRL's metric), final
                                              SPS and wall time
  comparison.md                                each runner against its SB3 twin (or a script's first
                                              variant), on both metrics: IQM and probability of improvement
                                              with 95% stratified-bootstrap intervals, and a verdict; then
                                              per algorithm, over its envs with MIN_SEEDS seeds or more a side,
                                              the probability of improvement, its interval and verdict
  probability_of_improvement.png               rliable's picture of those per-algorithm probabilities
  {env}.png                                    return against env steps, mean and std band across seeds
                                              (envs with a finished run)
A new algorithm file joins with a new Entry in PROFILES (and, for SB3, an entry in sb3_equivalent.py).
"""

import csv
import os
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.helpers import read_scalars  # noqa: E402

LAST_EPISODES = 100
EVAL_EPISODES = 10  # the scripts' --eval-episodes default
MIN_SEEDS = 4
"""seeds a side below which a comparison gives no verdict: with 3 against 3, every run of one side above every run
of the other is still p = 0.1 under an exact permutation test (1 in 10 of the 20 orderings, two-sided), while the
bootstrap's interval of the probability of improvement collapses to a point; with 4 against 4 it is p = 0.03"""
BOOTSTRAP_REPS = 2000  # rliable's resamples for each interval
CHECKPOINT_EVERY = 100_000
"""env steps between a run's checkpoints, on both sides (SB3's only in runs that long; the scripts' also at their
end): a run cut short resumes from its last checkpoint the next time the runner starts it"""
RESUMABLE = ("ppo.py", "a2c.py", "dqn.py", "ddpg_continuous.py", "ppo_atari.py")
"""the scripts with --checkpoint-every and --resume; the others' runs start over"""


@dataclass(frozen=True)
class Entry:
    script: str
    env_id: str
    budget: int
    seeds: tuple = (1, 2, 3)
    flags: tuple = ()
    """the script's flags beyond --env-id, --seed and --total-timesteps"""
    sb3: bool = False
    """also train stable-baselines3 configured like the script, on the same budget and seeds"""
    variant: str = ""
    """a name for these flags where a profile runs one script on one env more than one way: the runner becomes
    script+variant (e.g. a2c.py+clip)"""
    evaluate: bool = False
    """after training, EVAL_EPISODES episodes of the deterministic policy on both sides (the scripts' --save-model
    evaluation; sb3_train.py's --eval-episodes): a run finishes with its eval.csv"""


TEN = tuple(range(1, 11))
PROFILES = {
    "quick": [
        Entry("ppo.py", "CartPole-v1", 50_000, (1,)),
        Entry("ppo.py", "InvertedPendulum-v4", 20_480, (1,)),
        Entry("dqn.py", "CartPole-v1", 30_000, (1,), ("--learning-starts", "5000")),
        Entry("ppo_atari.py", "BreakoutNoFrameskip-v4", 4096, (1,)),
        Entry("ddpg_continuous.py", "Pendulum-v1", 12_000, (1,),
              ("--learning-starts", "1000", "--learning-rate", "1e-3")),
        Entry("a2c.py", "CartPole-v1", 50_000, (1,)),
    ],
    # Rows whose runs take minutes have 10 seeds a side, each with its final deterministic evaluation; the DDPG
    # and Atari rows, hours a run, keep the seeds they have.
    "full": [
        Entry("ppo.py", "CartPole-v1", 500_000, TEN, sb3=True, evaluate=True),
        Entry("ppo.py", "Hopper-v4", 1_000_000, TEN, sb3=True, evaluate=True),
        Entry("ppo.py", "HalfCheetah-v4", 1_000_000, sb3=True, evaluate=True),
        Entry("ppo.py", "Walker2d-v4", 1_000_000, sb3=True, evaluate=True),
        Entry("dqn.py", "CartPole-v1", 500_000, TEN, sb3=True, evaluate=True),
        Entry("dqn.py", "Acrobot-v1", 500_000, TEN, sb3=True, evaluate=True),
        Entry("dqn.py", "MountainCar-v0", 500_000, TEN, sb3=True, evaluate=True),
        # Atari at the budget one run finishes in about two hours on one core here (10M is out of reach; the
        # README gives the command for it), one seed.
        Entry("ppo_atari.py", "BreakoutNoFrameskip-v4", 1_000_000, (1,), sb3=True),
        Entry("ppo_atari.py", "PongNoFrameskip-v4", 1_000_000, (1,), sb3=True),
        Entry("ddpg_continuous.py", "HalfCheetah-v4", 1_000_000, sb3=True),
        Entry("ddpg_continuous.py", "Hopper-v4", 1_000_000, sb3=True),
        Entry("a2c.py", "CartPole-v1", 500_000, TEN, sb3=True, evaluate=True),
        Entry("a2c.py", "Acrobot-v1", 500_000, TEN, sb3=True, evaluate=True),
        Entry("a2c.py", "InvertedPendulum-v4", 200_000, TEN, sb3=True, evaluate=True),
        Entry("a2c.py", "Hopper-v4", 1_000_000, TEN, sb3=True, evaluate=True),
    ],
    # How the Gaussian policy's actions reach a Box env: rescaled from [-1, 1] onto the bounds (normalized), or
    # in the env's units, clipped (clip, as stable-baselines3). Envs whose bounds are not +-1: InvertedPendulum
    # +-3, Pendulum +-2. 10 seeds a side; the final deterministic evaluation (--save-model) beside the returns.
    "action-mapping": [
        Entry(script, env_id, 200_000, TEN, ("--action-mapping", mapping), variant=mapping, evaluate=True)
        for script in ("a2c.py", "ppo.py") for env_id in ("InvertedPendulum-v4", "Pendulum-v1")
        for mapping in ("normalized", "clip")
    ],
}


@dataclass(frozen=True)
class Job:
    runner: str
    """the script, or "sb3-" + the script it mirrors"""
    entry: Entry
    seed: int

    @property
    def sb3(self) -> bool:
        return self.runner.startswith("sb3-")

    @property
    def name(self) -> str:
        return f"{self.runner.replace('.py', '')}__{self.entry.env_id.replace('/', '-')}__{self.seed}"


def jobs_of(entries: list) -> list:
    return [Job(runner, e, seed) for e in entries
            for runner in ([e.script + (f"+{e.variant}" if e.variant else "")] + (["sb3-" + e.script] if e.sb3 else []))
            for seed in e.seeds]


def select(jobs: list, scripts: tuple = (), envs: tuple = (), seeds: tuple = (), side: str = "both") -> list:
    """The jobs of the given scripts (with their SB3 twins unless `side` is "ours"; only those if it is "sb3"),
    envs and seeds; an empty selection keeps all."""
    return [job for job in jobs if (not scripts or job.entry.script in scripts)
            and (not envs or job.entry.env_id in envs) and (not seeds or job.seed in seeds)
            and side in ("both", "sb3" if job.sb3 else "ours")]


def tidy_rows(scalars: dict) -> list:
    """One row per training episode: global_step, wall_time (s since the first episode was written: the
    scripts write episodes in batches, every 2% of training), episodic_return, and the SPS logged last at or
    before that step."""
    sps = scalars.get("charts/SPS", [])
    sps_steps = [step for step, _, _ in sps]  # (step, value, wall time) triples
    episodes = scalars["charts/episodic_return"]
    start = episodes[0][2]
    rows = []
    for step, value, wall in episodes:
        i = np.searchsorted(sps_steps, step, side="right") - 1
        rows.append({"global_step": step, "wall_time": round(wall - start, 3), "episodic_return": value,
                     "sps": sps[i][1] if i >= 0 else ""})
    return rows


def write_csv(path: Path, rows: list):
    """Write atomically: a CSV that exists is a finished run."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def read_csv(path: Path) -> list:
    with open(path) as f:
        return [{k: float(v) if v else float("nan") for k, v in row.items()} for row in csv.DictReader(f)]


def run_job(job: Job, out: Path, threads: int = 1) -> Path:
    """Train one (runner, env, seed) on `threads` torch threads and write its episodes.csv; return the folder."""
    folder = out / "runs" / job.name
    work = folder / "work"  # kept when a run is cut short: it resumes from its checkpoint there
    resumable = job.sb3 or job.entry.script in RESUMABLE
    if not resumable:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONWARNINGS="ignore::DeprecationWarning")
    states = [] if job.sb3 else sorted((work / "runs").glob("*/state.pt"))
    if states:  # a run of ours cut short: it goes on from its last state, with the arguments it was started with
        command = [sys.executable, str(REPO / job.entry.script), "--resume", str(states[-1].parent.relative_to(work))]
    elif job.sb3:
        command = [sys.executable, str(REPO / "benchmark" / "sb3_train.py"), job.entry.script, job.entry.env_id,
                   "--seed", str(job.seed), "--total-timesteps", str(job.entry.budget), "--out", "tb",
                   "--checkpoint", "checkpoint", "--checkpoint-every", str(CHECKPOINT_EVERY)]
        command += ["--eval-episodes", str(EVAL_EPISODES)] if job.entry.evaluate else []
    else:
        command = [sys.executable, str(REPO / job.entry.script), "--env-id", job.entry.env_id, "--seed", str(job.seed),
                   "--total-timesteps", str(job.entry.budget), *job.entry.flags]
        command += ["--save-model", "--eval-episodes", str(EVAL_EPISODES)] if job.entry.evaluate else []
        command += ["--checkpoint-every", str(CHECKPOINT_EVERY)] if resumable else []
    if not states:
        command += ["--torch-threads", str(threads)]  # both sides take the flag
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if states and result.returncode == 2:  # its state cannot be resumed (it had finished, say): start over
        shutil.rmtree(work)
        return run_job(job, out, threads)
    (folder / "log.txt").write_text(result.stdout[-20000:] + result.stderr[-20000:])
    if result.returncode:
        raise RuntimeError(f"{job.name} failed (exit {result.returncode}); see {folder / 'log.txt'}")
    logs = work / "tb" if job.sb3 else next(path for path in (work / "runs").iterdir() if path.is_dir()
                                            and not path.name.endswith("-eval"))
    scalars = read_scalars(logs, wall_time=True)
    if job.entry.evaluate:  # the deterministic evaluation after training
        write_csv(folder / "eval.csv", [{"episode": step, "episodic_return": value}
                                        for step, value, _ in scalars["eval/episodic_return"]])
    write_csv(folder / "episodes.csv", tidy_rows(scalars))
    shutil.rmtree(work)
    return folder


def finished(out: Path, job: Job) -> bool:
    """Whether the job's run has finished: written its episodes.csv, and its eval.csv if its entry evaluates (a
    run from before the entry did is run again)."""
    folder = out / "runs" / job.name
    return (folder / "episodes.csv").exists() and (not job.entry.evaluate or (folder / "eval.csv").exists())


def finished_runs(out: Path, jobs: list) -> list:
    """(job, its episode rows) for each job whose training has finished (written its episodes.csv)."""
    paths = [(job, out / "runs" / job.name / "episodes.csv") for job in jobs]
    return [(job, read_csv(path)) for job, path in paths if path.exists()]


def summarize(out: Path, jobs: list) -> list:
    """Per (runner, env): mean +- std across seeds of the last-100-episode mean, final SPS, wall time."""
    groups = {}
    for job, rows_ in finished_runs(out, jobs):
        groups.setdefault((job.runner, job.entry), []).append((job.seed, rows_))
    rows = []
    for (runner, entry), runs in groups.items():
        finals = [statistics.mean(r["episodic_return"] for r in rows_[-LAST_EPISODES:]) for _, rows_ in runs]
        rows.append({
            "runner": runner, "env_id": entry.env_id, "budget": entry.budget,
            "seeds": " ".join(str(seed) for seed, _ in runs),
            "mean_return": round(statistics.mean(finals), 1),
            "std_return": round(statistics.stdev(finals), 1) if len(finals) > 1 else 0.0,
            "per_seed": " ".join(f"{f:.1f}" for f in finals),
            "final_sps": round(statistics.mean(rows_[-1]["sps"] for _, rows_ in runs)),
            "wall_time_s": round(statistics.mean(rows_[-1]["wall_time"] for _, rows_ in runs)),
        })
    return rows


def interval_estimates(ours: np.ndarray, reference: np.ndarray, reps: int | None = None, seed: int = 0) -> dict:
    """rliable's estimates for one env, from one score per seed on each side: the interquartile mean (IQM) of each
    side and the probability that a run of ours scores above one of the reference (ties count half), each with its
    95% stratified-bootstrap interval, and the verdict that follows: "ahead" or "behind" when the interval of that
    probability excludes 0.5, else "level"; "too few seeds" below MIN_SEEDS a side."""
    from rliable import library as rly
    from rliable import metrics

    reps = reps or BOOTSTRAP_REPS
    iqm = lambda scores: np.array([metrics.aggregate_iqm(scores)])  # noqa: E731
    np.random.seed(seed)  # rliable draws its bootstrap from NumPy's global generator
    points, intervals = rly.get_interval_estimates(
        {"ours": np.asarray(ours, float)[:, None], "reference": np.asarray(reference, float)[:, None]}, iqm, reps=reps)
    p, p_interval = rly.get_interval_estimates(
        {"pair": (np.asarray(ours, float)[:, None], np.asarray(reference, float)[:, None])},
        metrics.probability_of_improvement, reps=reps)
    low, high = p_interval["pair"][:, 0]
    return {"iqm_ours": points["ours"][0], "iqm_ours_ci": tuple(intervals["ours"][:, 0]),
            "iqm_reference": points["reference"][0], "iqm_reference_ci": tuple(intervals["reference"][:, 0]),
            "p_improvement": float(p["pair"]), "p_improvement_ci": (low, high),
            "verdict": verdict((low, high), min(len(ours), len(reference)))}


def verdict(p_interval: tuple, seeds: int) -> str:
    """"ahead" or "behind" when the interval of P(ours > reference) excludes 0.5, else "level"; "too few seeds"
    below MIN_SEEDS a side."""
    low, high = p_interval
    return "too few seeds" if seeds < MIN_SEEDS else "ahead" if low > 0.5 else "behind" if high < 0.5 else "level"


def aggregates(comparisons: list, reps: int | None = None, seed: int = 0) -> list:
    """Per (runner, reference, metric), over the envs compared on MIN_SEEDS seeds or more: the probability that a run
    of the runner scores above one of the reference on an env drawn at random among them (rliable's
    probability_of_improvement over tasks, on the first n seeds of each env, n the fewest among them), its 95%
    stratified-bootstrap interval (seeds resampled within each env) and its verdict."""
    from rliable import library as rly
    from rliable import metrics

    reps = reps or BOOTSTRAP_REPS
    groups, rows = {}, []
    for row in comparisons:
        if row["seeds"] >= MIN_SEEDS:
            groups.setdefault((row["runner"], row["reference"], row["metric"]), []).append(row)
    for (runner, reference, metric), envs in groups.items():
        n = min(env["seeds"] for env in envs)
        ours, theirs = (np.stack([env[side][:n] for env in envs], axis=1) for side in ("scores", "scores_reference"))
        np.random.seed(seed)  # rliable draws its bootstrap from NumPy's global generator
        p, interval = rly.get_interval_estimates({"pair": (ours, theirs)}, metrics.probability_of_improvement,
                                                 reps=reps)
        low, high = interval["pair"][:, 0]
        rows.append({"runner": runner, "reference": reference, "metric": metric,
                     "envs": " ".join(env["env_id"] for env in envs), "seeds": n, "p_improvement": float(p["pair"]),
                     "p_improvement_ci": (low, high), "verdict": verdict((low, high), n)})
    return rows


def final_scores(out: Path, jobs: list) -> dict:
    """{(runner, env): {seed: (mean of the last 100 training episodes, mean deterministic evaluation or nan)}}"""
    scores = {}
    for job, rows in finished_runs(out, jobs):
        evaluation = out / "runs" / job.name / "eval.csv"
        scores.setdefault((job.runner, job.entry.env_id), {})[job.seed] = (
            statistics.mean(r["episodic_return"] for r in rows[-LAST_EPISODES:]),
            statistics.mean(r["episodic_return"] for r in read_csv(evaluation)) if evaluation.exists() else float("nan"))
    return scores


def compare(out: Path, jobs: list) -> list:
    """Each runner of a (script, env) against that row's reference, on the seeds both finished: the SB3 twin, or
    where the script runs as variants, its first variant. Both metrics, with interval_estimates'."""
    scores, rows = final_scores(out, jobs), []
    for env_id in dict.fromkeys(job.entry.env_id for job in jobs):
        for script in dict.fromkeys(job.entry.script for job in jobs):
            runners = list(dict.fromkeys(job.runner for job in jobs if job.entry.script == script
                                         and job.entry.env_id == env_id and (job.runner, env_id) in scores))
            reference = next((r for r in runners if r.startswith("sb3-")), runners[0] if runners else None)
            for runner in runners:
                if runner == reference:
                    continue
                ours, theirs = scores[(runner, env_id)], scores[(reference, env_id)]
                for index, metric in enumerate(("last 100 training episodes", "deterministic evaluation")):
                    seeds = [s for s in sorted(set(ours) & set(theirs))
                             if not np.isnan(ours[s][index]) and not np.isnan(theirs[s][index])]
                    a, b = np.array([ours[s][index] for s in seeds]), np.array([theirs[s][index] for s in seeds])
                    if not seeds:  # one seed a side still makes a row: its verdict says it cannot separate them
                        continue
                    rows.append({"env_id": env_id, "runner": runner, "reference": reference, "metric": metric,
                                 "seeds": len(seeds), "mean": a.mean(), "mean_reference": b.mean(),
                                 "scores": a, "scores_reference": b, **interval_estimates(a, b)})
    return rows


def plot(out: Path, jobs: list):
    """One PNG per env with a finished run: every runner's return against env steps, mean and std band across
    seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = finished_runs(out, jobs)
    for env_id in sorted({job.entry.env_id for job, _ in runs}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for runner in sorted({job.runner for job, _ in runs if job.entry.env_id == env_id}):
            curves, budget = [], None
            for job, rows in runs:
                if job.runner == runner and job.entry.env_id == env_id:
                    budget = job.entry.budget
                    steps = np.array([r["global_step"] for r in rows])
                    returns = np.array([r["episodic_return"] for r in rows])
                    smoothed = np.convolve(returns, np.ones(10) / 10, mode="valid") if len(returns) >= 10 else returns
                    curves.append((steps[len(steps) - len(smoothed):], smoothed))
            grid = np.linspace(max(steps[0] for steps, _ in curves), budget, 200)  # where every seed has data
            values = np.array([np.interp(grid, steps, returns) for steps, returns in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(grid, mean, label=f"{runner} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
        ax.set(title=env_id, xlabel="env steps", ylabel="episodic return (10-episode mean)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{env_id.replace('/', '-')}.png", dpi=100)
        plt.close(fig)


def report(out: Path, jobs: list) -> tuple[list, list]:
    """summary.csv, summary.md, comparison.md and the pictures from the finished runs; returns (summary rows,
    comparison rows)."""
    rows = summarize(out, jobs)
    if not rows:
        print("no finished runs yet")
        return [], []
    write_csv(out / "summary.csv", rows)
    lines = ["| runner | env | budget | seeds | mean +- std (last 100 episodes) | per seed | final SPS | wall time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['runner']} | {r['env_id']} | {r['budget']} | {r['seeds']} | {r['mean_return']} +- "
              f"{r['std_return']} | {r['per_seed']} | {r['final_sps']} | {r['wall_time_s']} |" for r in rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    comparisons = compare(out, jobs)
    if comparisons:
        ci = lambda interval: f"[{interval[0]:.2f}, {interval[1]:.2f}]"  # noqa: E731
        lines = ["| env | runner | reference | metric | seeds | mean (reference) | IQM [95% CI] | reference IQM "
                 "[95% CI] | P(runner > reference) [95% CI] | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['env_id']} | {r['runner']} | {r['reference']} | {r['metric']} | {r['seeds']} | "
                  f"{r['mean']:.1f} ({r['mean_reference']:.1f}) | {r['iqm_ours']:.1f} {ci(r['iqm_ours_ci'])} | "
                  f"{r['iqm_reference']:.1f} {ci(r['iqm_reference_ci'])} | {r['p_improvement']:.2f} "
                  f"{ci(r['p_improvement_ci'])} | {r['verdict']} |" for r in comparisons]
        overall = aggregates(comparisons)
        if overall:
            lines += ["", f"Per algorithm, over its envs with {MIN_SEEDS} seeds or more a side (the first n seeds of each):",
                      "", "| runner | reference | metric | envs | seeds | P(runner > reference) [95% CI] | verdict |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {r['runner']} | {r['reference']} | {r['metric']} | {r['envs']} | {r['seeds']} | "
                      f"{r['p_improvement']:.2f} {ci(r['p_improvement_ci'])} | {r['verdict']} |" for r in overall]
            plot_aggregates(out, overall)
        (out / "comparison.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    plot(out, jobs)
    return rows, comparisons


def plot_aggregates(out: Path, overall: list):
    """rliable's picture of the per-algorithm probabilities of improvement with their intervals:
    probability_of_improvement.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    short = {"last 100 training episodes": "training", "deterministic evaluation": "evaluation"}
    pairs = {f"{r['runner']} ({short[r['metric']]}),{r['reference']}": r for r in overall}
    ax = plot_utils.plot_probability_of_improvement(
        {pair: np.array([r["p_improvement"]]) for pair, r in pairs.items()},
        {pair: np.array(r["p_improvement_ci"])[:, None] for pair, r in pairs.items()},
        figsize=(6, 0.5 + 0.45 * len(pairs)), left_ylabel="ours", right_ylabel="reference", ticklabelsize="small",
        labelsize="medium")
    ax.figure.savefig(out / "probability_of_improvement.png", dpi=100, bbox_inches="tight")
    plt.close(ax.figure)


def main(profile: Literal[tuple(PROFILES)] = "quick", jobs: int = os.cpu_count() or 1, report_only: bool = False,
         results: Path = REPO / "benchmark" / "results", scripts: tuple[str, ...] = (), envs: tuple[str, ...] = (),
         seeds: tuple[int, ...] = (), side: Literal["both", "ours", "sb3"] = "both", threads: int = 1):
    """Run a profile's unfinished runs, `jobs` at a time (`threads` torch threads each), then report.

    Args:
        profile: which list of entries to run.
        jobs: runs at once; the machine's core count by default.
        report_only: only rebuild the tables and plots from the finished runs.
        results: where results/{profile}/ goes.
        scripts: run only these scripts' rows (and their SB3 twins); all by default.
        envs: run only these envs' rows; all by default.
        seeds: run only these seeds; all by default.
        side: run the scripts' rows and their SB3 twins (both), or one side of them.
        threads: torch threads per run. 1 with one run per core; jobs x threads at most the core count.
    """
    if threads < 1:
        sys.exit(f"run.py: error: --threads must be positive, got {threads}")
    out = results / profile
    all_jobs = jobs_of(PROFILES[profile])
    for name, chosen, known in (("script", scripts, {job.entry.script for job in all_jobs}),
                                ("env", envs, {job.entry.env_id for job in all_jobs}),
                                ("seed", seeds, {job.seed for job in all_jobs})):
        if set(chosen) - known:
            sys.exit(f"run.py: error: profile {profile} has no {name} {', '.join(map(str, set(chosen) - known))}; "
                     f"it has {', '.join(sorted(map(str, known)))}")
    # The selection only chooses what runs: the summary and the pictures cover every finished run of the profile.
    selected = select(all_jobs, scripts, envs, seeds, side)
    todo = [job for job in selected if not finished(out, job)]
    # Seed by seed, each script's run before its SB3 twin: a benchmark cut short has a row for everything, and
    # pairs of seeds to compare.
    todo.sort(key=lambda job: (job.seed, job.sb3))
    if not report_only and todo:
        from tqdm import tqdm

        print(f"{len(selected) - len(todo)} of {len(selected)} selected runs already finished; running {len(todo)}")
        failures = []
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool, tqdm(total=len(todo), unit="run") as bar:
            futures = {pool.submit(run_job, job, out, threads): job for job in todo}
            for future in as_completed(futures):
                try:
                    future.result()
                except Exception as e:  # one failed run must not stop the others
                    failures.append(f"{futures[future].name}: {e}")
                bar.set_postfix_str(futures[future].name)
                bar.update()
        for failure in failures:
            print(failure, file=sys.stderr)
    report(out, all_jobs)


if __name__ == "__main__":
    tyro.cli(main)
