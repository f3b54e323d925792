"""Score a predictions file with one of our metrics, outside training.

    python -m lit_tasks score --metric squad --predictions runs/NAME/VERSION/predictions.jsonl
    python -m lit_tasks score --metric rouge --predictions preds.jsonl --references data/test.jsonl

The predictions are the JSONL rows `predict` writes (one object per line). Each metric reads one
prediction field and one reference: the row's own truth field (predict writes it when the split
has labels, e.g. "true_label", "true_answers"), or, with --references, the field of the row of
a CSV/JSONL file with the same key ("id", or "path" for clips and images). Every prediction needs
a reference and every reference a prediction: a missing one is an error naming the file, the
line and the key, never skipped. The numbers are computed by the training's own metric code
(`lit_tasks.metrics.evaluate_modules.scoring`, which our `evaluate` modules call too) and printed
as JSON under the names training logs them (results.json's test/<name> without "test/").
docs/scoring.md lists the metrics, the fields they read and the references formats.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_tasks.errors import ConfigError, DataError
from lit_tasks.metrics import METRIC_MODULES


@dataclass(frozen=True)
class RowFormat:
    """Where a metric finds its inputs. keys: a predictions row's key field, the first present
    (also the key field of a references row); prediction: the predicted field; truth: the row's
    own reference field; reference: the field of a --references row."""

    keys: tuple[str, ...]
    prediction: str
    truth: str
    reference: str


FORMATS = {
    "accuracy_f1": RowFormat(("id", "path"), "label", "true_label", "label"),  # "top" with --top-k
    "entity_f1": RowFormat(("id",), "tags", "true_tags", "tags"),
    "squad": RowFormat(("id",), "answer", "true_answers", "answers"),
    "wer_cer": RowFormat(("path",), "text", "reference", "text"),
    "rouge": RowFormat(("id",), "prediction", "target", "target"),  # "target": <stage>_predictions.jsonl rows
    "bleu_chrf": RowFormat(("id",), "prediction", "target", "target"),
    "coco_map": RowFormat(("image_id",), "detections", "", ""),  # references: a COCO instances json
}
# option (argparse dest) -> the metrics it applies to
OPTIONS = {"label_names": ("accuracy_f1", "entity_f1"), "num_classes": ("accuracy_f1",), "top_k": ("accuracy_f1",),
           "no_stemmer": ("rouge",), "tokenize": ("bleu_chrf",), "lowercase": ("bleu_chrf",),
           "word_order": ("bleu_chrf",), "case": ("wer_cer",), "remove_chars": ("wer_cer",)}


# ------------------------------------------------------------------------------------ reading
def read_table(file: Path, wanted: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line or row number, record) of a JSONL or CSV file, via the DataModules' table reader."""
    from lit_tasks.data.tables import read_rows, table_kind

    kind = table_kind(file)
    return list(read_rows(file, kind, wanted, f"The columns {wanted} are what this metric reads."))


def row_key(record: dict[str, Any], keys: tuple[str, ...], where: str, base: Path | None) -> tuple[str, Any]:
    """(key field, key value) of a row: the first of `keys` it has. A "path" is made absolute
    (a relative one against `base`, the references file's folder, as the manifests do) so that
    the two files' spellings of one file meet."""
    for field in keys:
        if field in record:
            value = record[field]
            if isinstance(value, (dict, list)) or value is None:
                raise DataError(f"{where}: the {field!r} field is {value!r}; expected a string or number key")
            if field == "path":
                path = Path(str(value)).expanduser()
                value = os.path.normpath(path if path.is_absolute() or base is None else base / path)
                value = os.path.abspath(value)
            return field, value
    raise DataError(f"{where}: no {' or '.join(repr(k) for k in keys)} field; every row needs its key to be matched")


