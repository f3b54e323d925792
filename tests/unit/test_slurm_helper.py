"""`python -m lit_tasks slurm` renders the templates offline (--dry-run), and the pieces of
preemption that need no cluster: the id to requeue, the checkpoint a requeued job resumes from."""

from __future__ import annotations

import os
import re
import shlex
import time
from types import SimpleNamespace

import pytest
from helpers import REPO

from lit_tasks import run_dir, slurm
from lit_tasks.callbacks.preemption import is_final_step, requeue_job_id
from lit_tasks.errors import ConfigError

CONFIG = REPO / "configs" / "image_classification" / "vit_fashion_mnist.yaml"


def dry_run(capsys, *args: str) -> str:
    slurm.main(["--config", str(CONFIG), "--time", "12:00:00", "--dry-run", *args])
    return capsys.readouterr().out


def sbatch_options(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=?(\S*)", script, re.M))


def launch_line(script: str) -> list[str]:
    """The srun command, continuation lines joined, split as the shell would (variables kept)."""
    text = script.replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("srun ")]
    return shlex.split(line)


def test_multi_node_gpu_job(capsys, tmp_path):
    script = dry_run(capsys, "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--log-dir", str(tmp_path),
                     "--", "--trainer.max_epochs", "3", "--data.batch_size", "64")
    options = sbatch_options(script)
    assert options["nodes"] == "2" and options["ntasks-per-node"] == "4" and options["gpus-per-node"] == "4"
    assert options["partition"] == "gpu" and options["time"] == "12:00:00" and options["job-name"] == CONFIG.stem
    assert options["signal"] == "USR1@90" and "requeue" in options and options["open-mode"] == "append"
    assert options["output"] == f"{tmp_path}/%x-%j.out" and options["chdir"] == os.getcwd()
    assert "{{" not in script.replace("{{...}}", "")
    args = launch_line(script)
    assert args[:5] == ["srun", slurm.sys.executable, "-m", "lit_tasks", "fit"]  # python itself, no shell
    assert args[5:7] == ["--config", str(CONFIG)]
    # the node and device counts come from Slurm in the job; the user's overrides come last
    assert args[7:11] == ["--trainer.num_nodes", "$SLURM_JOB_NUM_NODES", "--trainer.devices", "$SLURM_NTASKS_PER_NODE"]
    assert args[11:] == ["--trainer.max_epochs", "3", "--data.batch_size", "64"]


def test_one_node_cpu_job(capsys):
    script = dry_run(capsys, "--cpu", "--tasks-per-node", "2", "--cpus-per-task", "3")
    options = sbatch_options(script)
    assert options["nodes"] == "1" and options["ntasks-per-node"] == "2" and options["cpus-per-task"] == "3"
    assert "gpus-per-node" not in options and "partition" not in options  # optional lines left out
    assert launch_line(script)[11:] == ["--trainer.accelerator", "cpu"]


def test_override_with_spaces_is_quoted(capsys):
    script = dry_run(capsys, "--gpus-per-node", "1", "--", "--model.backbone_config", "{hidden_dropout_prob: 0.2}")
    assert launch_line(script)[-2:] == ["--model.backbone_config", "{hidden_dropout_prob: 0.2}"]


@pytest.mark.parametrize("args, culprit", [
    (["--gpus-per-node", "4", "--time", "soon"], "--time 'soon'"),
    (["--gpus-per-node", "0"], "--gpus-per-node must be at least 1"),
    (["--nodes", "2"], "--gpus-per-node is required"),
    (["--cpu", "--gpus-per-node", "2"], "--cpu and --gpus-per-node"),
    (["--gpus-per-node", "2", "--tasks-per-node", "2"], "--tasks-per-node is for --cpu"),
    (["--gpus-per-node", "1", "--", "--trainer.max_epochz", "3"], "trainer.max_epochz"),
])
def test_bad_arguments_are_named(capsys, args, culprit):
    with pytest.raises(ConfigError, match=re.escape(culprit)):
        slurm.main(["--config", str(CONFIG), "--time", "1:00:00", "--dry-run", *args])
    assert capsys.readouterr().out == ""  # nothing printed, nothing submitted


def test_missing_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        slurm.main(["--config", str(tmp_path / "nope.yaml"), "--time", "10", "--cpu", "--dry-run"])


def test_template_placeholder_without_value_is_an_error():
    with pytest.raises(ConfigError, match="no value for {{mystery}}"):
        slurm.fill("#SBATCH --x={{mystery}}\n", {})
    assert slurm.fill("a {{x}}\n#SBATCH --b={{y}}\n", {"x": "1", "y": None}) == "a 1\n"


def test_requeue_id_of_a_job_and_of_an_array_task():
    assert requeue_job_id({"SLURM_JOB_ID": "42"}) == "42"
    # array task 3 of array job 40 runs as job 42: requeue that task, not the whole array 40
    assert requeue_job_id({"SLURM_JOB_ID": "42", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}) == "40_3"


