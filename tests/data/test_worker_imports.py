"""What a DataLoader worker started by spawn or a fork server (DDP ranks) imports to unpickle its
dataset and collate: no Lightning, which took 5.5 of the 7.3 s such a worker needed before its
first batch (benchmarks/loaders.py)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
from helpers import REPO, load_script

recipe_data = load_script("scripts/recipe_data.py")

UNPICKLE = """
import pickle, sys
dataset, collate = pickle.load(open(sys.argv[1], "rb"))
collate([dataset[0]])
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"lightning", "pytorch_lightning", "lightning_fabric"})))
print(" ".join(sorted(m for m in sys.modules if m.startswith("lit_tasks."))))
"""


@pytest.mark.parametrize("recipe, datamodule, overrides", [
    ("image_classification/vit_fashion_mnist.yaml", "ImageDataModule", {"cache_images": False}),
    ("audio_classification/wav2vec2_spoken_digits.yaml", "AudioDataModule", {"cache_audio": False}),
    ("speech_recognition/wav2vec2_ctc_digit_strings.yaml", "AudioDataModule", {"cache_audio": False}),
    ("object_detection/detr_resnet_pasted_objects.yaml", "CocoDetectionDataModule", {}),
])
def test_a_worker_unpickles_the_train_data_without_lightning(recipe, datamodule, overrides, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipes name their data relative to the repository root
    data = recipe_data.datamodule_from_config(REPO / "configs" / recipe, datamodule, **overrides)
    data.setup("fit")
    loader = data.train_dataloader()
    (tmp_path / "data.pkl").write_bytes(pickle.dumps((loader.dataset, loader.collate_fn)))
    result = subprocess.run([sys.executable, "-c", UNPICKLE, str(tmp_path / "data.pkl")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lightning, ours = result.stdout.split("\n")[:2]
    assert lightning == "", f"the worker imported {lightning}, through one of {ours}"
