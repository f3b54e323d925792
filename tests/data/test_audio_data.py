"""Contract tests for lit_tasks.data.AudioDataModule, its sources, decoding and loaders."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lit_tasks.data import AudioDataModule, DataError
from lit_tasks.data.audio_sources import BadAudioError, load_audio

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "emu"]
SR = 16000


def tone(path: Path, seconds: float = 0.1, sr: int = SR, freq: float = 440.0, channels: int = 1,
         amp: float = 0.5, fmt: str | None = None) -> Path:
    """A sine (channel c scaled by 1/(c+1)) written with soundfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    data = np.stack([x / (c + 1) for c in range(channels)], -1) if channels > 1 else x
    sf.write(path, data, sr, format=fmt)
    return path


def make_folder(root: Path, n=(4, 2, 2)) -> Path:
    """root/{train,val,test}/<class>/<i>.{wav|flac}, clip lengths 0.05 .. 0.2 s."""
    k = 0
    for split, count in zip(("train", "val", "test"), n):
        for ci, c in enumerate(CLASSES):
            for i in range(count):
                ext = "flac" if k % 2 else "wav"
                tone(root / split / c / f"{split}_{c}_{i}.{ext}", seconds=0.05 + 0.05 * (k % 4), freq=200 + 100 * ci)
                k += 1
    return root


def rows_of(root: Path, split: str) -> list[dict]:
    return [{"path": p.relative_to(root).as_posix(), "label": p.parent.name}
            for p in sorted((root / split).rglob("*.*")) if p.suffix in (".wav", ".flac")]


