"""pyproject.toml's floors stay at or above the versions the code was found to need
(scripts/check_floors.py runs the suite against them; its docstring says what broke below)."""

from __future__ import annotations

import importlib.util

from helpers import REPO

NEEDED = {"jiwer": (4, 0), "torchmetrics": (1, 6), "jsonargparse": (4, 51), "lightning": (2, 6)}


def test_floors_are_what_the_code_needs():
    spec = importlib.util.spec_from_file_location("check_floors", REPO / "scripts" / "check_floors.py")
    check_floors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_floors)
    floors = check_floors.floors()
    for package, needed in NEEDED.items():
        assert tuple(int(x) for x in floors[package].split(".")[:2]) >= needed, (package, floors[package])
