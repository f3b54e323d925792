"""The `coco_map` evaluate module (evaluate.load reads coco_map.py); a package so that it ships with lit_tasks."""