def write_csv(file: Path, rows: list[dict], fields=("path", "label")) -> Path:
    with open(file, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return file


def write_jsonl(file: Path, rows: list[dict]) -> Path:
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return file


def kw(**extra):
    return {"batch_size": 4, "num_workers": 0, **extra}


@pytest.fixture()
def folder(tmp_path):
    return make_folder(tmp_path / "data")


def collect(loader) -> dict[str, tuple[int, torch.Tensor]]:
    """{file name: (label, waveform)} over all batches, checking the batch contract."""
    out = {}
    for b in loader:
        B, T = b["input_values"].shape
        assert b["input_values"].dtype == torch.float32 and b["attention_mask"].dtype == torch.long
        assert b["attention_mask"].shape == (B, T) and b["lengths"].tolist() == b["attention_mask"].sum(1).tolist()
        assert b["skipped"] == [] and len(b["paths"]) == B
        for path, label, x, n in zip(b["paths"], b["labels"].tolist(), b["input_values"], b["lengths"]):
            assert Path(path).name not in out
            out[Path(path).name] = (label, x[:n])
    return out


# ------------------------------------------------------------------------------- sources


def test_csv_jsonl_and_class_folders_agree(folder):
    for split in ("train", "val", "test"):
        write_csv(folder / f"{split}.csv", rows_of(folder, split))
        write_jsonl(folder / f"{split}.jsonl", rows_of(folder, split))
    modules = {
        "folder": AudioDataModule(root=str(folder), **kw()),
        "csv": AudioDataModule(train_file=str(folder / "train.csv"), val_file=str(folder / "val.csv"),
                               test_file=str(folder / "test.csv"), **kw()),
        "jsonl": AudioDataModule(train_file=str(folder / "train.jsonl"), val_file=str(folder / "val.jsonl"),
                                 test_file=str(folder / "test.jsonl"), **kw()),
    }
    for dm in modules.values():  # known before setup, for linking into the model
        assert dm.label_names == CLASSES and dm.num_classes == 3
    got = {name: collect(dm.val_dataloader()) for name, dm in modules.items()}
    assert len(got["folder"]) == 6 and {v[0] for v in got["folder"].values()} == {0, 1, 2}
    for name in ("csv", "jsonl"):
        assert got[name].keys() == got["folder"].keys()
        for key, (label, x) in got["folder"].items():
            assert got[name][key][0] == label and torch.equal(got[name][key][1], x)
    train = collect(modules["csv"].train_dataloader())
    assert len(train) == 12
    assert all(CLASSES[label] in key for key, (label, _) in train.items())


def test_ogg_and_mp3_decode(tmp_path):
    for fmt in ("OGG", "MP3"):
        path = tone(tmp_path / f"a.{fmt.lower()}", seconds=0.5, fmt=fmt)
        x = load_audio(str(path), SR, str(path))
        assert x.dtype == np.float32 and abs(len(x) - SR // 2) < 0.05 * SR and np.abs(x).max() > 0.2


def test_stereo_44k_becomes_mono_16k_with_the_right_length(tmp_path):
    path = tone(tmp_path / "stereo.wav", seconds=0.5, sr=44100, channels=2, amp=0.8)  # L = x, R = x / 2
    x = load_audio(str(path), SR, "here")
    assert x.ndim == 1 and x.dtype == np.float32
    assert len(x) == math.ceil(22050 * 160 / 441) == 8000
    t = np.arange(len(x)) / SR
    expected = 0.75 * 0.8 * np.sin(2 * np.pi * 440 * t)  # mean of the two channels
    assert np.abs(x[200:-200] - expected[200:-200]).max() < 0.01  # edges carry the filter's transient
    dm = AudioDataModule(train_file=str(write_csv(tmp_path / "t.csv", [{"path": "stereo.wav", "label": "a"}])),
                         normalize=False, **kw())
    b = next(iter(dm.train_dataloader()))
    assert b["input_values"].shape == (1, 8000) and b["lengths"].tolist() == [8000]


def test_normalisation_and_preprocessor(tmp_path):
    tone(tmp_path / "a.wav", seconds=0.2, amp=0.1)
    train = write_csv(tmp_path / "t.csv", [{"path": "a.wav", "label": "a"}])
    x = next(iter(AudioDataModule(train_file=str(train), **kw()).train_dataloader()))["input_values"][0]
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-3
    raw = next(iter(AudioDataModule(train_file=str(train), normalize=False, **kw()).train_dataloader()))
    assert abs(raw["input_values"].abs().max().item() - 0.1) < 1e-3
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 8000, "do_normalize": False}))
    dm = AudioDataModule(train_file=str(train), preprocessor=str(ckpt), **kw())
    assert dm.sampling_rate == 8000 and dm.normalize is False
    b = next(iter(dm.train_dataloader()))
    assert b["lengths"].tolist() == [1600] and abs(b["input_values"].abs().max().item() - 0.1) < 2e-3
    assert dm.preprocessor_config()["sampling_rate"] == 8000
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": "fast"}))
    with pytest.raises(DataError, match="sampling_rate"):
        AudioDataModule(train_file=str(train), preprocessor=str(ckpt), **kw())


def test_padding_and_attention_mask(tmp_path):
    rows = [{"path": tone(tmp_path / f"{i}.wav", seconds=s).name, "label": "a"} for i, s in enumerate((0.05, 0.1, 0.2))]
    dm = AudioDataModule(train_file=str(write_csv(tmp_path / "t.csv", rows)), bucket_by_length=False, **kw())
    b = next(iter(dm.train_dataloader()))
    order = np.argsort(b["lengths"].numpy())
    assert b["lengths"][order].tolist() == [800, 1600, 3200] and b["input_values"].shape == (3, 3200)
    for row, n in enumerate(b["lengths"].tolist()):
        assert b["attention_mask"][row, :n].all() and not b["attention_mask"][row, n:].any()
        assert torch.all(b["input_values"][row, n:] == 0) and b["input_values"][row, :n].abs().sum() > 0


