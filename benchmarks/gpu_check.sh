#!/usr/bin/env bash
# The GPU check: one script, under 8 minutes on one GPU, run when a GPU is lent.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]        # default: $OUT if set, else gpu_check_out/
#
# 1. the machine: nvidia-smi, torch / CUDA / lightning versions (seconds);
# 2. benchmarks/gpu_throughput.py (about 2.5 min): ViT-B/16 bf16 training images/s and inference
#    images/s (anchor: timm's ViT-B/16 AMP inference, 2.8k img/s on an RTX 4090), BERT-base and
#    GPT-2 small training tokens/s, each with its model FLOPs utilisation (anchor: 40-46% MFU of
#    open LLM trainers on H100-class GPUs); then the same compiled while its budget lasts;
# 3. benchmarks/gpu_recipes.py (about 4.5 min): every recipe for a few steps in bf16-mixed and
#    16-mixed, one FSDP run of ViT-L/16, then every recipe with --run.compile, while its budget
#    lasts (rows past it are listed as skipped).
# Tables go to stdout and to OUTPUT_DIR/*.md, rows to OUTPUT_DIR/*.json; copy the figures into
# benchmarks/README.md ("GPU check"). Needs a Python with CUDA torch and the project's packages
# (PYTHON, default python3); the MiniLM recipes also need models/all-MiniLM-L6-v2 (setup.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_check_out}}"
python="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

status=0
echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/machine.txt"
"$python" -c 'import torch, lightning; print("torch", torch.__version__, "cuda", torch.version.cuda, "lightning", lightning.__version__, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' 2>&1 | tee -a "$out/machine.txt" || status=1

echo "== throughput and MFU (benchmarks/gpu_throughput.py)"
"$python" benchmarks/gpu_throughput.py --device cuda --compile --budget-s 150 \
    --json "$out/throughput.json" 2>&1 | tee "$out/throughput.md" || status=1

echo "== recipes: bf16, fp16, FSDP, compiled (benchmarks/gpu_recipes.py)"
"$python" benchmarks/gpu_recipes.py --accelerator cuda --budget-s 270 \
    --json "$out/gpu_recipes.json" 2>&1 | tee "$out/gpu_recipes.md" || status=1

echo "== done: $out (exit $status)"
exit "$status"
