"""pyproject.toml's floors stay at or above the versions the code was found to need
(scripts/check_floors.py runs the suite against them; its docstring says what broke below)."""

from __future__ import annotations

from helpers import load_script

NEEDED = {"jiwer": (4, 0), "torchmetrics": (1, 6), "jsonargparse": (4, 51), "lightning": (2, 6)}


def test_floors_are_what_the_code_needs():
    floors = load_script("scripts/check_floors.py").floors()
    for package, needed in NEEDED.items():
        assert tuple(int(x) for x in floors[package].split(".")[:2]) >= needed, (package, floors[package])