def test_transcription_batches_carry_text(tmp_path):
    rows = [{"path": tone(tmp_path / f"{i}.flac", seconds=0.05 * (i + 1)).name, "text": f" two  {w} "}
            for i, w in enumerate(["one", "nine", "zero"])]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    dm = AudioDataModule(train_file=str(train), task="transcription", **kw())
    assert not hasattr(dm, "num_classes") and dm.transcripts("train") == ["two one", "two nine", "two zero"]
    b = next(iter(dm.train_dataloader()))
    assert sorted(b["text"]) == ["two nine", "two one", "two zero"]
    assert dm.vocab.tokens == {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("einortwz")}}
    assert [dm.vocab.decode(ids[ids >= 0].tolist()) for ids in b["labels"]] == b["text"]  # the CTC targets
    with pytest.raises(DataError, match=r"line 2: the 'text' field is empty"):
        write_jsonl(train, [rows[0], {"path": rows[1]["path"], "text": " "}])
        AudioDataModule(train_file=str(train), task="transcription", **kw()).transcripts()


# ----------------------------------------------------------------------------- sampler


def varied_clips(tmp_path: Path, n: int = 24) -> Path:
    """A manifest of n clips of 0.02 .. 0.5 s in shuffled order."""
    seconds = np.random.default_rng(0).permutation(np.linspace(0.02, 0.5, n))
    rows = [{"path": tone(tmp_path / f"c{i}.wav", seconds=float(s)).name, "label": "a" if i % 2 else "b"}
            for i, s in enumerate(seconds)]
    return write_csv(tmp_path / "t.csv", rows)


def test_bucketed_training_batches_group_lengths_and_resume_mid_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    manifest = varied_clips(tmp_path)

    def loader(bucket_by_length=True):
        dm = AudioDataModule(train_file=str(manifest), max_duration=0.3, long_clips="crop",
                             bucket_by_length=bucket_by_length, **kw())
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        return loader

    def spread(loader) -> float:  # mean padding per clip, in samples
        return float(np.mean([(b["input_values"].shape[1] - b["lengths"]).float().mean() for b in loader]))

    full = [(b["paths"], b["input_values"]) for b in loader()]
    paths = [p for ps, _ in full for p in ps]
    assert sorted(paths) == sorted(str(tmp_path / f"c{i}.wav") for i in range(24))  # every clip once
    assert spread(loader()) < 0.25 * spread(loader(bucket_by_length=False))  # similar lengths in a batch
    first = loader()
    it = iter(first)
    next(it), next(it)
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(1)
    rest = [(b["paths"], b["input_values"]) for b in resumed]
    assert [p for p, _ in rest] == [p for p, _ in full[2:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, full[2:]))  # same random crops


def test_speed_perturbation_changes_train_clips_reproducibly(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "1")
    rows = [{"path": tone(tmp_path / f"{i}.wav", seconds=0.5).name, "label": "a"} for i in range(8)]
    manifest = write_csv(tmp_path / "t.csv", rows)

    def lengths(speed, split="train"):
        dm = AudioDataModule(train_file=str(manifest), val_file=str(manifest), speed_perturbation=speed, **kw())
        loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
        if split == "train":
            loader.sampler.set_epoch(0)
        return sorted(n for b in loader for n in b["lengths"].tolist())

    perturbed = lengths([0.8, 1.25])
    assert all(0.5 * SR / 1.25 - 2 <= n <= 0.5 * SR / 0.8 + 2 for n in perturbed)
    assert len(set(perturbed)) > 4 and perturbed == lengths([0.8, 1.25])  # varied, seeded
    assert lengths(None) == lengths([0.8, 1.25], split="val") == [8000] * 8  # eval untouched
    with pytest.raises(DataError, match=r"speed_perturbation is \[1.2, 0.9\]"):
        AudioDataModule(train_file=str(manifest), speed_perturbation=[1.2, 0.9], **kw())


def test_eval_batches_run_in_length_order(tmp_path):
    dm = AudioDataModule(train_file=str(varied_clips(tmp_path)), val_file=str(tmp_path / "t.csv"), **kw())
    dm.setup("validate")
    lengths = [n for b in dm.val_dataloader() for n in b["lengths"].tolist()]
    assert lengths == sorted(lengths) and len(lengths) == 24


