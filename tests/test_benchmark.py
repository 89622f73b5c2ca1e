"""The benchmark runner's bookkeeping: tidy rows from logs, CleanRL's final-return metric, resumption; what
update_speed.py replays."""

import pickle
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import ddpg_continuous
from benchmark import run, update_speed
from tests.helpers import read_scalars


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    """rliable's bootstrap with 200 resamples instead of 2000: the intervals these tests check are exact or wide."""
    monkeypatch.setattr(run, "BOOTSTRAP_REPS", 200)


def test_tidy_rows_pair_each_episode_with_the_latest_sps():
    scalars = {"charts/episodic_return": [(10, 1.0, 100.0), (30, 2.0, 101.5), (50, 3.0, 103.0)],
               "charts/SPS": [(20, 500.0, 101.0), (40, 700.0, 102.0)]}
    rows = run.tidy_rows(scalars)
    assert [(r["global_step"], r["wall_time"], r["episodic_return"]) for r in rows] == [
        (10, 0.0, 1.0), (30, 1.5, 2.0), (50, 3.0, 3.0)]
    assert [r["sps"] for r in rows] == ["", 500.0, 700.0]  # no SPS logged before step 10 yet


def finish(out, job, returns):
    """Write the episodes.csv of a finished run of `job`: one episode per step, at 100 SPS."""
    folder = out / "runs" / job.name
    folder.mkdir(parents=True)
    run.write_csv(folder / "episodes.csv", [{"global_step": i, "wall_time": i / 10, "episodic_return": r,
                                             "sps": 100.0} for i, r in enumerate(returns)])


def test_summary_is_the_mean_of_the_last_100_episodes_across_seeds(tmp_path):
    entry = run.Entry("ppo.py", "CartPole-v1", 1000, seeds=(1, 2))
    jobs = run.jobs_of([entry])
    for job, offset in zip(jobs, (0.0, 10.0)):
        # 150 episodes: 50 early ones at -1000 that the metric must ignore, then 100 at offset + 0..99
        finish(tmp_path, job, [-1000.0] * 50 + [offset + i for i in range(100)])
    (row,) = run.summarize(tmp_path, jobs)
    assert row["mean_return"] == pytest.approx(54.5)  # seeds at 49.5 and 59.5
    assert row["std_return"] == pytest.approx(7.1, abs=0.05)
    assert row["seeds"] == "1 2" and row["final_sps"] == 100


def test_interval_estimates_match_what_the_scores_imply():
    pytest.importorskip("rliable")  # benchmark/requirements.txt
    # every run of ours above every reference run: P = 1 in every resample; the IQM of 0..9 is the mean of the
    # middle half, 2.5 values trimmed each side: (2.5 * 2 + 3 + 4 + 5 + 6 + 2.5 * 7) / 5 = 4.5
    ahead = run.interval_estimates(np.arange(10.0) + 100, np.arange(10.0))
    assert ahead["verdict"] == "ahead" and ahead["p_improvement"] == 1.0 and ahead["p_improvement_ci"] == (1.0, 1.0)
    assert ahead["iqm_reference"] == pytest.approx(4.5) and ahead["iqm_ours"] == pytest.approx(104.5)
    low, high = ahead["iqm_reference_ci"]
    assert 0 < low < 4.5 < high < 9
    assert run.interval_estimates(np.arange(10.0), np.arange(10.0) + 100)["verdict"] == "behind"
    # the same scores on both sides: P = 0.5 exactly (ties count half), and its interval holds 0.5
    same = run.interval_estimates(np.arange(10.0), np.arange(10.0))
    assert same["p_improvement"] == pytest.approx(0.5) and same["verdict"] == "level"
    assert same["p_improvement_ci"][0] < 0.5 < same["p_improvement_ci"][1]


def test_each_variant_is_compared_with_the_first_on_both_metrics(tmp_path):
    pytest.importorskip("rliable")
    jobs = run.jobs_of([run.Entry("a2c.py", "Pendulum-v1", 100, (1, 2, 3, 4), variant=v) for v in ("normalized", "clip")])
    for job in jobs:  # clip's training returns above normalized's; its evaluation level with it
        finish(tmp_path, job, [100.0 * job.seed + (1000 if job.runner.endswith("clip") else 0)] * 100)
        run.write_csv(tmp_path / "runs" / job.name / "eval.csv", [{"episode": 0, "episodic_return": float(job.seed)}])
    training, evaluation = run.compare(tmp_path, jobs)
    assert (training["runner"], training["reference"], training["seeds"]) == ("a2c.py+clip", "a2c.py+normalized", 4)
    assert training["metric"] == "last 100 training episodes" and training["verdict"] == "ahead"
    assert training["mean"] == pytest.approx(1250.0) and training["mean_reference"] == pytest.approx(250.0)
    assert evaluation["metric"] == "deterministic evaluation" and evaluation["p_improvement"] == pytest.approx(0.5)
    assert evaluation["verdict"] == "level"


