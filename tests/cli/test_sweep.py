"""Sweeps: every sweeps/ file checks against the real signatures; the offline runner samples,
refuses bad parameters before running anything, runs trials and ranks them."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from helpers import REPO, run_cli

from lit_tasks import sweep as sweeps
from lit_tasks.commands import main
from lit_tasks.errors import find_user_error

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
RECIPE = "configs/image_classification/vit_fashion_mnist.yaml"
COMMAND = ["${env}", "python", "-m", "lit_tasks", "fit", "--config", RECIPE, "${args}"]


def write_sweep(path: Path, parameters: dict, method: str = "random", command: list[str] = COMMAND, **extra) -> Path:
    config = {"program": "lit_tasks/__main__.py", "method": method, "metric": {"name": "val/acc", "goal": "maximize"},
              "command": command, "parameters": parameters, **extra}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_sweep_files_exist_for_every_image_recipe():
    recipes = {p.stem for p in (REPO / "configs" / "image_classification").glob("*.yaml")}
    assert recipes <= {p.stem for p in SWEEPS}


@pytest.mark.parametrize("file", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_sweep_file_checks_against_the_config(file, monkeypatch):
    monkeypatch.chdir(REPO)  # commands name their config relative to the repository root
    text = file.read_text()
    assert "wandb sweep" in text and "python -m lit_tasks sweep" in text, "a sweep file states both ways to run it"
    sweep = sweeps.load(file.relative_to(REPO))
    assert (sweep.metric, sweep.goal) == ("val/acc", "maximize")
    config = sweep.cli_args[sweep.cli_args.index("--config") + 1]
    assert (REPO / config).is_file() and "${args}" in sweep.cli_args
    trials = sweeps.sample(sweep, 4, seed=0)
    assert len(trials) == 4 and all(set(t) == {p.key for p in sweep.parameters} for t in trials)
    sweeps.validate(sweep, trials)  # raises SweepError on any key or value the CLI would refuse


def test_args_render_as_the_wandb_agent_does():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    params = {"model.lr": 1e-05, "data.batch_size": 32, "run.loggers": ["csv"], "data.hflip": False, "model.top_k": 3}
    agent = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    assert sweeps.render(params) == agent["args"]
    assert sweeps.render(params, "${args_no_equals}") == agent["args_no_equals"]


def assert_clear_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    message = stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in message, (needle, message)


def test_bad_parameter_key_stops_the_sweep_before_any_trial(tmp_path):
    file = write_sweep(tmp_path / "bad_key.yaml", {"model.lr": {"values": [0.001]}, "model.lrr": {"values": [0.1]}})
    result = run_cli("sweep", str(file), "--count", "2", "--root", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert_clear_error(result.stderr, str(file), "'model.lrr'", "lrr' is not accepted")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("parameters, needles", [
    ({"model.lr": {"distribution": "log_uniformm", "min": 1e-4, "max": 1e-2}},
     ["'model.lr'", "unknown distribution 'log_uniformm'"]),
    ({"data.batch_size": {"values": [32, "big"]}}, ["'data.batch_size' = 'big'", "int"]),
    ({"data.batch_size": {"distribution": "uniform", "min": 16, "max": 64}}, ["'data.batch_size'", "int"]),
    ({"trainer.max_epochz": {"value": 3}}, ["'trainer.max_epochz'", "no such config key"]),
    ({"model.lr": {"distribution": "log_uniform_values", "min": 0.0, "max": 1e-2}}, ["'model.lr'", "min > 0"]),
    ({"model.lr": {"values": [0.001], "step": 2}}, ["'model.lr'", "unknown key 'step'"]),
], ids=["distribution", "value-type", "distribution-type", "trainer-key", "log-bounds", "spec-key"])
def test_bad_parameter_is_one_line_naming_file_and_parameter(tmp_path, capsys, monkeypatch, parameters, needles):
    monkeypatch.chdir(REPO)
    file = write_sweep(tmp_path / "bad.yaml", parameters)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(file), "--count", "2", "--root", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert_clear_error(err, str(file), *needles)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config, needle", [
    ({"method": "bayes"}, "online"),
    ({"command": ["${env}", "python", "train.py", "${args}"]}, "command"),
    ({"command": COMMAND[:-1]}, "${args}"),
    ({"metric": {"name": "val/acc", "goal": "up"}}, "metric.goal"),
    ({"early_stop": 3}, "'early_stop'"),
])
def test_bad_sweep_file_is_a_user_error(tmp_path, config, needle):
    file = write_sweep(tmp_path / "bad.yaml", {"model.lr": {"values": [0.001]}}, **{"method": "random", **config})
    with pytest.raises(sweeps.SweepError) as error:
        sweeps.sample(sweeps.load(file), 2, seed=0)
    assert str(file) in str(error.value) and needle in str(error.value)
    assert find_user_error(error.value) is error.value


DISTRIBUTIONS = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
    "exp": {"distribution": "log_uniform", "min": -2.0, "max": 1.0},
    "inv": {"distribution": "inv_log_uniform_values", "min": 1e-3, "max": 1.0},
    "wd": {"min": 0.0, "max": 0.3},  # no distribution: uniform (float bounds)
    "layers": {"min": 2, "max": 6},  # no distribution: int_uniform (integer bounds)
    "batch": {"distribution": "q_log_uniform_values", "min": 16, "max": 256, "q": 8},
    "width": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25},
    "smooth": {"values": [0.0, 0.1], "probabilities": [0.8, 0.2]},
    "fixed": {"value": "x"},
}


def test_random_sampling_is_seeded_and_respects_bounds(tmp_path):
    sweep = sweeps.load(write_sweep(tmp_path / "dists.yaml", DISTRIBUTIONS))
    trials = sweeps.sample(sweep, 2000, seed=3)
    assert trials == sweeps.sample(sweep, 2000, seed=3)
    assert trials != sweeps.sample(sweep, 2000, seed=4)
    column = {key: [t[key] for t in trials] for key in DISTRIBUTIONS}
    assert all(1e-5 <= v <= 1e-1 for v in column["lr"])
    assert 0.4 < sum(v < 1e-3 for v in column["lr"]) / len(trials) < 0.6  # log-uniform: median at the geometric mean
    assert all(math.exp(-2) <= v <= math.exp(1) for v in column["exp"])
    assert all(1e-3 <= v <= 1.0 for v in column["inv"])
    assert 0.4 < sum(v < math.sqrt(1e-3) for v in column["inv"]) / len(trials) < 0.6
    assert all(isinstance(v, float) and 0.0 <= v <= 0.3 for v in column["wd"])
    assert set(column["layers"]) == {2, 3, 4, 5, 6} and all(type(v) is int for v in column["layers"])
    assert all(type(v) is int and v % 8 == 0 and 16 <= v <= 256 for v in column["batch"])
    assert set(column["width"]) == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert 0.75 < column["smooth"].count(0.0) / len(trials) < 0.85
    assert set(column["fixed"]) == {"x"}


def test_grid_is_the_product_in_written_order(tmp_path):
    parameters = {"b": {"values": [1, 2]}, "a": {"values": ["x", "y", "z"]}, "c": {"value": 7},
                  "n": {"distribution": "int_uniform", "min": 1, "max": 2}}
    sweep = sweeps.load(write_sweep(tmp_path / "grid.yaml", parameters, method="grid"))
    trials = sweeps.sample(sweep, None, seed=0)
    assert [(t["b"], t["a"], t["n"]) for t in trials] == [
        (b, a, n) for b in (1, 2) for a in ("x", "y", "z") for n in (1, 2)]
    assert all(t["c"] == 7 for t in trials)
    assert sweeps.sample(sweep, 3, seed=0) == trials[:3]
    assert sweeps.sample(sweep, 3, seed=5) == trials[:3]  # the seed plays no part in a grid
    continuous = sweeps.load(write_sweep(tmp_path / "bad.yaml", {"model.lr": {"min": 0.1, "max": 0.2}}, method="grid"))
    with pytest.raises(sweeps.SweepError, match="'model.lr'.*grid"):
        sweeps.sample(continuous, None, seed=0)


@pytest.mark.slow
def test_three_trial_sweep_runs_and_ranks_trials(tmp_path, image_folder, capsys):
    """Two trials train (different lr), one fails at data setup; best first, the failed one last."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False},
        "model": {"class_path": "lit_tasks.tasks.ImageClassification", "init_args": {"backbone": "vit-test"}},
        "data": {"class_path": "lit_tasks.data.ImageDataModule",
                 "init_args": {"root": str(image_folder), "image_size": 32, "batch_size": 8, "num_workers": 0}},
    }))
    command = ["${env}", "python", "-m", "lit_tasks", "fit", "--config", str(config), "${args}"]
    file = write_sweep(tmp_path / "tiny_sweep.yaml", {
        "model.lr": {"values": [0.0003, 0.01]},
        "data.root": {"values": [str(image_folder), str(tmp_path / "missing")]},
    }, method="grid", command=command)
    root = tmp_path / "sweeps"
    result = run_cli("sweep", str(file), "--count", "3", "--root", str(root), "--", "--run.loggers", "[csv]")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    folder = root / "tiny_sweep"
    with (folder / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    assert rows[-1]["trial"] == "trial-1" and rows[-1]["status"] == "failed"  # lr 0.0003 on the missing folder
    assert "missing/train does not exist" in rows[-1]["error"] and rows[-1]["val/acc"] == ""
    finished = {row["trial"]: row for row in rows[:2]}
    assert set(finished) == {"trial-0", "trial-2"} and all(row["status"] == "finished" for row in rows[:2])
    scores = {}
    for name, row in finished.items():
        results = json.loads((folder / name / "results.json").read_text())
        assert Path(row["run_dir"]) == (folder / name).resolve()
        assert float(row["model.lr"]) == results["config"]["model"]["init_args"]["lr"]
        assert "wandb" not in results["config"]["run"]["loggers"]  # the arguments after -- reached the trial
        assert float(row["val/acc"]) == pytest.approx(results["metrics"]["val/acc"])
        assert float(row["test/acc"]) == pytest.approx(results["metrics"]["test/acc"])
        scores[name] = (results["metrics"]["val/acc"], -int(name[-1]))
    assert rows[0]["trial"] == max(scores, key=scores.get)
    assert f"| 1 | {rows[0]['trial']} |" in (folder / "leaderboard.md").read_text()
    assert json.loads((folder / "trials.json").read_text())["trials"][1] == {
        "model.lr": 0.0003, "data.root": str(tmp_path / "missing")}
    # the same sweep again into the same folder is refused, not mixed into the old trials
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(file), "--count", "3", "--root", str(root)])
    assert exit_info.value.code == 2 and "already holds" in capsys.readouterr().err
