"""`python -m lit_tasks runs`: one line per run folder, with its status and key metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from helpers import run_cli, tiny_args

from lit_tasks.runs import main


def write_results(run_dir, **results):
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))


def test_lists_statuses_and_metrics(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    best = {"monitor": "val/acc", "mode": "max", "score": 0.75}
    write_results(tmp_path / "vit" / "2026-01-01_10-00-00", status="finished", commands=["fit", "test"], best=best,
                  metrics={"test/acc": 0.7}, wall_time_s={"fit": 125.0, "test": 5.0})
    write_results(tmp_path / "vit" / "2026-01-02_10-00-00", status="failed", commands=[], error="boom")
    write_results(tmp_path / "vit" / "slurm-77", status="preempted", commands=[], best=best)
    write_results(tmp_path / "cnn" / "2026-01-03_10-00-00", status="running", pid=dead.pid,
                  host=socket.gethostname(), commands=[])
    (tmp_path / "cnn" / "2026-01-04_10-00-00").mkdir()
    (tmp_path / "cnn" / "2026-01-04_10-00-00" / "config.yaml").write_text("{}")
    main(["--root", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["run", "version", "commands", "status", "wall", "best", "test"]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[1:]}
    assert rows["vit", "2026-01-01_10-00-00"][2:] == ["fit,test", "finished", "2m10s", "val/acc=0.7500", "test/acc=0.7000"]
    assert rows["vit", "2026-01-02_10-00-00"][3] == "failed"
    assert rows["vit", "slurm-77"][3] == "preempted"
    assert rows["cnn", "2026-01-03_10-00-00"][3] == "killed"
    assert " ".join(rows["cnn", "2026-01-04_10-00-00"][3:5]) == "no results"


def test_a_real_run_shows_as_finished(tmp_path, image_folder):
    runs = tmp_path / "runs"
    assert run_cli("fit", *tiny_args(image_folder, runs), "--trainer.max_epochs", "1").returncode == 0
    listed = run_cli("runs", "--root", str(runs))
    assert listed.returncode == 0, listed.stderr[-2000:]
    (line,) = listed.stdout.strip().splitlines()[1:]
    assert line.split()[0] == "tiny" and "fit,test" in line and "finished" in line and "test/acc=" in line


def test_no_runs(tmp_path, capsys):
    main(["--root", str(tmp_path / "nothing")])
    assert "no runs under" in capsys.readouterr().out