def test_a_row_with_one_seed_a_side_is_compared_and_says_it_cannot_separate_them(tmp_path):
    pytest.importorskip("rliable")
    # the Atari rows' shape: one seed a side, training metric only (no eval.csv)
    jobs = run.jobs_of([run.Entry("ppo_atari.py", "BreakoutNoFrameskip-v4", 100, (1,), sb3=True)])
    for job in jobs:
        finish(tmp_path, job, [20.0 if job.sb3 else 30.0] * 100)
    (row,) = run.compare(tmp_path, jobs)
    assert (row["runner"], row["reference"], row["seeds"]) == ("ppo_atari.py", "sb3-ppo_atari.py", 1)
    assert row["metric"] == "last 100 training episodes" and row["mean"] == 30.0 and row["mean_reference"] == 20.0
    assert row["verdict"] == "too few seeds"
    assert run.aggregates([row]) == []  # below MIN_SEEDS: no per-algorithm aggregate


def test_the_per_algorithm_probability_averages_its_envs_with_enough_seeds(tmp_path):
    pytest.importorskip("rliable")
    # ours above SB3 on every seed of CartPole (P = 1), below on every seed of Acrobot (P = 0): the average over
    # the two envs is 0.5 in every stratified resample, so its interval is [0.5, 0.5]. MountainCar has 3 seeds a
    # side only, below MIN_SEEDS: it stays out of the aggregate (and Acrobot's 5th seed, beyond CartPole's 4, too).
    seeds = {"CartPole-v1": (1, 2, 3, 4), "Acrobot-v1": (1, 2, 3, 4, 5), "MountainCar-v0": (1, 2, 3)}
    jobs = run.jobs_of([run.Entry("dqn.py", env_id, 100, s, sb3=True) for env_id, s in seeds.items()])
    for job in jobs:
        ours_ahead = (job.runner == "dqn.py") == (job.entry.env_id != "Acrobot-v1")
        finish(tmp_path, job, [float(job.seed) + (100 if ours_ahead else 0)] * 100)
    (overall,) = run.aggregates(run.compare(tmp_path, jobs))
    assert (overall["runner"], overall["reference"], overall["metric"]) == ("dqn.py", "sb3-dqn.py",
                                                                           "last 100 training episodes")
    assert overall["envs"] == "CartPole-v1 Acrobot-v1" and overall["seeds"] == 4
    assert overall["p_improvement"] == pytest.approx(0.5) and overall["p_improvement_ci"] == pytest.approx((0.5, 0.5))
    assert overall["verdict"] == "level"
    # ahead on both envs: P = 1, ahead
    for job in jobs:
        if job.entry.env_id == "Acrobot-v1":
            run.write_csv(tmp_path / "runs" / job.name / "episodes.csv", [
                {"global_step": i, "wall_time": i / 10, "sps": 100.0,
                 "episodic_return": float(job.seed) + (100 if job.runner == "dqn.py" else 0)} for i in range(100)])
    (overall,) = run.aggregates(run.compare(tmp_path, jobs))
    assert overall["p_improvement"] == 1.0 and overall["verdict"] == "ahead"
    pytest.importorskip("matplotlib")
    run.plot_aggregates(tmp_path, [overall])
    assert (tmp_path / "probability_of_improvement.png").stat().st_size > 0


def test_curves_are_drawn_only_for_envs_with_a_finished_run(tmp_path):
    pytest.importorskip("matplotlib")  # benchmark/requirements.txt
    jobs = run.jobs_of([run.Entry("ppo.py", "CartPole-v1", 200, seeds=(1, 2), sb3=True),
                        run.Entry("ddpg_continuous.py", "Hopper-v4", 200, seeds=(1,))])
    finish(tmp_path, jobs[0], [float(i) for i in range(200)])  # ppo.py's seed 1; nothing else has finished
    run.plot(tmp_path, jobs)
    assert sorted(path.name for path in tmp_path.glob("*.png")) == ["CartPole-v1.png"]