def test_lightning_keeps_our_samplers_under_ddp(folder):
    import lightning as L

    from lit_tasks.data.samplers import LengthGroupedSampler, UnpaddedDistributedSampler

    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False)
    dm = AudioDataModule(root=str(folder), **kw())
    dm.trainer = trainer
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert isinstance(train.sampler, LengthGroupedSampler) and train.sampler.num_replicas == 2
    assert isinstance(val.sampler, UnpaddedDistributedSampler) and val.sampler.num_replicas == 2
    for loader in (train, val):
        assert not trainer._data_connector._requires_distributed_sampler(loader)
    lengths = val.dataset.lengths()
    assert sorted(val.sampler.order) == list(range(6)) and list(val.sampler) == val.sampler.order[0::2]
    assert [lengths[i] for i in val.sampler.order] == sorted(lengths)  # length order, unpadded shares
    plain = AudioDataModule(root=str(folder), bucket_by_length=False, **kw())
    plain.trainer = trainer
    assert list(plain.val_dataloader().sampler) == [0, 2, 4]  # unpadded, file order


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kind", "says"), [("garbage", "cannot decode"), ("truncated", "truncated"),
                                           ("empty_file", "cannot decode"), ("zero_frames", "no samples")])
def test_bad_audio_errors_name_file_and_row(folder, kind, says):
    bad = folder / "val" / "dog" / "bad.wav"
    if kind == "garbage":
        bad.write_bytes(b"this is not audio" * 10)
    elif kind == "truncated":
        data = tone(folder / "full.wav", seconds=0.2).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "empty_file":
        bad.write_bytes(b"")
    else:
        sf.write(bad, np.zeros(0), SR)
    rows = rows_of(folder, "val")
    row = next(i for i, r in enumerate(rows, 1) if r["path"].endswith("bad.wav"))
    val = write_csv(folder / "val.csv", rows)
    write_csv(folder / "train.csv", rows_of(folder, "train"))
    dm = AudioDataModule(train_file=str(folder / "train.csv"), val_file=str(val), **kw())
    with pytest.raises(BadAudioError, match=rf"val\.csv row {row} \(.*bad\.wav\): .*{says}") as e:
        dm.setup("validate")
    assert isinstance(e.value, DataError) and "\n" not in str(e.value)  # one paragraph for the CLI
    with pytest.raises(DataError, match=rf"bad\.wav.*{says}"):  # class folders name the file too
        AudioDataModule(root=str(folder), **kw()).setup("validate")
    with pytest.raises(BadAudioError, match=rf"clip 7: .*{says}"):  # and so does decoding
        load_audio(str(bad), SR, "clip 7")


def test_predict_file_is_unlabelled(folder):
    write_csv(folder / "train.csv", rows_of(folder, "train"))
    write_csv(folder / "predict.csv", rows_of(folder, "test"), fields=("path",))
    dm = AudioDataModule(train_file=str(folder / "train.csv"), predict_file=str(folder / "predict.csv"), **kw())
    batches = list(dm.predict_dataloader())
    assert [p for b in batches for p in b["paths"]] == [str(folder / r["path"]) for r in rows_of(folder, "test")]
    assert all(b["labels"].tolist() == [-1] * len(b["paths"]) for b in batches)