def test_requeued_job_resumes_from_its_newest_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    folder, ckpt = run_dir.resolve(str(tmp_path), "tiny", None, None)
    assert folder == (tmp_path / "tiny" / "slurm-77").resolve() and ckpt is None  # first attempt: fresh
    (folder / "checkpoints").mkdir()
    preempted, last = folder / "checkpoints" / "preempted.ckpt", folder / "checkpoints" / "last.ckpt"
    last.write_bytes(b"x")
    preempted.write_bytes(b"x")
    os.utime(last, (time.time() - 60, time.time() - 60))
    assert run_dir.resolve(str(tmp_path), "tiny", None, None)[1] is None  # same job id, not requeued

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    monkeypatch.delenv(run_dir.ENV_VAR)
    assert run_dir.resolve(str(tmp_path), "tiny", None, None) == (folder, str(preempted))
    monkeypatch.delenv(run_dir.ENV_VAR)
    assert run_dir.resolve(str(tmp_path), "tiny", None, str(last)) == (folder, str(last))  # given: kept
    os.utime(last, None)  # a later periodic checkpoint is newer than the preemption one
    monkeypatch.delenv(run_dir.ENV_VAR)
    assert run_dir.resolve(str(tmp_path), "tiny", None, None) == (folder, str(last))


@pytest.mark.parametrize("max_steps, max_epochs, epoch, batch_idx, step, final", [
    (-1, 2, 1, 5, 12, True),   # last batch of the last epoch
    (-1, 2, 1, 4, 11, False),
    (-1, 2, 0, 5, 6, False),   # last batch of an earlier epoch
    (10, 5, 1, 3, 10, True),   # max_steps reached mid-epoch
    (-1, -1, 3, 5, 24, False),  # no epoch limit
])
def test_final_step(max_steps, max_epochs, epoch, batch_idx, step, final):
    trainer = SimpleNamespace(max_steps=max_steps, max_epochs=max_epochs, current_epoch=epoch, global_step=step,
                              num_training_batches=6)
    assert is_final_step(trainer, batch_idx) is final


@pytest.mark.parametrize("args, culprit", [
    (["--job-name", "x\necho PWNED"], "--job-name 'x\\necho PWNED'"),
    (["--job-name", "a b"], "--job-name 'a b'"),
    (["--partition", "gpu\n#SBATCH --account=other"], "--partition"),
    (["--partition", "gpu;rm"], "--partition 'gpu;rm'"),
    (["--time", "12:00:00\n"], "--time"),
    (["--log-dir", "logs\nrm -rf ~"], "--log-dir"),
])
def test_values_that_would_add_lines_to_the_script_are_refused(capsys, args, culprit):
    with pytest.raises(ConfigError, match=re.escape(culprit)):
        slurm.main(["--config", str(CONFIG), "--time", "1:00:00", "--gpus-per-node", "1", "--dry-run", *args])
    assert capsys.readouterr().out == ""


def test_a_config_file_name_that_is_no_job_name_asks_for_one(capsys, tmp_path):
    config = tmp_path / "my recipe.yaml"
    config.write_text(CONFIG.read_text())
    with pytest.raises(ConfigError, match="--job-name"):
        slurm.main(["--config", str(config), "--time", "1:00:00", "--gpus-per-node", "1", "--dry-run"])


def sbatch_arguments(line: str) -> list[str]:
    """The words of an #SBATCH line as sbatch's own parser reads them: whitespace splits, single or
    double quotes group (and are dropped), a backslash escapes the next character."""
    words, word, quote, escaped, started = [], "", None, False, False
    for char in line:
        if escaped:
            word, escaped = word + char, False
        elif char == "\\":
            escaped = started = True
        elif quote:
            quote = None if char == quote else quote
            word += "" if quote is None else char
        elif char in "'\"":
            quote, started = char, True
        elif char.isspace():
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + char, True
    return [*words, word] if started else words


def test_paths_with_spaces_and_quotes_stay_whole(capsys, tmp_path, monkeypatch):
    workdir = tmp_path / "my work dir"
    log_dir = tmp_path / "it's logs" / "$HOME"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    script = dry_run(capsys, "--gpus-per-node", "1", "--log-dir", str(log_dir))
    directives = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            (word,) = sbatch_arguments(line[len("#SBATCH "):])
            key, _, value = word.partition("=")
            directives[key] = value
    assert directives["--output"] == f"{log_dir}/%x-%j.out"
    assert directives["--chdir"] == str(workdir)
    assert launch_line(script)[5:7] == ["--config", str(CONFIG)]


def test_sbatch_line_parser_reads_quotes_as_sbatch_does():
    """The reader above follows sbatch's _get_argument (src/sbatch/opt.c): checked on known lines."""
    assert sbatch_arguments("--output='/a b'/%x.out") == ["--output=/a b/%x.out"]
    assert sbatch_arguments("--chdir='it'\"'\"'s'") == ["--chdir=it's"]
    assert sbatch_arguments('--job-name="x y" --time=1') == ["--job-name=x y", "--time=1"]