def test_sb3_entries_double_the_jobs_and_names_are_distinct():
    jobs = run.jobs_of([run.Entry("dqn.py", "Acrobot-v1", 1000, seeds=(1, 2, 3), sb3=True)])
    assert len(jobs) == 6 and len({job.name for job in jobs}) == 6
    assert {job.runner for job in jobs} == {"dqn.py", "sb3-dqn.py"}


def test_variants_of_one_script_are_runners_of_their_own_that_run_the_script(tmp_path, monkeypatch):
    jobs = run.jobs_of([run.Entry("a2c.py", "Pendulum-v1", 1000, (1, 2), ("--action-mapping", mapping), variant=mapping)
                        for mapping in ("normalized", "clip")])
    assert {job.runner for job in jobs} == {"a2c.py+normalized", "a2c.py+clip"} and len({j.name for j in jobs}) == 4
    assert {job.name for job in run.select(jobs, scripts=("a2c.py",), seeds=(2,))} == {
        "a2c+normalized__Pendulum-v1__2", "a2c+clip__Pendulum-v1__2"}
    seen = {}
    monkeypatch.setattr(run.subprocess, "run", lambda command, **kwargs: seen.update(command=command) or
                        subprocess.CompletedProcess(command, 1, "", ""))
    with pytest.raises(RuntimeError, match="failed"):
        run.run_job(jobs[-1], tmp_path)
    assert seen["command"][1] == str(run.REPO / "a2c.py") and "clip" in seen["command"]


def test_selection_keeps_the_chosen_scripts_envs_and_seeds_with_their_sb3_twins():
    jobs = run.jobs_of([run.Entry("ppo.py", "CartPole-v1", 1000, sb3=True), run.Entry("ppo.py", "Hopper-v4", 1000),
                        run.Entry("dqn.py", "CartPole-v1", 1000)])
    assert run.select(jobs) == jobs
    assert {job.name for job in run.select(jobs, scripts=("ppo.py",), envs=("CartPole-v1",), seeds=(2,))} == {
        "ppo__CartPole-v1__2", "sb3-ppo__CartPole-v1__2"}
    assert {job.entry.script for job in run.select(jobs, envs=("CartPole-v1",))} == {"ppo.py", "dqn.py"}
    assert {job.name for job in run.select(jobs, envs=("CartPole-v1",), seeds=(1,), side="sb3")} == {
        "sb3-ppo__CartPole-v1__1"}
    assert not any(job.sb3 for job in run.select(jobs, side="ours"))


@pytest.mark.parametrize("runner", ["ddpg_continuous.py", "sb3-ddpg_continuous.py"])
def test_both_sides_run_on_the_threads_asked_for(tmp_path, monkeypatch, runner):
    seen = {}

    def fake_run(command, env, **kwargs):  # stands in for the training process, which fails at once
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 1, "", "")

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    job = run.Job(runner, run.Entry("ddpg_continuous.py", "Hopper-v4", 1000), 1)
    with pytest.raises(RuntimeError, match="failed"):
        run.run_job(job, tmp_path, threads=2)
    assert seen["command"][-2:] == ["--torch-threads", "2"]
    assert seen["env"]["OMP_NUM_THREADS"] == seen["env"]["MKL_NUM_THREADS"] == "2"