def keyed(rows: list[tuple[int, dict[str, Any]]], keys: tuple[str, ...], file: Path,
          base: Path | None = None) -> dict[Any, tuple[int, str, dict[str, Any]]]:
    """{key: (line, key field, record)}; a key on two lines is an error naming both."""
    out: dict[Any, tuple[int, str, dict[str, Any]]] = {}
    for number, record in rows:
        field, key = row_key(record, keys, f"{file} line {number}", base)
        if key in out:
            raise DataError(f"{file} line {number}: {field} {key!r} is also on line {out[key][0]}; "
                            "expected one row per key")
        out[key] = (number, field, record)
    return out


def field_value(record: dict[str, Any], field: str, where: str, hint: str = "") -> Any:
    if field not in record:
        raise DataError(f"{where}: no {field!r} field{hint}")
    return record[field]


# ------------------------------------------------------------------------- per-metric values
def check_value(metric: str, field: str, value: Any, where: str) -> Any:
    """A prediction or reference in the form the metric's scoring function takes: answers from
    SQuAD's {"text": [...]} too, tags and texts from CSV strings, ranked labels from "top"."""
    def bad(expected: str) -> DataError:
        return DataError(f"{where}: the {field!r} field is {value!r}; expected {expected}")

    if metric == "accuracy_f1":
        if field == "top":
            if not isinstance(value, list) or not value or not all(isinstance(p, list) and p for p in value):
                raise bad("the ranked [label, probability] pairs predict writes")
            value = [p[0] for p in value]
            if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in value):
                raise bad("ranked labels (names or class indices)")
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise bad("a label name or class index")
        return value
    if metric == "entity_f1":
        value = value.split() if isinstance(value, str) else value  # a CSV cell: whitespace-separated tags
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise bad("a list of tags, one per word")
        return value
    if metric == "squad":
        if field in ("answers", "true_answers") and isinstance(value, dict) and "text" in value:
            value = value["text"]  # SQuAD's {"text": [...], "answer_start": [...]}
        if field == "answer" and not isinstance(value, str):
            raise bad('the answer text ("" for no answer)')
        if field != "answer" and (not isinstance(value, list) or not all(isinstance(a, str) for a in value)):
            raise bad('a list of gold answer texts (or SQuAD\'s {"text": [...]}); [] for an unanswerable question')
        return value
    if metric in ("rouge", "bleu_chrf") and isinstance(value, list):
        if not value or not all(isinstance(t, str) for t in value):
            raise bad("a text or a non-empty list of reference texts")
        return value
    if not isinstance(value, str):
        raise bad("a text")
    return value


def paired(metric: str, fmt: RowFormat, predictions: Path, references: Path | None,
           prediction_field: str) -> tuple[list[Any], list[Any], list[str]]:
    """(predictions, references, where each pair is) in the predictions file's order."""
    rows = read_table(predictions, [])
    if not rows:
        raise DataError(f"{predictions}: no rows to score")
    by_key = keyed(rows, fmt.keys, predictions)
    preds = [check_value(metric, prediction_field,
                         field_value(record, prediction_field, f"{predictions} line {n}"), f"{predictions} line {n}")
             for n, _, record in by_key.values()]
    if references is None:
        hint = (f" (the reference {metric} needs; predict writes it on a labelled split): pass the references with "
                "--references FILE")
        refs = [check_value(metric, fmt.truth, field_value(record, fmt.truth, f"{predictions} line {n}", hint),
                            f"{predictions} line {n}")
                for n, _, record in by_key.values()]
        return preds, refs, [f"{predictions} line {n}" for n, _, _ in by_key.values()]
    ref_rows = keyed(read_table(references, []), fmt.keys, references, base=references.parent)
    for key, (n, field, _) in by_key.items():
        if key not in ref_rows:
            raise DataError(f"{predictions} line {n}: no reference for {field} {key!r} in {references}")
    for key, (n, field, _) in ref_rows.items():
        if key not in by_key:
            raise DataError(f"{references} line {n}: no prediction for {field} {key!r} in {predictions}")
    refs, wheres = [], []
    for key, (line, _, _) in by_key.items():
        n, _, record = ref_rows[key]
        where = f"{references} line {n}"
        refs.append(check_value(metric, fmt.reference, field_value(record, fmt.reference, where), where))
        wheres.append(f"{predictions} line {line} and {where}")
    return preds, refs, wheres