def test_skip_bad_audio_counts_and_names_them(folder, caplog):
    (folder / "val" / "dog" / "bad.wav").write_bytes(b"")
    rows = rows_of(folder, "val")
    # A clip whose manifest gives a duration is not read at set-up: it fails at decode time.
    (folder / "val" / "emu" / "late.flac").write_bytes(b"fLaC garbage")
    rows.append({"path": "val/emu/late.flac", "label": "emu", "duration": 0.1})
    write_csv(folder / "train.csv", rows_of(folder, "train"))
    val = write_csv(folder / "val.csv", rows, fields=("path", "label", "duration"))
    dm = AudioDataModule(train_file=str(folder / "train.csv"), val_file=str(val), skip_bad_audio=True,
                         **kw(batch_size=16))
    with caplog.at_level(logging.WARNING, logger="lit_tasks.data"):
        dm.setup("validate")
        batches = list(dm.val_dataloader())
    assert dm.report["val"]["bad"] == 1 and dm.report["val"]["kept"] == 7
    assert dm.report["val"]["bad_files"][0].endswith("bad.wav")
    assert sum(len(b["paths"]) for b in batches) == 6
    assert [p for b in batches for p in b["skipped"]] == [str(folder / "val" / "emu" / "late.flac")]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "bad.wav" in messages and "late.flac" in messages