def train_sb3_ddpg_on_pendulum(folder: Path, total: int) -> str:
    """SB3's DDPG on Pendulum (200-step episodes), a checkpoint every 400 steps, in `folder`; its stdout."""
    pytest.importorskip("stable_baselines3")  # benchmark/requirements.txt
    return subprocess.run([sys.executable, str(run.REPO / "benchmark" / "sb3_train.py"), "ddpg_continuous.py",
                           "Pendulum-v1", "--total-timesteps", str(total), "--out", "tb", "--checkpoint", "ck",
                           "--checkpoint-every", "400"], cwd=folder, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_an_sb3_run_cut_short_resumes_from_its_checkpoint(tmp_path):
    # A run stopped at step 1000 stands for one cut short after its checkpoint at 800.
    train_sb3_ddpg_on_pendulum(tmp_path, 1000)
    stopped_at_1000 = read_scalars(tmp_path / "tb")["charts/episodic_return"]
    assert "resuming" in train_sb3_ddpg_on_pendulum(tmp_path, 1600)
    # The resumed run started from step 800: the episode the stopped run finished at step 1000 is dropped from
    # the log, and the resumed run's own episodes follow, one per 200 steps, each logged once.
    episodes = read_scalars(tmp_path / "tb")["charts/episodic_return"]
    assert [step for step, _ in episodes] == list(range(200, 1601, 200))
    assert episodes[:4] == stopped_at_1000[:4] and episodes[4] != stopped_at_1000[4]
    # The last checkpoint, at 1200, holds every transition since the start: the buffer came back with the model.
    with open(tmp_path / "ck" / "replay_buffer.pkl", "rb") as f:
        assert pickle.load(f).pos == 1200


@pytest.mark.slow
def test_an_sb3_run_cut_short_before_its_first_checkpoint_starts_over_with_a_clean_log(tmp_path):
    train_sb3_ddpg_on_pendulum(tmp_path, 300)  # stopped before the checkpoint at 400: nothing to resume
    assert "resuming" not in train_sb3_ddpg_on_pendulum(tmp_path, 600)
    # The first start's episode at step 200 is not logged twice: the new run's log replaces it.
    assert [step for step, _ in read_scalars(tmp_path / "tb")["charts/episodic_return"]] == [200, 400, 600]


@pytest.mark.slow
def test_update_speed_records_each_matrix_product_of_a_ddpg_update(restores_the_products_route):
    # An update with the actor step (Pendulum's sizes: 3 observations, 1 action): 15 products forward, five passes
    # through three layers (the target actor and critic, the critic, the actor, the critic on the actor's
    # actions), and 13 backward (the critic's 5; 3 through the frozen critic and 5 in the actor). Ten of them
    # multiply two 256x256 matrices. An update without the actor step has 9 + 5.
    ddpg = ddpg_continuous.DDPG(3, gym.spaces.Box(-2.0, 2.0, (1,)), 3e-4, torch.device("cpu"))
    batch = (torch.randn(256, 3), torch.rand(256, 1), torch.randn(256), torch.randn(256, 3), torch.zeros(256))
    with update_speed.RecordProducts() as recorder:
        ddpg.update(*batch, 0.99, 0.005, True)
    assert len(recorder.calls) == 28
    assert sum(all(m.shape == (256, 256) for m in operands[-2:]) for _, operands, _ in recorder.calls) == 10
    measured = update_speed.measure("Pendulum-v1", steps=4, threads=torch.get_num_threads(), policy_frequency=2,
                                    batch_size=256, onednn=True)
    assert measured["products_per_step"] == (28 + 14) / 2  # policy_frequency 2: the actor every second update


def test_below_min_seeds_a_comparison_gives_no_verdict():
    pytest.importorskip("rliable")
    few = np.arange(float(run.MIN_SEEDS - 1))
    assert run.interval_estimates(few + 100, few)["verdict"] == "too few seeds"
    enough = np.arange(float(run.MIN_SEEDS))
    assert run.interval_estimates(enough + 100, enough)["verdict"] == "ahead"


@pytest.mark.parametrize("runner", ["a2c.py", "sb3-a2c.py"])
def test_an_entry_that_evaluates_asks_both_sides_for_the_evaluation(tmp_path, monkeypatch, runner):
    seen = {}
    monkeypatch.setattr(run.subprocess, "run", lambda command, **kwargs: seen.update(command=command) or
                        subprocess.CompletedProcess(command, 1, "", ""))
    job = run.Job(runner, run.Entry("a2c.py", "CartPole-v1", 1000, evaluate=True), 1)
    with pytest.raises(RuntimeError, match="failed"):
        run.run_job(job, tmp_path)
    command = " ".join(seen["command"])
    assert f"--eval-episodes {run.EVAL_EPISODES}" in command
    assert ("--save-model" in command) == (runner == "a2c.py")


def test_a_run_of_an_evaluating_entry_without_its_evaluation_runs_again_and_counts_for_training_only(tmp_path):
    pytest.importorskip("rliable")
    jobs = run.jobs_of([run.Entry("dqn.py", "Acrobot-v1", 100, (1, 2, 3, 4, 5), sb3=True, evaluate=True)])
    for job in jobs:  # ours above SB3 on both metrics; seed 5 of ours finished before the entry evaluated
        finish(tmp_path, job, [float(job.seed) + (0 if job.sb3 else 100)] * 100)
        if not (job.seed == 5 and not job.sb3):
            run.write_csv(tmp_path / "runs" / job.name / "eval.csv",
                          [{"episode": 0, "episodic_return": float(job.seed) + (0 if job.sb3 else 100)}])
    assert [job.name for job in jobs if not run.finished(tmp_path, job)] == ["dqn__Acrobot-v1__5"]
    training, evaluation = run.compare(tmp_path, jobs)
    assert (training["seeds"], evaluation["seeds"]) == (5, 4)
    assert training["verdict"] == evaluation["verdict"] == "ahead"


def test_sb3_train_logs_its_deterministic_evaluation_in_env_units(tmp_path):
    pytest.importorskip("stable_baselines3")
    # a2c.py's continuous twin normalizes observations and rewards: the evaluation reports the env's own returns,
    # which on InvertedPendulum are the episode lengths (reward 1 a step, at most 1000 steps)
    subprocess.run([sys.executable, str(run.REPO / "benchmark" / "sb3_train.py"), "a2c.py", "InvertedPendulum-v4",
                    "--total-timesteps", "800", "--out", "tb", "--eval-episodes", "3"], cwd=tmp_path, check=True,
                   capture_output=True)
    evaluation = read_scalars(tmp_path / "tb")["eval/episodic_return"]
    assert [step for step, _ in evaluation] == [0, 1, 2]
    assert all(value == int(value) and 1 <= value <= 1000 for _, value in evaluation)


def test_a_run_of_a_script_cut_short_goes_on_from_its_last_state(tmp_path, monkeypatch):
    commands = []

    def fake_run(command, cwd, **kwargs):  # the resumed run finds its state finished (exit 2); the fresh one fails
        commands.append((command, sorted(path.name for path in Path(cwd).glob("runs/*/state.pt"))))
        return subprocess.CompletedProcess(command, 2 if "--resume" in command else 1, "", "")

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    job = run.Job("a2c.py", run.Entry("a2c.py", "CartPole-v1", 1000), 1)
    state = tmp_path / "runs" / job.name / "work" / "runs" / "CartPole-v1__a2c__1__1" / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"")
    with pytest.raises(RuntimeError, match="failed"):
        run.run_job(job, tmp_path)
    (resumed, states), (fresh, none) = commands
    assert resumed[2:] == ["--resume", "runs/CartPole-v1__a2c__1__1"] and states == ["state.pt"]
    # a state that cannot be resumed: the run starts over, in an empty folder, writing states of its own
    assert none == [] and " ".join(fresh[-4:]) == f"--checkpoint-every {run.CHECKPOINT_EVERY} --torch-threads 1"
    # every script that has --resume is resumed by the runner
    assert set(run.RESUMABLE) == {p.name for p in run.REPO.glob("*.py") if "resume: str | None" in p.read_text()}


