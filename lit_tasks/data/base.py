"""What the modality DataModules share: split loaders."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader


class SplitDataModule(L.LightningDataModule):
    """A DataModule whose train / val / test / predict loaders all come from `_loader(split)`."""

    def __str__(self) -> str:
        # Lightning's own builds every loader, i.e. reads and encodes every split (test and predict
        # during fit), and jsonargparse formats the DataModule when a link's source attribute is absent.
        return type(self).__name__

    def _loader(self, split: str) -> DataLoader:
        raise NotImplementedError

    def splits_for(self, stage: str | None) -> list[str]:
        """The splits a Lightning `stage` reads ("fit": train and val, ...); None: every split
        the DataModule has (`has_split`)."""
        if stage is None:
            return [s for s in ("train", "val", "test") if self.has_split(s)]
        return {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["predict"]}[stage]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
