"""No code runs from a file a user hands us: a `.ckpt` or `pytorch_model.bin` whose pickle
would call a function (`__reduce__`) is refused by every entry point that reads one, with an
error naming the file and why, and the payload never runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import tiny_args
from safetensors.torch import load_file

from lit_tasks import zoo
from lit_tasks.commands import main
from lit_tasks.export import export_checkpoint
from lit_tasks.safe_load import UnsafeFileError


class Payload:
    """Unpickled with the full unpickler, this calls open(marker, "w"): the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def plant(obj: dict, marker: Path, file: Path) -> Path:
    """`obj` with a payload beside its entries, saved to `file`."""
    torch.save({**obj, "payload": Payload(marker)}, file)
    return file


def hf_folder_with_payload(model: torch.nn.Module, save, folder: Path, marker: Path) -> Path:
    """An HF folder of `model` whose weights are a pytorch_model.bin carrying the payload."""
    save(model, folder)
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    plant(tensors, marker, folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One tiny image-classification run (its args, folder and checkpoints), shared by the tests."""
    root = tmp_path_factory.mktemp("unsafe")
    from helpers import make_image_folder

    data = make_image_folder(root / "images", {"train": 4, "val": 2, "test": 2})
    args = [*tiny_args(data, root / "runs"), "--trainer.max_epochs", "1"]
    main(["fit", *args])
    (run_dir,) = (root / "runs" / "tiny").iterdir()
    return {"root": root, "args": args, "run_dir": run_dir}


def refused(capsys, marker: Path, command: list[str], file: Path) -> None:
    """`command` exits with status 2 naming `file` and the refusal; the payload did not run."""
    with pytest.raises(SystemExit) as exit_:
        main(command)
    message = capsys.readouterr().err
    assert exit_.value.code == 2, message
    assert str(file) in message and "refused" in message and "would run code" in message, message
    assert not marker.exists(), f"the payload ran through {command[0]}"


@pytest.mark.parametrize("command,alias", [("validate", "best"), ("test", "file"), ("predict", "last"),
                                           ("fit", "last")])
def test_commands_refuse_a_checkpoint_with_a_payload(trained, tmp_path, capsys, command, alias):
    run_dir = tmp_path / "run"
    shutil.copytree(trained["run_dir"], run_dir)
    marker = tmp_path / "marker"
    for name in ("best", "last"):
        ckpt = run_dir / "checkpoints" / f"{name}.ckpt"
        plant(torch.load(ckpt, weights_only=True), marker, ckpt)
    file = run_dir / "checkpoints" / ("best.ckpt" if alias == "best" else "last.ckpt")
    ckpt_path = str(file) if alias == "file" else alias
    refused(capsys, marker, [command, *trained["args"], "--run.dir", str(run_dir), "--ckpt_path", ckpt_path], file)


def test_slurm_requeue_refuses_a_preempted_checkpoint_with_a_payload(trained, tmp_path, capsys, monkeypatch):
    """A requeued job (SLURM_RESTART_COUNT > 0) resumes from its folder's preempted.ckpt by itself."""
    run_dir = tmp_path / "runs" / "tiny" / "slurm-77"
    shutil.copytree(trained["run_dir"], run_dir)
    marker = tmp_path / "marker"
    file = run_dir / "checkpoints" / "preempted.ckpt"
    plant(torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True), marker, file)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    refused(capsys, marker, ["fit", *trained["args"], "--run.root", str(tmp_path / "runs")], file)


def test_export_refuses_a_checkpoint_with_a_payload(trained, tmp_path, capsys):
    marker = tmp_path / "marker"
    file = plant(torch.load(trained["run_dir"] / "checkpoints" / "best.ckpt", weights_only=True), marker,
                 tmp_path / "evil.ckpt")
    refused(capsys, marker, ["export", "--ckpt_path", str(file), "--out", str(tmp_path / "out")], file)
    with pytest.raises(UnsafeFileError, match="refused"):
        export_checkpoint(file, tmp_path / "out")
    assert not marker.exists()


@pytest.mark.parametrize("family", ["vit", "bert", "wav2vec2"])
def test_from_pretrained_refuses_a_pytorch_model_bin_with_a_payload(tmp_path, family):
    marker = tmp_path / "marker"
    model = zoo.build(f"{family}-test")
    folder = hf_folder_with_payload(model, zoo.save_pretrained, tmp_path / family, marker)
    with pytest.raises(UnsafeFileError) as error:
        zoo.from_pretrained(folder)
    assert str(folder / "pytorch_model.bin") in str(error.value) and "would run code" in str(error.value)
    assert not marker.exists()


def test_init_from_refuses_a_pytorch_model_bin_with_a_payload(trained, tmp_path, capsys):
    marker = tmp_path / "marker"
    folder = hf_folder_with_payload(zoo.build("vit-test", "classification", num_labels=3), zoo.save_pretrained, tmp_path / "vit", marker)
    command = ["fit", *trained["args"], "--run.dir", str(tmp_path / "run"), "--model.backbone", "null",
               "--model.init_from", str(folder)]
    refused(capsys, marker, command, folder / "pytorch_model.bin")


def test_the_payload_is_live(tmp_path):
    """The planted files really run code under the full unpickler: the tests above can fail."""
    marker = tmp_path / "marker"
    file = plant({"state_dict": {}}, marker, tmp_path / "evil.ckpt")
    torch.load(file, weights_only=False)
    assert marker.exists()


def test_a_plain_pickle_with_a_payload_is_not_run_either(tmp_path):
    """A file written by pickle itself (not torch.save) uses opcodes the restricted unpickler
    does not take: it is reported as unreadable, naming the file, and the payload never runs."""
    import pickle

    from lit_tasks.checkpoint_io import load_checkpoint_file
    from lit_tasks.errors import CheckpointError

    marker = tmp_path / "marker"
    file = tmp_path / "evil.ckpt"
    file.write_bytes(pickle.dumps({"state_dict": {}, "payload": Payload(marker)}, protocol=4))
    with pytest.raises(CheckpointError, match=str(file)):
        load_checkpoint_file(file)
    assert not marker.exists()