def test_max_duration_crop_filter_error(tmp_path):
    rows = [{"path": tone(tmp_path / f"{i}.wav", seconds=s).name, "label": "a"} for i, s in enumerate((0.1, 0.3, 0.5))]
    train = write_csv(tmp_path / "t.csv", rows)
    dm = AudioDataModule(train_file=str(train), val_file=str(train), max_duration=0.2, long_clips="crop", **kw())
    dm.setup("fit")
    assert dm.report["train"]["cropped"] == 2
    torch.manual_seed(0)
    b = next(iter(dm.train_dataloader()))
    assert sorted(b["lengths"].tolist()) == [1600, 3200, 3200]
    starts = set()
    for seed in range(6):  # random windows in train
        torch.manual_seed(seed)
        starts.add(dm._datasets["train"][2]["input_values"][:5].sum().item())
    assert len(starts) > 1
    raw = load_audio(str(tmp_path / "2.wav"), SR, "x")  # eval takes the centre window
    centre = torch.from_numpy(raw[(8000 - 3200) // 2:][:3200])
    expected = (centre - centre.mean()) / torch.sqrt(centre.var(unbiased=False) + 1e-7)
    assert torch.allclose(dm._datasets["val"][2]["input_values"], expected, atol=1e-4)
    dm = AudioDataModule(train_file=str(train), max_duration=0.2, long_clips="filter", **kw())
    assert len(dm.records("train")) == 1 and dm.report["train"]["filtered"] == 2
    with pytest.raises(DataError, match=r"t\.csv row 2 .*1\.wav.*0\.30 s"):
        AudioDataModule(train_file=str(train), max_duration=0.2, long_clips="error", **kw()).records("train")
    with pytest.raises(DataError, match="transcript"):
        AudioDataModule(train_file=str(train), task="transcription", max_duration=0.2, long_clips="crop")


def test_label_unseen_in_train_names_file_and_row(folder):
    write_csv(folder / "train.csv", rows_of(folder, "train"))
    rows = rows_of(folder, "val")
    rows[3]["label"] = "yak"
    val = write_csv(folder / "val.csv", rows)
    dm = AudioDataModule(train_file=str(folder / "train.csv"), val_file=str(val), **kw())
    with pytest.raises(DataError, match=r"val\.csv row 4 .*label 'yak'"):
        dm.setup("validate")


def test_missing_column_and_missing_file(folder):
    write_csv(folder / "train.csv", rows_of(folder, "train"), fields=("path",))
    with pytest.raises(DataError, match="no column 'label'"):
        AudioDataModule(train_file=str(folder / "train.csv"))
    write_csv(folder / "train.csv", [{"path": "nope.wav", "label": "a"}])
    with pytest.raises(DataError, match=r"row 1 .*nope\.wav.*does not exist"):
        AudioDataModule(train_file=str(folder / "train.csv"), **kw()).setup("fit")


# --------------------------------------------------------------------------- demo data


def _demo(name: str) -> Path:
    root = REPO / "demo_data" / name
    if not root.is_dir():
        pytest.fail(f"{root} missing; run scripts/make_speech_demo_data.py")
    return root


def test_spoken_digits_demo_data():
    root = _demo("spoken_digits")
    words = ["eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero"]
    voices = {}
    for split, n in (("train", 300), ("val", 60), ("test", 60)):
        with open(root / f"{split}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n and sorted({r["label"] for r in rows}) == words
        assert all(Path(r["path"]).parent.name == r["label"] for r in rows)
        voices[split] = {r["voice"] for r in rows}
        assert len(list((root / split).rglob("*.flac"))) == n
    assert not voices["train"] & (voices["val"] | voices["test"]) and not voices["val"] & voices["test"]
    info = sf.info(str(next((root / "test" / "nine").iterdir())))
    assert info.samplerate == 8000 and info.channels == 1 and info.format == "FLAC" and info.subtype == "PCM_16"
    dm = AudioDataModule(root=str(root), num_workers=0)
    assert dm.label_names == words
    same = AudioDataModule(train_file=str(root / "train.csv"), num_workers=0)
    assert same.label_names == words


def test_digit_strings_demo_data():
    root = _demo("digit_strings")
    digits = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    voices = {}
    for split, n in (("train", 156), ("val", 24), ("test", 24)):
        rows = [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == n and all((root / r["path"]).is_file() for r in rows)
        for r in rows:
            words = r["text"].split()
            assert 2 <= len(words) <= 5 and set(words) <= digits and r["text"] == " ".join(words)
        voices[split] = {r["voice"] for r in rows}
    assert not voices["train"] & (voices["val"] | voices["test"])
    info = sf.info(str(root / rows[0]["path"]))
    assert info.samplerate == 8000 and info.channels == 1 and info.format == "FLAC"  # stored in the telephone band
    dm = AudioDataModule(train_file=str(root / "train.jsonl"), task="transcription", num_workers=0)
    assert len(dm.transcripts("train")) == 156 and dm.sampling_rate == 16000
    first = json.loads((root / "train.jsonl").read_text().splitlines()[0])
    frames_8k = sf.info(str(root / first["path"])).frames
    assert abs(len(dm.train_dataloader().dataset[0]["input_values"]) - 2 * frames_8k) <= 1  # resampled to 16 kHz


def test_cached_clips_give_the_same_batches_without_decoding_again(folder, monkeypatch, caplog):
    """cache_audio decodes and resamples each clip once, at setup; epochs then give the same
    batches (speed perturbation included) as decoding every time; a clip that fails to decode
    still fails, or is skipped, when it is asked for."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    rows = rows_of(folder, "train")
    (folder / "train" / "emu" / "late.flac").write_bytes(b"fLaC garbage")
    rows.append({"path": "train/emu/late.flac", "label": "emu", "duration": 0.1})
    train = write_csv(folder / "train.csv", rows, fields=("path", "label", "duration"))
    kwargs = dict(train_file=str(train), val_file=str(train), speed_perturbation=[0.9, 1.1], skip_bad_audio=True,
                  **kw())

    def epoch(dm):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        return list(loader)

    expected = epoch(AudioDataModule(**kwargs))
    cached = AudioDataModule(cache_audio=True, **kwargs)
    with caplog.at_level(logging.INFO, logger="lit_tasks.data.audio"):
        cached.setup("fit")
    assert any("cache_audio: decoded the" in r.getMessage() for r in caplog.records)
    strict = AudioDataModule(cache_audio=True, **{**kwargs, "skip_bad_audio": False})
    strict.setup("fit")
    import lit_tasks.data.audio_sources as sources

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(sources, "load_audio", no_decoding)
    got = epoch(cached)
    assert [b["paths"] for b in got] == [b["paths"] for b in expected]
    assert all(torch.equal(g["input_values"], e["input_values"]) for g, e in zip(got, expected))
    assert [p for b in got for p in b["skipped"]] == [str(folder / "train" / "emu" / "late.flac")]
    with pytest.raises(DataError, match="late.flac"):
        epoch(strict)
