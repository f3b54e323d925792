"""--help that helps: the command list, each command's own help, every option described."""

from __future__ import annotations

import inspect
import re

import lightning as L
import pytest
from jsonargparse import ArgumentParser

import lit_tasks.tasks  # noqa: F401
from lit_tasks.commands import COMMANDS, TRAINER_COMMANDS, main
from lit_tasks.data import import_datamodules


def subclasses(base: type) -> list[type]:
    found, todo = set(), [base]
    while todo:
        for cls in todo.pop().__subclasses__():
            if cls not in found:
                found.add(cls)
                todo.append(cls)
    return sorted((c for c in found if c.__module__.startswith("lit_tasks.")), key=lambda c: c.__name__)


import_datamodules()
TASKS = subclasses(L.LightningModule)
DATAMODULES = subclasses(L.LightningDataModule)


def test_top_level_help_lists_every_command_on_one_line(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name, description in {**TRAINER_COMMANDS, **{n: line for n, (_, line) in COMMANDS.items()}}.items():
        (line,) = [line for line in out.splitlines() if re.match(rf"  {name}\s", line)]
        assert description in line
    assert len(out.splitlines()) < 30


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m lit_tasks {command}" in out and "--" in out


def test_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fitt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "'fitt'" in err and "fit, validate" in err and len(err.splitlines()) == 1


def undescribed(cls: type) -> list[str]:
    """Constructor options that --help would show with their type only."""
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "x")
    return [a.dest for a in parser._actions
            if a.dest.startswith("x.") and (not a.help or a.help.startswith(("(type", "_EMPTY_HELP_")))]


@pytest.mark.parametrize("cls", TASKS + DATAMODULES, ids=lambda c: c.__name__)
def test_every_option_has_a_description(cls):
    assert not inspect.isabstract(cls)
    assert undescribed(cls) == []


def test_the_classes_are_found():
    names = {c.__name__ for c in TASKS + DATAMODULES}
    assert {"ImageClassification", "ObjectDetection", "Summarization", "ImageDataModule", "Seq2SeqDataModule",
            "CocoDetectionDataModule", "AudioDataModule"} <= names


def test_a_task_is_named_by_its_class_name_in_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", "ObjectDetection"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--model.predict_threshold" in out and "written by `predict`" in re.sub(r"\s+", " ", out)


def test_a_datamodule_is_named_by_its_class_name_in_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data.help", "Seq2SeqDataModule"])
    assert exit_info.value.code == 0
    assert "--data.source_lang" in capsys.readouterr().out