def check_pairs(args: argparse.Namespace, preds: list[Any], refs: list[Any], wheres: list[str]) -> None:
    """The checks of the scoring functions that concern one row, made here to name its line."""
    for pred, ref, where in zip(preds, refs, wheres):
        if args.metric == "entity_f1" and len(pred) != len(ref):
            raise DataError(f"{where}: {len(pred)} predicted tags for {len(ref)} reference tags; expected one tag "
                            "per word on both sides")
        if args.label_names is not None:
            labels = {"accuracy_f1": [*(pred if isinstance(pred, list) else [pred]), ref],
                      "entity_f1": [*pred, *ref]}[args.metric]
            unknown = [x for x in labels if x not in args.label_names]
            if unknown:
                raise DataError(f"{where}: the label {unknown[0]!r} is not among --label-names {args.label_names[:20]}")


def coco_inputs(predictions: Path, references: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per-image detection dicts, COCO instances dict) for coco_map; every image of the
    predictions must be in the ground truth and every ground truth image in the predictions."""
    from lit_tasks.metrics.evaluate_modules.scoring import read_coco

    if references is None:
        raise ConfigError("coco_map needs --references: the COCO instances json of the split the predictions are of")
    ground_truth = read_coco(references)
    images = ground_truth.get("images") if isinstance(ground_truth, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, dict) and "id" in i for i in images):
        raise DataError(f"{references}: expected a COCO instances json with 'images' (each with an 'id'), "
                        "'annotations' and 'categories'")
    known = {image["id"] for image in images}
    inputs = []
    by_key = keyed(read_table(predictions, []), ("image_id",), predictions)
    for image_id, (n, _, record) in by_key.items():
        where = f"{predictions} line {n}"
        if image_id not in known:
            raise DataError(f"{where}: no reference for image_id {image_id!r} in {references} (not among its images)")
        detections = field_value(record, "detections", where)
        if not isinstance(detections, list):
            raise DataError(f"{where}: the 'detections' field is {detections!r}; expected a list")
        for k, d in enumerate(detections):
            box = d.get("box") if isinstance(d, dict) else None
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
                    and isinstance(d.get("score"), (int, float)) and isinstance(d.get("category_id"), int)):
                raise DataError(f"{where}: detections[{k}] is {d!r}; expected {{'category_id': int, 'score': "
                                "number, 'box': [x1, y1, x2, y2]}")
        inputs.append({"image_id": image_id, "boxes": [d["box"] for d in detections],
                       "scores": [d["score"] for d in detections],
                       "category_ids": [d["category_id"] for d in detections]})
    unseen = [i for i in (image["id"] for image in images) if i not in by_key]
    if unseen:
        raise DataError(f"{references}: no prediction for image_id {unseen[0]!r} in {predictions} "
                        f"({len(unseen)} of its {len(images)} images have none)")
    return inputs, ground_truth


# --------------------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    metrics = "\n".join(f"  {name:<12} {line}" for name, line in METRIC_MODULES.items())
    p = argparse.ArgumentParser(
        prog="python -m lit_tasks score", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score a predictions.jsonl written by predict with one of our metrics (the training's own "
                    "code); prints the numbers as JSON.",
        epilog=f"metrics:\n{metrics}\n\nfields read and references formats: docs/scoring.md")
    p.add_argument("--metric", required=True, choices=list(METRIC_MODULES), help="the metric (below)")
    p.add_argument("--predictions", required=True, type=Path, metavar="FILE", help="the rows predict wrote (predictions.jsonl)")
    p.add_argument("--references", type=Path, default=None, metavar="FILE",
                   help="a CSV/JSONL file of references joined on the rows' key (id or path); coco_map: the COCO "
                        "instances json. Default: the rows' own truth field (true_label, true_answers, ...)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the scores to this JSON file")
    p.add_argument("--label-names", nargs="+", default=None, metavar="NAME",
                   help="accuracy_f1, entity_f1: the class names / tags in the training's order (results.json "
                        "config.model.init_args.label_names); an unknown label is then an error. entity_f1 reports "
                        "entity_f1_<TYPE> for every type of these tags. Default: the labels that occur")
    p.add_argument("--num-classes", type=int, default=None,
                   help="accuracy_f1 with class indices: the number of classes (default: largest index + 1). Macro "
                        "F1 averages over the classes that occur as a label or a prediction, as in training")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="accuracy_f1: also top<k>_acc from the rows' ranked 'top' labels (k <= their number, 5)")
    p.add_argument("--case", choices=("lower", "upper", "keep"), default=None,
                   help="wer_cer: normalise the references as the audio data does (data.case, then data.remove_chars "
                        "at its default unless given, whitespace collapsed), e.g. for a raw manifest as --references")
    p.add_argument("--remove-chars", default=None, metavar="CHARS",
                   help="wer_cer: with normalisation (--case), the characters deleted (data.remove_chars; default "
                        "'.,?!;:\"'); setting it turns normalisation on too, with --case lower")
    p.add_argument("--no-stemmer", action="store_true", help="rouge: no Porter stemming (training stems)")
    p.add_argument("--tokenize", default="13a", help="bleu_chrf: sacreBLEU's tokenizer (default 13a, as training)")
    p.add_argument("--lowercase", action="store_true", help="bleu_chrf: case-insensitive BLEU (training: off)")
    p.add_argument("--word-order", type=int, default=0,
                   help="bleu_chrf: chrF word order (0: chrF, as training; 2: chrF++)")
    return p


def score(args: argparse.Namespace) -> dict[str, float]:
    """The metric's numbers for the parsed command line."""
    from lit_tasks.metrics.evaluate_modules import scoring

    defaults = parser()
    for name, metrics in OPTIONS.items():
        if getattr(args, name) != defaults.get_default(name) and args.metric not in metrics:
            raise ConfigError(f"--{name.replace('_', '-')} applies to --metric {' or '.join(metrics)}, not to "
                              f"{args.metric} (python -m lit_tasks score --help)")
    if not args.predictions.is_file():
        raise DataError(f"{args.predictions}: the predictions file does not exist")
    if args.references is not None and not args.references.is_file():
        raise DataError(f"{args.references}: the references file does not exist")
    if args.metric == "coco_map":
        detections, ground_truth = coco_inputs(args.predictions, args.references)
        return scoring.coco_map(detections, ground_truth)
    fmt = FORMATS[args.metric]
    field = "top" if args.metric == "accuracy_f1" and args.top_k is not None else fmt.prediction
    preds, refs, wheres = paired(args.metric, fmt, args.predictions, args.references, field)
    check_pairs(args, preds, refs, wheres)
    if args.metric == "accuracy_f1":
        return scoring.accuracy_f1(preds, refs, label_names=args.label_names, num_classes=args.num_classes,
                                   top_k=args.top_k)
    if args.metric == "entity_f1":
        return scoring.entity_f1(preds, refs, label_names=args.label_names)
    if args.metric == "rouge":
        return scoring.rouge(preds, refs, use_stemmer=not args.no_stemmer)
    if args.metric == "bleu_chrf":
        return scoring.bleu_chrf(preds, refs, tokenize=args.tokenize, lowercase=args.lowercase,
                                 word_order=args.word_order)
    if args.metric == "wer_cer":
        return scoring.wer_cer(preds, refs, case=args.case, remove_chars=args.remove_chars)
    return scoring.squad(preds, refs)


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    scores = score(args)
    text = json.dumps(scores, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
