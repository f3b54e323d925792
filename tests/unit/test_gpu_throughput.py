"""benchmarks/gpu_throughput.py: its model-FLOPs count (against a hand count and against torch's
FLOP counter on the real zoo models), the MFU arithmetic, the table of peaks, and the row loop's
budget, out-of-memory and failure handling. Nothing here is timed."""

from __future__ import annotations

import argparse
import sys
import time

import pytest
import torch
from helpers import load_script
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lit_tasks import zoo

_path = list(sys.path)
gt = load_script("benchmarks/gpu_throughput.py")
sys.path[:] = _path  # the script puts benchmarks/ first (for timing.py); keep it out of the other tests

CPU = torch.device("cpu")
TINY_ARGS = argparse.Namespace(shapes="tiny", bert_batch=2, bert_seq=16, gpt2_batch=2, gpt2_seq=16)


def test_vit_flops_equal_a_hand_count():
    config = zoo.PRESETS["vit-test"][1]  # 32 x 32 images, 8 x 8 patches, 3 channels, D 32, F 64, 2 layers
    patches, tokens = 16, 17
    embed = 2 * patches * (3 * 8 * 8) * 32
    per_layer = 2 * tokens * (32 * 96 + 32 * 32 + 32 * 64 + 64 * 32) + 2 * 2 * tokens * tokens * 32
    head = 2 * 32 * 5
    assert embed + 2 * per_layer + head == 827_968
    assert gt.vit_flops(config, num_classes=5) == 827_968


def test_gpt2_flops_equal_a_hand_count():
    config = zoo.PRESETS["gpt2-test"][1]  # D 32, inner 128, 2 layers, vocabulary 99
    T = 10
    per_layer = 2 * T * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32) + 2 * 2 * T * T * 32
    lm_head = 2 * T * 32 * 99
    assert 2 * per_layer + lm_head == 580_480
    assert gt.gpt2_flops(config, T) == 580_480


@pytest.mark.parametrize("build", [lambda: gt.vit_case(TINY_ARGS, CPU, 2), lambda: gt.bert_case(TINY_ARGS, CPU),
                                   lambda: gt.gpt2_case(TINY_ARGS, CPU)], ids=["vit", "bert", "gpt2"])
def test_forward_flops_are_the_models_matrix_products(build):
    """torch's counter sees every matmul, conv and (math) attention product the model runs."""
    case = build()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        case.model.eval()(*case.inputs)
    assert counter.get_total_flops() == case.forward_flops


def test_training_counts_three_forwards():
    """Backward runs two products per forward one (no conv here, whose input needs no gradient)."""
    case = gt.gpt2_case(TINY_ARGS, CPU)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        case.loss(case.model.train()(*case.inputs)).backward()
    assert counter.get_total_flops() == gt.TRAIN_FACTOR * case.forward_flops


def test_mfu_is_achieved_over_peak():
    assert gt.mfu(flops_per_step=3e12, step_s=0.01, peak=1000.0) == pytest.approx(0.3)  # 300 of 1000 TFLOP/s
    assert gt.mfu(flops_per_step=3e12, step_s=0.01, peak=None) is None


@pytest.mark.parametrize("name, sms, expected", [
    ("NVIDIA H100 80GB HBM3", 132, 989.0), ("NVIDIA H100 PCIe", 114, 756.0), ("NVIDIA H100 NVL", 132, 835.0),
    ("NVIDIA H200", 132, 989.0), ("NVIDIA A100-SXM4-80GB", 108, 312.0), ("NVIDIA A100 80GB PCIe", 108, 312.0),
    ("NVIDIA L40S", 142, 362.0), ("NVIDIA GeForce RTX 4090", 128, 165.2), ("NVIDIA A10", 72, 125.0),
    ("NVIDIA L4", 58, 121.0),
    # not in the table: no peak, by name alone (given the SM count of the entry the name resembles)
    ("NVIDIA A10G", 72, None), ("NVIDIA L40", 142, None), ("NVIDIA GeForce RTX 4090 D", 128, None),
    ("NVIDIA GeForce RTX 4090 Laptop GPU", 128, None),
    # not the whole GPU: no peak
    ("Tesla T4", 40, None), ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", 14, None),
])
def test_peak_by_device_name(name, sms, expected):
    peak, why = gt.peak_tflops(name, sms, "bf16")
    assert peak == expected, why
    assert gt.peak_tflops(name, sms, "fp16")[0] == expected


def test_no_peak_for_fp32():
    assert gt.peak_tflops("NVIDIA H100 80GB HBM3", 132, "fp32")[0] is None


@pytest.fixture(autouse=True)
def no_collection(monkeypatch):
    """run_rows collects garbage after each row (a second each here, nothing to free)."""
    monkeypatch.setattr(gt, "gc", argparse.Namespace(collect=lambda: 0))


def rows_args(**overrides) -> argparse.Namespace:
    return argparse.Namespace(**{"models": ["vit", "bert", "gpt2"], "compile": False, "budget_s": None,
                                 "precision": "bf16", "shapes": "tiny", **overrides})


def test_out_of_memory_and_failures_do_not_stop_the_other_rows(monkeypatch, capsys):
    def measure(args, name, compiled, device, peak):
        if name == "bert":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore" if not compiled else "")
        if name == "gpt2" and compiled:
            raise RuntimeError("inductor failed")
        return gt.Row(*gt.label(name, args.shapes), args.precision, compiled, items_per_s=1.0)

    monkeypatch.setattr(gt, "measure", measure)
    rows = gt.run_rows(rows_args(compile=True), CPU, None, time.perf_counter())
    assert [(r.model, r.compile, r.status) for r in rows] == [
        ("ViT-B/16 (tiny)", False, "ok"),
        ("BERT-base (tiny)", False, "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"),
        ("GPT-2 small (tiny)", False, "ok"),
        ("ViT-B/16 (tiny)", True, "ok"),
        ("BERT-base (tiny)", True, "out of memory: "),
        ("GPT-2 small (tiny)", True, "error: RuntimeError: inductor failed"),
    ]
    assert "inductor failed" in capsys.readouterr().err  # the traceback is printed


def test_rows_past_the_budget_are_skipped(monkeypatch):
    monkeypatch.setattr(gt, "measure", lambda *a: pytest.fail("measured a row past the budget"))
    rows = gt.run_rows(rows_args(budget_s=5.0), CPU, None, time.perf_counter() - 5.0)
    assert [r.status.split(":")[0] for r in rows] == ["skipped"] * 3
    assert "| GPT-2 small (tiny) | train | bf16 | no |" in gt.table(rows)


def test_sequence_longer_than_the_positions_is_an_option_error(capsys):
    with pytest.raises(SystemExit):
        gt.parse_args(["--device", "cpu", "--gpt2-seq", "129"])
    assert "--gpt2-seq 129: the tiny gpt2 model has n_positions=128" in capsys.readouterr().err