def test_doc_tables_rewrite_only_the_marked_tables_from_the_runs(tmp_path):
    from benchmark import doc_tables

    summary = [{"runner": runner, "env_id": "CartPole-v1", "budget": "500000", "seeds": seeds, "mean_return": mean,
                "std_return": std} for runner, seeds, mean, std in (("dqn.py", "1 2 3", "470.0", "22.8"),
                                                                    ("sb3-dqn.py", "1", "9.5", "0.0"))]
    table = doc_tables.all_rows(summary)
    assert table.splitlines()[2] == ("| `dqn.py` | CartPole-v1 | 500k | 470.0 +- 22.8 (3 seeds) | 488.7 (CleanRL "
                                     "`dqn.py`) | 9.5 (1 seed) |")
    comparison = {"runner": "dqn.py", "env_id": "CartPole-v1", "metric": "last 100 training episodes", "seeds": 1,
                  "mean": 470.0, "mean_reference": 9.5, "p_improvement": 1.0, "p_improvement_ci": (1.0, 1.0),
                  "verdict": "too few seeds"}
    row = doc_tables.script_rows(summary, [comparison], "dqn.py").splitlines()[2]
    assert row.endswith("| last 100 training episodes | 1 | 470.0 (9.5) | 1.00 [1.00, 1.00] | too few seeds |")
    document = "text\n<!-- results: all -->\nold\n<!-- /results -->\nmore\n<!-- results: a2c.py -->\nkept\n<!-- /results -->\n"
    assert doc_tables.rewrite(document, {"all": "new"}) == document.replace("old", "new")
