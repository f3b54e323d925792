"""The pieces the families' HF key maps are made of.

HF keeps an attention's query, key and value projections as three Linears; ours is one fused
`qkv` Linear (lit_tasks.zoo.layers.Attention). :func:`fuse` concatenates the three (weights and
biases, along the output dimension) and :func:`split` is its inverse. :func:`rename` renames
module paths by a table, :func:`inverse` gives the table back.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fuse(sd: dict[str, Tensor], parts: tuple[str, ...], fused: str) -> dict[str, Tensor]:
    """`<prefix><part>.<weight|bias>` for every part of `parts` -> one `<prefix><fused>.<kind>`
    tensor, the parts concatenated in that order. A prefix missing a part keeps its keys as
    they were, so that a strict load names them."""
    out, groups = {}, {}
    for key, tensor in sd.items():
        head, _, kind = key.rpartition(".")
        part = next((p for p in parts if head == p or head.endswith("." + p)), None)
        if part is None or kind not in ("weight", "bias"):
            out[key] = tensor
            continue
        groups.setdefault((head[: len(head) - len(part)], kind), {})[part] = (key, tensor)
    for (prefix, kind), found in groups.items():
        if set(found) == set(parts):
            out[f"{prefix}{fused}.{kind}"] = torch.cat([found[p][1] for p in parts], dim=0)
        else:
            out.update(dict(found.values()))
    return out


def split(sd: dict[str, Tensor], fused: str, parts: tuple[str, ...]) -> dict[str, Tensor]:
    """The inverse of :func:`fuse`: each `<prefix><fused>.<kind>` cut into equal parts."""
    out = {}
    for key, tensor in sd.items():
        head, _, kind = key.rpartition(".")
        if (head == fused or head.endswith("." + fused)) and kind in ("weight", "bias"):
            prefix = head[: len(head) - len(fused)]
            out.update({f"{prefix}{p}.{kind}": chunk for p, chunk in zip(parts, tensor.chunk(len(parts), dim=0))})
        else:
            out[key] = tensor
    return out


def rename(sd: dict[str, Tensor], names: dict[str, str]) -> dict[str, Tensor]:
    """Replace the module path `old` by `new` wherever a key has `.old.` (or starts with `old.`):
    the first entry of `names` that fits, once per key."""
    out = {}
    for key, tensor in sd.items():
        for old, new in names.items():
            if f".{old}." in f".{key}":
                key = f".{key}".replace(f".{old}.", f".{new}.", 1)[1:]
                break
        out[key] = tensor
    return out


def inverse(names: dict[str, str]) -> dict[str, str]:
    """The `rename` table that undoes `names` (same order)."""
    return {new: old for old, new in names.items()}
