"""Wav2Vec2Pretraining: masks inside real frames, distractors, the Gumbel temperature schedule,
the loss falling on a fixed batch, and checkpoints (tiny wav2vec2-test models)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_tasks.errors import CheckpointError, ConfigError
from lit_tasks.tasks import Wav2Vec2Pretraining
from lit_tasks.metrics.codebook import CodebookPerplexity
from lit_tasks.tasks.contrastive_masks import draw_masks
from lit_tasks.zoo.wav2vec2_pretraining import contrastive_loss

LAYER_NORM = {"feat_extract_norm": "layer", "conv_bias": True}  # padding-independent feature encoder


def test_masks_cover_only_real_frames_and_a_row_ignores_its_batch():
    frames, seeds = torch.tensor([60, 25, 7, 12]), [11, 12, 13, 14]
    mask, _ = draw_masks(frames, 60, seeds, mask_prob=0.65, mask_length=5, min_spans=2, num_negatives=4)
    assert mask.shape == (4, 60) and mask.dtype == torch.bool
    for row, n in enumerate(frames.tolist()):
        assert not mask[row, n:].any(), "a masked padding frame"
    assert mask[0].sum() >= 10 and mask[1].sum() >= 5 and mask[3].sum() >= 5  # >= 2 spans (they may overlap)
    assert 5 <= mask[2].sum() <= 7  # 7 frames: 2 overlapping spans of 5
    # the same seed and length give the same row, whatever the batch around it
    alone, _ = draw_masks(frames[1:2], 33, seeds[1:2], 0.65, 5, 2, 4)
    assert torch.equal(alone[0], mask[1, :33])
    other, _ = draw_masks(frames, 60, [21, 22, 23, 24], 0.65, 5, 2, 4)
    assert not torch.equal(other, mask)


def test_too_short_rows_get_no_mask():
    mask, _ = draw_masks(torch.tensor([3, 40]), 40, [1, 2], 0.65, 10, 2, 4)
    assert mask[0].sum() == 0 and mask[1].sum() >= 10


def test_negatives_are_other_masked_frames_of_the_same_clip():
    frames, T, K = torch.tensor([50, 31, 44]), 50, 9
    for seed in range(5):
        seeds = [seed * 10 + b for b in range(3)]
        mask, negatives = draw_masks(frames, T, seeds, 0.65, 4, 2, K)
        assert negatives.shape == (3, T, K)
        for b in range(3):
            masked = set(mask[b].nonzero().flatten().tolist())
            for t in masked:
                picks = negatives[b, t].tolist()
                assert all(p // T == b for p in picks), "a distractor from another clip"
                assert all(p % T in masked and p % T != t for p in picks), (t, picks)


def test_gumbel_temperature_follows_the_global_step_also_after_a_resume(tmp_path):
    """The temperature each step trains with: max(2 * d**step, 0.5), also after resuming."""
    decay = 0.8
    task = Wav2Vec2Pretraining(backbone="wav2vec2-test", gumbel_temperature_decay=decay, mask_length=2)
    assert task.gumbel_temperature(0) == 2.0 and task.gumbel_temperature(3) == pytest.approx(2 * decay ** 3)
    assert task.gumbel_temperature(100) == 0.5

    seen: list[float] = []

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(pl_module.net.quantizer.temperature)

    def fit(max_steps: int, ckpt: str | None = None) -> L.Trainer:
        trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0, callbacks=[Record()])
        trainer.fit(task, train_dataloaders=_loader(_batch(), 8), ckpt_path=ckpt)
        return trainer

    trainer = fit(3)
    trainer.save_checkpoint(tmp_path / "step3.ckpt")
    task.net.set_gumbel_temperature(2.0)  # a fresh process would start at the maximum
    fit(5, str(tmp_path / "step3.ckpt"))
    assert seen == pytest.approx([2 * decay ** s for s in range(5)])


def _batch(n: int = 4, seed: int = 0) -> dict:
    """n clips of tones with a few harmonics, 0.1-0.2 s at 16 kHz, zero-padded."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        t = np.arange(int(rng.uniform(0.1, 0.2) * 16000)) / 16000
        f = rng.choice([300.0, 700.0, 1500.0], size=4)
        x = np.concatenate([np.sin(2 * np.pi * fi * t[: len(t) // 4]) for fi in f])
        clips.append(torch.tensor((x - x.mean()) / (x.std() + 1e-7), dtype=torch.float32))
    L_ = max(len(c) for c in clips)
    batch = {"input_values": torch.zeros(n, L_), "attention_mask": torch.zeros(n, L_, dtype=torch.long),
             "paths": [f"clip_{i}.wav" for i in range(n)]}
    for i, c in enumerate(clips):
        batch["input_values"][i, : len(c)], batch["attention_mask"][i, : len(c)] = c, 1
    return batch


def _loader(batch: dict, times: int) -> torch.utils.data.DataLoader:
    """The same batch `times` times."""
    return torch.utils.data.DataLoader([batch] * times, batch_size=None)


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    task = Wav2Vec2Pretraining(backbone="wav2vec2-test", backbone_config={**LAYER_NORM, "layerdrop": 0.0},
                               mask_length=4, lr=3e-3, warmup_fraction=0.0, gumbel_temperature_decay=0.9)
    batch = _batch()
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    evaluate = L.Trainer(**quiet)
    before = evaluate.validate(task, _loader(batch, 1), verbose=False)[0]
    trainer = L.Trainer(max_steps=20, limit_val_batches=0, **quiet)
    trainer.fit(task, train_dataloaders=_loader(batch, 20))
    after = evaluate.validate(task, _loader(batch, 1), verbose=False)[0]
    assert trainer.global_step == 20
    assert after["val/contrastive_loss"] < 0.8 * before["val/contrastive_loss"], (before, after)
    assert after["val/loss"] < before["val/loss"]
    assert 0 <= before["val/contrastive_acc"] <= 1 and after["val/codebook_perplexity"] >= 1


def test_feature_grad_scale_scales_only_the_conv_encoder_gradient():
    torch.manual_seed(0)
    plain = Wav2Vec2Pretraining(backbone="wav2vec2-test", backbone_config=LAYER_NORM).eval()
    scaled = Wav2Vec2Pretraining(backbone="wav2vec2-test", backbone_config=LAYER_NORM, feature_grad_scale=0.1).eval()
    scaled.load_state_dict(plain.state_dict())
    x = _batch()["input_values"][:, :1600]  # (4, 1600): every clip lasts at least 0.1 s
    frames = int(plain.net.wav2vec2.output_lengths(torch.tensor(1600)))
    mask, negatives = draw_masks(torch.tensor([frames] * 4), frames, [1, 2, 3, 4], 0.65, 4, 2, 5)
    grads = []
    for task in (plain, scaled):
        out = task(x, None, mask)
        loss = contrastive_loss(out.projected_states, out.projected_quantized_states, mask, negatives)
        task.zero_grad()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None})
    for name, grad in grads[0].items():
        factor = 0.1 if name.startswith("net.wav2vec2.feature_extractor.") else 1.0
        assert torch.allclose(grads[1][name], grad * factor, rtol=1e-3, atol=1e-6), name
    assert any(n.startswith("net.wav2vec2.feature_extractor.") for n in grads[0])


def test_codebook_perplexity_pools_frames_and_ranks():
    one_code = torch.zeros(6, 2, 4)
    one_code[:, :, 0] = 1  # every frame picks code 0 in both groups
    spread = torch.eye(4)[torch.arange(6) % 4][:, None].repeat(1, 2, 1)  # codes 0..3 in turn
    metric = CodebookPerplexity(2, 4)
    metric.update(one_code)
    assert metric.compute().item() == pytest.approx(2.0)  # one code per group
    metric.reset()
    metric.update(spread[:4])
    assert metric.compute().item() == pytest.approx(8.0)  # all 4 codes evenly, 2 groups
    # two "ranks": pooled sums, not the mean of their perplexities
    a, b = CodebookPerplexity(2, 4), CodebookPerplexity(2, 4)
    a.update(one_code[:2])
    b.update(spread[1:4])  # codes 1, 2, 3
    mean_of_ranks = (a.clone().compute() + b.clone().compute()) / 2
    a.merge_state(b)
    expected = 2 * np.exp(-sum(p * np.log(p) for p in (0.4, 0.2, 0.2, 0.2)))
    assert a.compute().item() == pytest.approx(expected, rel=1e-5)
    assert mean_of_ranks.item() != pytest.approx(expected, rel=1e-3)


def test_checkpoint_carries_the_architecture():
    task = Wav2Vec2Pretraining(backbone="wav2vec2-test")
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    assert checkpoint["lit_tasks"]["spec"]["head"] == "pretraining"
    fresh = Wav2Vec2Pretraining(backbone="wav2vec2-test")
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])
    other = Wav2Vec2Pretraining(backbone="wav2vec2-test", backbone_config={"num_codevectors_per_group": 8})
    with pytest.raises(CheckpointError, match="'wav2vec2' pretraining model of another size .*num_codevectors_per_group"):
        other.on_load_checkpoint(checkpoint)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="model.mask_prob"):
        Wav2Vec2Pretraining(backbone="wav2vec2-test", mask_prob=0.0)
    with pytest.raises(ConfigError, match="min_gumbel_temperature"):
        Wav2Vec2Pretraining(backbone="wav2vec2-test", min_gumbel_temperature=3.0)
    with pytest.raises(ConfigError, match="mask embedding"):
        Wav2Vec2Pretraining(backbone="wav2vec2-test", backbone_config={"mask_time_prob": 0.0})
    task = Wav2Vec2Pretraining(backbone="wav2vec2-test", num_negatives=7, diversity_loss_weight=0.5)
    assert (task.num_negatives, task.diversity_loss_weight) == (7, 0.5)
    default = Wav2Vec2Pretraining(backbone="wav2vec2-test")  # the preset's config
    assert (default.num_negatives, default.diversity_loss_weight) == (5, 0.1)
