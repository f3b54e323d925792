"""The training sampler/loader: order and augmentation fixed by (seed, epoch), resumable."""

from __future__ import annotations

import pickle

import torch
from helpers import make_image_folder

from lit_tasks.data import ImageDataModule
from lit_tasks.data.samplers import ResumableLoader, ResumableSampler, SeededIndex


def test_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        sampler = ResumableSampler(range(10), seed=seed)
        sampler.set_epoch(epoch)
        return [(int(i), i.seed) for i in sampler]

    torch.manual_seed(0)
    a = order(1, 0)
    torch.manual_seed(5)
    assert order(1, 0) == a
    assert sorted(i for i, _ in a) == list(range(10))
    assert order(1, 1) != a and order(2, 0) != a
    seeds = dict(a)
    assert {i: s for i, s in order(1, 1)} != seeds  # new augmentation every epoch


def test_ranks_share_one_padded_permutation():
    shards = [list(ResumableSampler(range(10), seed=3, num_replicas=4, rank=r)) for r in range(4)]
    assert {len(s) for s in shards} == {3}  # padded to 12
    flat = [int(i) for s in shards for i in s]
    assert set(flat) == set(range(10)) and len(flat) == 12


def test_seeded_index_is_an_int_that_pickles():
    key = pickle.loads(pickle.dumps(SeededIndex(7, 1234)))
    assert key == 7 and key.seed == 1234 and [10, 20, 30, 40, 50, 60, 70, 80][key] == 80


def test_loader_resumes_after_the_batches_done():
    sampler = ResumableSampler(range(10), seed=0)
    loader = ResumableLoader(range(10), sampler, batch_size=3)
    sampler.set_epoch(2)
    full = [b.tolist() for b in loader]
    assert len(full) == 4 == len(loader)
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    assert state == {"seed": 0, "epoch": 2, "batches": 2}

    fresh = ResumableLoader(range(10), ResumableSampler(range(10), seed=99), batch_size=3)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(2)  # Lightning sets the epoch before the first batch
    assert [b.tolist() for b in fresh] == full[2:]
    assert fresh.state_dict()["batches"] == 4
    assert [b.tolist() for b in fresh] == full  # the skip applies once


def test_checkpoint_at_an_epoch_end_starts_the_next_epoch_whole():
    loader = ResumableLoader(range(6), ResumableSampler(range(6), seed=0), batch_size=2)
    loader.load_state_dict({"seed": 0, "epoch": 1, "batches": 3})
    loader.sampler.set_epoch(2)
    assert len(list(loader)) == 3


def test_batches_do_not_depend_on_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    root = make_image_folder(tmp_path, {"train": 4, "val": 1})

    def batches(workers):
        dm = ImageDataModule(root=str(root), image_size=16, batch_size=4, num_workers=workers)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        return [(b["paths"], b["pixel_values"]) for b in loader]

    plain, pooled = batches(0), batches(2)
    assert [p for p, _ in plain] == [p for p, _ in pooled]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(plain, pooled))
