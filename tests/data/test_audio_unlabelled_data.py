"""AudioDataModule with task="unlabelled" (audio for pretraining): path-only manifests, lists of
manifests, recursive folders, batches without labels, and bad rows named by file and row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import make_audio_folder, make_transcribed_audio

from lit_tasks.data import AudioDataModule, DataError

REPO = Path(__file__).resolve().parents[2]


def test_manifests_need_only_paths_and_a_split_may_list_several(tmp_path):
    folder = make_audio_folder(tmp_path / "tones", {"train": 2, "val": 1})
    speech = make_transcribed_audio(tmp_path / "speech", {"train": 3, "val": 2})
    clips = sorted((folder / "train").rglob("*.*"))
    (tmp_path / "paths.csv").write_text("path\n" + "".join(f"{p.relative_to(tmp_path)}\n" for p in clips))
    data = AudioDataModule(train_file=[str(tmp_path / "paths.csv"), str(speech / "train.jsonl")],  # label-less + text
                           val_file=str(speech / "val.jsonl"), task="unlabelled", batch_size=4, num_workers=0)
    assert not hasattr(data, "num_classes") and not hasattr(data, "label_names")  # nothing to link into a model
    data.setup("fit")
    train = data.records("train")
    speech_clips = [str(speech / f"clips/train_{i}.flac") for i in range(3)]
    assert [r.path for r in train] == [str(p) for p in clips] + speech_clips
    assert all(r.label == -1 and r.text == "" for r in train)  # the text column is ignored
    assert "paths.csv row 2" in train[1].where and "train.jsonl line 1" in train[len(clips)].where
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"input_values", "attention_mask", "lengths", "paths", "skipped"}
    assert batch["input_values"].shape[0] == 4 and batch["attention_mask"].sum(-1).tolist() == batch["lengths"].tolist()


def test_root_takes_every_audio_file_below_each_split(tmp_path):
    root = make_audio_folder(tmp_path / "audio", {"train": 2, "val": 1})
    nested = root / "train" / "low" / "deeper"
    nested.mkdir()
    sf.write(nested / "x.wav", np.zeros(1600, np.float32), 16000)
    sf.write(root / "train" / "loose.flac", np.zeros(1600, np.float32), 16000)  # outside any class folder
    (root / "train" / "notes.txt").write_text("not audio")
    data = AudioDataModule(root=str(root), task="unlabelled", num_workers=0)
    assert not hasattr(data, "num_classes")
    names = sorted(Path(r.path).relative_to(root / "train").as_posix() for r in data.records("train"))
    assert names == sorted(["loose.flac", "low/deeper/x.wav"] + [f"{c}/{i}.{'flac' if i % 2 else 'wav'}"
                                                                  for c in ("high", "low", "mid") for i in range(2)])
    assert len(data.records("val")) == 3 and not data.has_split("test")
    (root / "test").mkdir()
    with pytest.raises(DataError, match=r"test has no audio files"):
        data.records("test")
    with pytest.raises(DataError, match="folder layout \\(root\\) is for classification and unlabelled"):
        AudioDataModule(root=str(root), task="transcription")


@pytest.mark.parametrize(("row", "says"), [
    ({"path": ""}, r"paths\.jsonl line 2: the 'path' field is empty"),
    ({"text": "no path"}, r"paths\.jsonl line 2: the 'path' field is missing"),
    ({"path": "nowhere.wav"}, r"paths\.jsonl line 2 \(.*nowhere\.wav\): the audio file does not exist"),
])
def test_bad_rows_name_file_and_row(tmp_path, row, says):
    speech = make_transcribed_audio(tmp_path, {"train": 2})
    rows = (speech / "train.jsonl").read_text().splitlines()
    (speech / "paths.jsonl").write_text("\n".join([rows[0], json.dumps(row), rows[1]]) + "\n")
    data = AudioDataModule(train_file=str(speech / "paths.jsonl"), task="unlabelled", num_workers=0)
    with pytest.raises(DataError, match=says):
        data.records("train")


def test_bundled_speech_manifests_combine():
    """The pretraining recipe's train data: both bundled speech sets, labels and transcripts ignored."""
    words, strings = REPO / "demo_data/spoken_digits/train.csv", REPO / "demo_data/digit_strings/train.jsonl"
    data = AudioDataModule(train_file=[str(words), str(strings)], task="unlabelled")
    records = data.records("train")
    rows = len(words.read_text().splitlines()) - 1 + len(strings.read_text().splitlines())  # CSV header
    assert len(records) == rows and all(Path(r.path).is_file() for r in records)
    sets = {"spoken_digits", "digit_strings"}
    assert {part for r in records for part in Path(r.path).parts if part in sets} == sets
