"""DataLoader workers of a DDP rank: started by a fork server, so a lock held by another thread
of the rank at that moment cannot be inherited held (the hang seen in 1 of 4 DDP runs); and
every DataModule's datasets and collates survive the pickling that this needs."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from faults import LOADER_LOCK, LockingDataset
from helpers import (make_audio_folder, make_image_folder, make_transcribed_audio, mlm_args, ner_args, qa_args,
                     text_args, tiny_args, tiny_audio_args, write_corpus, write_ner_data, write_ner_tokenizer,
                     write_qa_data, write_qa_tokenizer, write_text_csvs, write_text_tokenizer)

from lit_tasks.cli import LitTasksCLI
from lit_tasks.data.samplers import SeededIndex, split_loader


def test_rank_workers_start_while_another_thread_holds_a_lock():
    rank_1_of_2 = SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 2, "rank": 1})
    loader = split_loader(LockingDataset(8), train=False, batch_size=2, collate_fn=None, num_workers=2,
                          trainer=rank_1_of_2)
    loader.timeout = 90  # a worker stuck on the lock fails the test instead of hanging it
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with LOADER_LOCK:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        batches = iter(loader)  # the workers start now, while LOADER_LOCK is held
    finally:
        release.set()
        holder.join()
    assert [b.tolist() for b in batches] == [[1, 3], [5, 7]]  # rank 1's share, every item read


def datamodule_args(kind: str, tmp_path: Path) -> list[str]:
    """CLI arguments of a tiny run of each DataModule (the helpers the CLI tests use)."""
    runs = tmp_path / "runs"
    if kind == "image":
        return tiny_args(make_image_folder(tmp_path / "images", {"train": 2, "val": 1}), runs)
    if kind == "audio":
        return tiny_audio_args(make_audio_folder(tmp_path / "audio", {"train": 2, "val": 1}), runs, "classification")
    if kind == "speech":
        data = make_transcribed_audio(tmp_path / "speech", {"train": 4, "val": 2, "test": 2})
        return tiny_audio_args(data, runs, "transcription")
    if kind == "text":
        files = write_text_csvs(tmp_path / "text", {"train": 6, "val": 3})
        return text_args(files, runs, "--data.tokenizer", str(write_text_tokenizer(tmp_path / "tok")),
                         "--model.backbone", "bert-test")
    if kind == "ner":
        return ner_args(write_ner_tokenizer(tmp_path / "tok"), write_ner_data(tmp_path / "ner", {"train": 6, "val": 3}),
                        runs)
    if kind == "qa":
        return qa_args(write_qa_tokenizer(tmp_path / "tok"), write_qa_data(tmp_path / "qa", {"train": 6, "val": 3}),
                       runs)
    write_corpus(tmp_path / "corpus" / "train.txt", 20)
    write_corpus(tmp_path / "corpus" / "val.txt", 5, seed=1)
    return mlm_args(tmp_path / "corpus", runs)


@pytest.mark.parametrize("kind", ["image", "audio", "speech", "text", "ner", "qa", "mlm"])
def test_every_datamodule_pickles_its_datasets_and_collates(tmp_path, kind):
    """Fork-server workers get the dataset and collate pickled: for every DataModule, copies made
    by pickle give the very batches of the originals (same per-sample seeds)."""
    cli = LitTasksCLI(args=datamodule_args(kind, tmp_path), run=False)
    data = cli.datamodule
    data.prepare_data()
    data.setup("fit")
    for loader in (data.train_dataloader(), data.val_dataloader()):
        dataset, collate = pickle.loads(pickle.dumps((loader.dataset, loader.collate_fn)))
        indices = [SeededIndex(i, seed=1000 + i) for i in range(min(2, len(dataset)))]
        expected = loader.collate_fn([loader.dataset[i] for i in indices])
        got = collate([dataset[i] for i in indices])
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), key
            else:
                assert got[key] == value, key


def test_auto_workers_none_on_cpu_one_per_core_share_on_gpu(monkeypatch):
    """num_workers "auto": no worker processes when the model runs on the CPU (they would take
    the cores the model computes on), a core's worth each on an accelerator; a count is kept."""
    from lit_tasks.data import ImageDataModule
    from lit_tasks.data import samplers
    from lit_tasks.errors import DataError

    def trainer(device: str, devices: int):
        return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), num_devices=devices,
                               distributed_sampler_kwargs=None)

    monkeypatch.setattr(samplers.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert samplers.loader_workers("auto") == 0
    assert samplers.loader_workers("auto", trainer("cpu", 1)) == 0
    assert samplers.loader_workers("auto", trainer("cuda", 1)) == samplers.MAX_AUTO_WORKERS
    assert samplers.loader_workers("auto", trainer("cuda", 4)) == 3  # 16 cores / 4 devices, less the process
    assert samplers.loader_workers("auto", trainer("cuda", 16)) == 1
    assert samplers.loader_workers(3, trainer("cpu", 1)) == 3
    with pytest.raises(DataError, match="num_workers is -1"):
        samplers.loader_workers(-1)
    assert ImageDataModule().num_workers == "auto"
    loader = split_loader(list(range(4)), train=False, batch_size=2, collate_fn=None, num_workers="auto",
                          trainer=trainer("cpu", 1))
    assert loader.num_workers == 0
