"""COCO box mAP/mAR as lit_tasks' object detection reports them, as an `evaluate` module."""

import datasets
import evaluate

from lit_tasks.errors import ConfigError
from lit_tasks.metrics.evaluate_modules import scoring

_DESCRIPTION = """\
COCO box detection scores: the 12 numbers of pycocotools' COCOeval(..., "bbox").summarize()
(map over IoU .50:.95, map_50, map_75, map_small/medium/large, mar_1, mar_10, mar_100,
mar_small/medium/large; -1 where there is no ground truth), over the images given. Computed by
lit_tasks.metrics.coco_map.CocoMeanAP, the metric lit_tasks' ObjectDetection task logs, so the
numbers equal the training's on the same detections. (lit_tasks predict keeps only detections
above model.predict_threshold and rounds them, so its predictions.jsonl usually scores lower
than the test run, which keeps every detection.)
"""

_CITATION = """\
@inproceedings{lin2014microsoft, title={Microsoft {COCO}: Common Objects in Context},
  author={Lin, Tsung-Yi and others}, booktitle={ECCV}, year={2014}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one dict per image: {"image_id": COCO image id, "boxes": [[x1, y1, x2, y2], ...]
        corners in the original image's pixels, "scores": [...], "category_ids": [...] COCO ids}.
    ground_truth: the COCO instances dict (images, annotations, categories) or the path of its
        json file. Every image of predictions must be among its images.
Returns:
    map, map_50, map_75, map_small, map_medium, map_large, mar_1, mar_10, mar_100, mar_small,
    mar_medium, mar_large: in [0, 1], -1 without ground truth.
Example:
    >>> coco = evaluate.load("<lit_tasks>/metrics/evaluate_modules/coco_map")
    >>> coco.compute(predictions=[{"image_id": 1, "boxes": [[10, 10, 50, 60]], "scores": [0.9],
    ...                            "category_ids": [3]}], ground_truth="instances_val.json")
"""


class CocoMap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": {
                "image_id": datasets.Value("int64"),
                "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                "scores": datasets.Sequence(datasets.Value("float64")),
                "category_ids": datasets.Sequence(datasets.Value("int64")),
            }}),
            reference_urls=["https://cocodataset.org/#detection-eval"])

    def _compute(self, predictions, ground_truth=None):
        if ground_truth is None:
            raise ConfigError("coco_map needs ground_truth: the COCO instances dict or the path of its json file")
        return scoring.coco_map(predictions, scoring.read_coco(ground_truth))
