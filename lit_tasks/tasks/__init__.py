"""One LightningModule per task. Configs name them by class path, e.g.
`lit_tasks.tasks.ImageClassification`."""

from lit_tasks.tasks.image_classification import ImageClassification

__all__ = ["ImageClassification"]
