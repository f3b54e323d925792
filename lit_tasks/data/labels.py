"""Class names in a stable order, for every DataModule that collects them from its data."""

from __future__ import annotations


def sort_labels(labels: set[str]) -> list[str]:
    """Sorted class names: numerically when every label is an integer ("2" before "10")."""
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)
