"""`python -m lit_tasks runs`: one line per run folder, with its status and key metrics; `--json`
and the name and status filters; no torch or Lightning import on that path."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter

import pytest
from helpers import REPO, run_cli, tiny_args

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


# -- --json and the filters, over 100 synthetic run folders --------------------------------------

WRITTEN_STATUSES = ("finished", "failed", "preempted", "running", None)  # None: no results.json
NAMES = ("vit_fashion_mnist", "convnext_fashion_mnist", "minilm_debian_sections", "sweeps/vit_lr")


def make_runs(root, count=100):
    """`count` run folders, statuses and names in turn; {(name, version): what was written}."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: "running" with it shows as "killed"
    written = {}
    for i in range(count):
        name, status, version = NAMES[i % len(NAMES)], WRITTEN_STATUSES[i % len(WRITTEN_STATUSES)], f"v{i:03d}"
        run_dir = root / name / version
        if status is None:
            run_dir.mkdir(parents=True)
            (run_dir / "config.yaml").write_text("{}")
            written[name, version] = None
            continue
        results = {"status": status, "commands": ["fit", "test"][: i % 3],
                   "wall_time_s": {"fit": 10.0 + i, "test": 0.5},
                   "metrics": {"val/acc": i / 100, "test/acc": i / 200, "train/loss": 1.0 / (i + 1)},
                   "best": {"monitor": "val/acc", "mode": "max", "score": i / 100, "epoch": i, "step": 10 * i},
                   "updated": f"2026-01-01T00:00:{i % 60:02d}"}
        if status == "running":
            results.update(pid=dead.pid, host=socket.gethostname())
        if status == "failed":
            results["error"] = f"RuntimeError: boom {i}"
        write_results(run_dir, **results)
        (run_dir / "checkpoints").mkdir()  # not a run folder of its own, nor walked into
        (run_dir / "checkpoints" / "config.yaml").write_text("{}")
        written[name, version] = results
    return written


def listed(capsys, root, *args):
    main(["--root", str(root), "--json", *args])
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_run_with_its_record(tmp_path, capsys):
    written = make_runs(tmp_path)
    runs = listed(capsys, tmp_path)
    assert len(runs) == 100 and len({(r["name"], r["version"]) for r in runs}) == 100
    expected_status = {"running": "killed"}
    for run in runs:
        results = written[run["name"], run["version"]]
        assert run["path"] == str(tmp_path / run["name"] / run["version"])
        if results is None:
            assert run["status"] == "no results" and run["metrics"] == {} and run["best"] is None
            continue
        assert run["status"] == expected_status.get(results["status"], results["status"])
        assert run["commands"] == results["commands"] and run["metrics"] == results["metrics"]
        assert run["wall_time_s"] == pytest.approx(sum(results["wall_time_s"].values()))
        assert run["best"] == results["best"] and run["error"] == results.get("error")
    assert Counter(r["status"] for r in runs) == {"finished": 20, "failed": 20, "preempted": 20, "killed": 20,
                                                  "no results": 20}


def test_status_and_name_filters(tmp_path, capsys):
    make_runs(tmp_path)
    failed = listed(capsys, tmp_path, "--status", "failed")
    assert len(failed) == 20 and {r["status"] for r in failed} == {"failed"}
    two = listed(capsys, tmp_path, "--status", "failed,killed")
    assert len(two) == 40 and {r["status"] for r in two} == {"failed", "killed"}
    assert listed(capsys, tmp_path, "--status", "failed", "--status", "killed") == two
    assert {r["status"] for r in listed(capsys, tmp_path, "--status", "no results")} == {"no results"}
    # no glob character: a substring of the name
    mnist = listed(capsys, tmp_path, "--name", "fashion_mnist")
    assert {r["name"] for r in mnist} == {"vit_fashion_mnist", "convnext_fashion_mnist"} and len(mnist) == 50
    # a glob: the whole name must match
    assert {r["name"] for r in listed(capsys, tmp_path, "--name", "vit_*")} == {"vit_fashion_mnist"}
    assert {r["name"] for r in listed(capsys, tmp_path, "--name", "*vit*")} == {"vit_fashion_mnist", "sweeps/vit_lr"}
    assert listed(capsys, tmp_path, "--name", "VIT") == []  # case-sensitive
    both = listed(capsys, tmp_path, "--name", "vit", "--status", "finished")
    assert both and {(r["status"], "vit" in r["name"]) for r in both} == {("finished", True)}
    # the table applies the same filters
    main(["--root", str(tmp_path), "--status", "preempted", "--name", "minilm"])
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(lines) == 5 and all(line.split()[0] == "minilm_debian_sections" and "preempted" in line
                                   for line in lines)


def test_unknown_status_is_an_error_naming_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--root", str(tmp_path), "--status", "finished,finshed"])
    assert exit_.value.code == 2
    assert "--status finshed: not a status" in capsys.readouterr().err


def test_runs_command_imports_neither_torch_nor_lightning(tmp_path):
    make_runs(tmp_path, count=10)
    program = (
        "import json, sys\n"
        "from lit_tasks.commands import main\n"
        f"main(['runs', '--root', {str(tmp_path)!r}, '--json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'pytorch_lightning'))\n"
        "print(json.dumps(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json.loads(result.stdout)) == 10
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
