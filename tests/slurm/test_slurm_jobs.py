"""Jobs on a real Slurm (one host, two CPU nodes; `bash scripts/slurm/start_test_cluster.sh`,
which CI's .ci/run calls first). Skipped, saying why, when that cluster does not answer.

1. a 2-node job (one gloo DDP rank per node) submitted by `python -m lit_tasks slurm --wait`
   reports the validation metrics that one process computes from the weights it trained;
2. a 2-node job signalled with SIGUSR1 mid-epoch stops both ranks after the same step,
   checkpoints there, requeues itself, resumes in the same run folder and ends exactly as a
   2-process run never interrupted: same per-step losses, same weights (bitwise), same
   validation and test metrics, the same number of steps;
3. a job without --signal reaching its time limit checkpoints on Slurm's SIGTERM, requeues
   itself and finishes in the second attempt; one cancelled with scancel checkpoints and stays
   cancelled.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_cli, tiny_args

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_DIR = Path(os.environ.get("LIT_TASKS_SLURM_DIR", "/tmp/lit_tasks_slurm"))


@pytest.fixture(scope="module")
def slurm_conf() -> str:
    """SLURM_CONF of the test cluster, once it answers with two idle nodes."""
    conf = str(SLURM_DIR / "slurm.conf")
    start = "start it with `bash scripts/slurm/start_test_cluster.sh` (CI's .ci/run does)"
    if shutil.which("sinfo") is None or not Path(conf).is_file():
        pytest.skip(f"no test Slurm here (sinfo or {conf} missing): {start}")
    try:
        states = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env={**os.environ, "SLURM_CONF": conf},
                                capture_output=True, text=True, timeout=20).stdout.split()
    except subprocess.TimeoutExpired:
        states = []
    if sum(state in ("idle", "mixed", "allocated") for state in states) < 2:
        pytest.skip(f"the test Slurm ({conf}) does not answer with 2 nodes (sinfo: {states}): {start}")
    return conf


@pytest.fixture
def slurm_env(monkeypatch, slurm_conf):
    """The environment sbatch passes on to the job: the test cluster, tests/ importable, and the
    main address of DDP (the test nodes' names node1/node2 do not resolve)."""
    monkeypatch.setenv("SLURM_CONF", slurm_conf)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def slurm(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def job_field(job_id: str, name: str) -> str:
    fields = dict(part.split("=", 1) for part in slurm("scontrol", "show", "job", job_id).split() if "=" in part)
    return fields[name]


def wait_for(condition, what: str, timeout: float = 150.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


def submit(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, str | None]:
    """`python -m lit_tasks slurm` with a near-empty config (the test's arguments follow --)."""
    config = tmp_path / "tiny.yaml"
    config.write_text("seed_everything: 42\n")
    done = run_cli("slurm", "--config", str(config), "--time", "10", "--log-dir", str(tmp_path / "slurm"), *args)
    submitted = re.search(r"submitted job (\d+)", done.stdout)
    return done, submitted and submitted.group(1)


def job_log(tmp_path: Path) -> str:
    return "\n".join(p.read_text() for p in (tmp_path / "slurm").glob("*.out"))


def log_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


def checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def test_two_node_job_reports_the_metrics_of_one_process(tmp_path, image_folder, slurm_env):
    args = [*tiny_args(image_folder, tmp_path / "runs"), "--trainer.max_epochs", "1", "--run.test_after_fit", "false"]
    done, job_id = submit(tmp_path, "--nodes", "2", "--cpu", "--wait", "--", *args)
    assert done.returncode == 0, done.stderr[-3000:] + job_log(tmp_path)[-3000:]
    run_dir = tmp_path / "runs" / "tiny" / f"slurm-{job_id}"  # named by the job id
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["world_size"] == 2

    # the same weights, validated by one process: 15 images over 2 ranks were uneven shards
    single = run_cli("validate", *args, "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
                     "--run.dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads((tmp_path / "single" / "results.json").read_text())["metrics"]
    val = {k: v for k, v in results["metrics"].items() if k.startswith("val/")}
    assert set(val) == {"val/loss", "val/acc", "val/f1", "val/top3_acc"}
    for key, value in val.items():
        assert value == pytest.approx(one[key], abs=1e-6), key


def test_signalled_job_requeues_and_ends_as_if_never_interrupted(tmp_path, image_folder, slurm_env):
    """24 train images over 2 ranks in batches of 2: 6 steps per epoch, 12 in all, dropout and
    random crops; signalled at the end of step 8 (mid epoch 1). Data is loaded in the main process:
    a DataLoader worker forked by a DDP rank once hung at start here (a lock copied by fork), and
    worker processes are covered by tests/cli/test_resume.py."""
    runs = tmp_path / "runs"
    args = [*tiny_args(image_folder, runs), "--data.batch_size", "2", "--data.num_workers", "0",
            "--trainer.log_every_n_steps", "1", "--model.backbone_config", "{hidden_dropout_prob: 0.2}",
            "--run.checkpoint_every_n_steps", "6"]  # last.ckpt at steps 6 and 12: the final weights
    whole = run_cli("fit", *args, "--run.dir", str(tmp_path / "whole"), "--trainer.strategy", "ddp",
                    "--trainer.devices", "2")  # the same 2 ranks, started by Lightning on this host
    assert whole.returncode == 0, whole.stderr[-3000:]

    gate = tmp_path / "gate"
    done, job_id = submit(tmp_path, "--nodes", "2", "--cpu", "--", *args, "--trainer.callbacks", "helpers.PauseAtStep",
                          "--trainer.callbacks.step", "8", "--trainer.callbacks.folder", str(gate))
    assert done.returncode == 0 and job_id, done.stderr[-3000:]
    try:
        paused = lambda: all((gate / f"paused-{rank}").exists() for rank in (0, 1))  # noqa: E731
        wait_for(lambda: paused() or job_field(job_id, "JobState") not in ("PENDING", "RUNNING"), "step 8")
        assert paused(), job_log(tmp_path)[-3000:]
        slurm("scancel", "--signal=USR1", job_id)  # what --signal=USR1@90 does before the time limit
        wait_for(lambda: int(job_field(job_id, "Restarts")) >= 1, "the requeue")
        # read before the second attempt can start (cred_expire: 10 s on the test cluster)
        status_at_requeue = json.loads((runs / "tiny" / f"slurm-{job_id}" / "results.json").read_text())["status"]
        wait_for(lambda: job_field(job_id, "JobState") not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"),
                 "the requeued job")
    finally:
        (gate / "go").touch()  # never leave a job waiting
        subprocess.run(["scancel", job_id], capture_output=True)
    log = job_log(tmp_path)
    assert job_field(job_id, "JobState") == "COMPLETED" and job_field(job_id, "Restarts") == "1", log[-3000:]
    assert "restart 0" in log and "restart 1" in log  # one output file, both attempts (--open-mode=append)
    assert f"lit_tasks: requeueing job {job_id}" in log
    assert re.search(r"Restoring states from the checkpoint path at \S+/preempted.ckpt", log)  # newer than last.ckpt

    (run_dir,) = (runs / "tiny").iterdir()  # the requeued job found the first attempt's folder
    assert run_dir.name == f"slurm-{job_id}"
    assert checkpoint(run_dir / "checkpoints" / "preempted.ckpt")["global_step"] == 8
    assert status_at_requeue == "preempted"
    reference = tmp_path / "whole"
    assert checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 12  # max_epochs 2: not one step more

    expected, got = log_rows(reference), log_rows(run_dir)
    assert [r["step"] for r in got if "train/loss_step" in r] == [str(s) for s in range(12)]  # each step once
    # every step's loss and every validation metric as written (bitwise); the train epoch means of
    # the resumed epoch cover only the steps after the resume (as for any mid-epoch resume)
    resumed_epoch_means = lambda row: row["epoch"] == "1" and "train/loss_epoch" in row  # noqa: E731
    assert [r for r in got if not resumed_epoch_means(r)] == [r for r in expected if not resumed_epoch_means(r)]
    assert len(got) == len(expected)
    one = checkpoint(reference / "checkpoints" / "last.ckpt")["state_dict"]
    two = checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(one[k], two[k]) for k in one), [k for k in one if not torch.equal(one[k], two[k])]

    results, plain = (json.loads((d / "results.json").read_text()) for d in (run_dir, reference))
    assert results["status"] == "finished" and [row["epoch"] for row in results["history"]] == [0, 1]
    assert results["world_size"] == plain["world_size"] == 2
    assert results["metrics"].keys() == plain["metrics"].keys()
    evaluated = [key for key in plain["metrics"] if key.startswith(("val/", "test/"))]
    assert len(evaluated) == 8
    for key in evaluated:
        assert results["metrics"][key] == pytest.approx(plain["metrics"][key], abs=1e-6), key


def test_sbatch_reads_quoted_paths_whole(tmp_path, slurm_env, monkeypatch):
    """A log folder and a working directory with spaces and a quote: the real sbatch puts the
    job's output and working directory where `python -m lit_tasks slurm` meant (the training
    line is replaced by one that prints where it runs)."""
    from lit_tasks import slurm as slurm_helper

    workdir, log_dir = tmp_path / "my work dir", tmp_path / "it's logs"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    config = tmp_path / "tiny.yaml"
    config.write_text("seed_everything: 42\n")
    options = slurm_helper.build_arg_parser().parse_args(
        ["--config", str(config), "--time", "5", "--cpu", "--log-dir", str(log_dir)])
    script = slurm_helper.render(options, tiny_args(tmp_path / "images", tmp_path / "runs"))  # parsed, never run
    script = re.sub(r"^srun .*?(?<!\\)$", 'echo "ran in $(pwd)"', script.replace("\\\n", ""), flags=re.M | re.S)
    log_dir.mkdir()
    (log_dir / "probe.sbatch").write_text(script)
    job_id = slurm("sbatch", "--parsable", "--wait", str(log_dir / "probe.sbatch")).strip().split(";")[0]
    output = log_dir / f"tiny-{job_id}.out"
    assert output.is_file(), sorted(p.name for p in tmp_path.rglob("*"))
    assert f"ran in {workdir}" in output.read_text()


def sbatch_without_signal(tmp_path: Path, time_limit: str, args: list[str]) -> str:
    """Submits `srun python -m lit_tasks fit ARGS` as a hand-written job with no --signal: at
    its end Slurm sends only SIGTERM, then SIGKILL KillWait (10 s here) later."""
    import shlex
    import sys

    (tmp_path / "slurm").mkdir(exist_ok=True)
    script = tmp_path / "slurm" / "plain.sbatch"
    script.write_text("\n".join([
        "#!/bin/bash", "#SBATCH --job-name=plain", f"#SBATCH --time={time_limit}", "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1", "#SBATCH --requeue", "#SBATCH --open-mode=append",
        f"#SBATCH --output={tmp_path / 'slurm'}/%x-%j.out", f"#SBATCH --chdir={REPO}",
        'echo "job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}"',
        f"srun {shlex.quote(sys.executable)} -m lit_tasks fit {shlex.join(args)}", ""]))
    return slurm("sbatch", "--parsable", str(script)).strip().split(";")[0]


def sigterm_args(image_folder: Path, runs: Path, gate: Path) -> list[str]:
    """12 steps (6 per epoch), paused at the end of step 2 until a stop signal arrives."""
    return [*tiny_args(image_folder, runs), "--data.batch_size", "4", "--trainer.log_every_n_steps", "1",
            "--run.test_after_fit", "false", "--trainer.callbacks", "helpers.PauseAtStep",
            "--trainer.callbacks.step", "2", "--trainer.callbacks.folder", str(gate),
            "--trainer.callbacks.timeout", "300"]


def test_job_at_its_time_limit_checkpoints_on_sigterm_and_requeues(tmp_path, image_folder, slurm_env):
    """No --signal: the time limit (1 minute) ends the job with SIGTERM while it waits at step 2;
    it checkpoints there, requeues itself (Reason=TimeLimit), and the second attempt resumes at
    step 3 and finishes within its own minute."""
    runs = tmp_path / "runs"
    job_id = sbatch_without_signal(tmp_path, "1", sigterm_args(image_folder, runs, tmp_path / "gate"))
    try:
        wait_for(lambda: int(job_field(job_id, "Restarts")) >= 1, "the time limit and the requeue", timeout=240)
        wait_for(lambda: job_field(job_id, "JobState") not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"),
                 "the requeued job", timeout=180)
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
    log = job_log(tmp_path)
    assert job_field(job_id, "JobState") == "COMPLETED" and job_field(job_id, "Restarts") == "1", log[-3000:]
    assert "DUE TO TIME LIMIT" in log and f"lit_tasks: job {job_id} requeued" in log
    run_dir = runs / "tiny" / f"slurm-{job_id}"
    assert checkpoint(run_dir / "checkpoints" / "preempted.ckpt")["global_step"] == 2
    assert checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 12
    assert [r["step"] for r in log_rows(run_dir) if "train/loss_step" in r] == [str(s) for s in range(12)]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished"
    (stop,) = results["stops"]
    assert stop["signal"] == "SIGTERM" and stop["step"] == 2 and stop["requeued"] is True


def test_cancelled_job_checkpoints_and_is_not_requeued(tmp_path, image_folder, slurm_env):
    """`scancel JOBID` sends the same SIGTERM as the time limit: the fit checkpoints, but the
    job stays cancelled (Slurm says Reason=None, not TimeLimit)."""
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    job_id = sbatch_without_signal(tmp_path, "10", sigterm_args(image_folder, runs, gate))
    try:
        wait_for(lambda: (gate / "paused-0").exists() or job_field(job_id, "JobState") not in ("PENDING", "RUNNING"),
                 "step 2")
        assert (gate / "paused-0").exists(), job_log(tmp_path)[-3000:]
        slurm("scancel", job_id)
        wait_for(lambda: job_field(job_id, "JobState") not in ("RUNNING", "COMPLETING"), "the cancelled job")
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
    log = job_log(tmp_path)
    assert job_field(job_id, "JobState") == "CANCELLED" and job_field(job_id, "Restarts") == "0", log[-3000:]
    run_dir = runs / "tiny" / f"slurm-{job_id}"
    assert checkpoint(run_dir / "checkpoints" / "preempted.ckpt")["global_step"] == 2
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "preempted"
    (stop,) = results["stops"]
    assert stop["requeued"] is False and "it was cancelled (scancel)" in stop["requeue"], stop
