"""The model card (README.md) that `export` writes into an HF-format folder, from results.json.

The card follows the Hugging Face model-card convention: YAML front matter that the Hub reads
(license, library_name, tags, datasets, pipeline_tag and a `model-index` with the metrics,
each with its split), then prose: what the model is, how it was trained (the run's config,
epochs, wall time, hardware, versions, seed) and how to load it with `transformers` and with
`lit_tasks`, and how to fine-tune from it.

Which metrics describe the exported weights: the validation metrics of the epoch whose step
is the checkpoint's (results.json `history`), and the run's test metrics when the checkpoint
is the one fit tested (the best checkpoint, or the last weights when there is no monitor).
Other figures of the run are shown in the card's prose, said to be of other weights, and
kept out of `model-index`. A results.json of an older run may lack any field; the card says
"not recorded" for it. Without results.json the card is built from the checkpoint alone.

Plain data in, text out: no torch here (`export` reads the checkpoint and gives its parts).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CARD_FILE = "README.md"
# our task class -> (HF pipeline tag, the task's name as the Hub's model-index spells it)
TASKS = {
    "ImageClassification": ("image-classification", "Image Classification"),
    "TextClassification": ("text-classification", "Text Classification"),
    "TokenClassification": ("token-classification", "Token Classification"),
    "QuestionAnswering": ("question-answering", "Question Answering"),
    "SpeechRecognition": ("automatic-speech-recognition", "Automatic Speech Recognition"),
    "AudioClassification": ("audio-classification", "Audio Classification"),
    "ObjectDetection": ("object-detection", "Object Detection"),
    "Summarization": ("summarization", "Summarization"),
    "Translation": ("translation", "Translation"),
    "CausalLanguageModeling": ("text-generation", "Text Generation"),
    "MaskedLanguageModeling": ("fill-mask", "Fill-Mask"),
}
METRIC_TYPES = {"acc": "accuracy"}  # our metric name -> the Hub's metric id, where they differ
# The bundled demo data (demo_data/ATTRIBUTION.md has the full notes): folder -> (what, licence)
DEMO_DATA = {
    "fashion_mnist": ("a sample of Fashion-MNIST (Zalando Research)", "MIT"),
    "debian_sections": ("Debian package descriptions labelled with their archive section",
                        "each package's own licence (Debian main, DFSG-free)"),
    "debian_summaries": ("Debian package long descriptions and their synopses",
                         "each package's own licence (Debian main, DFSG-free)"),
    "debian_translations": ("Debian package synopses in English and German (DDTP)",
                            "each package's own licence (Debian main, DFSG-free)"),
    "spoken_digits": ("spoken digits synthesised with eSpeak NG", "Apache-2.0"),
    "digit_strings": ("spoken digit strings synthesised with eSpeak NG", "Apache-2.0"),
    "wiki_ner": ("English Wikipedia sentences (via gensim), tagged by spaCy en_core_web_sm", "CC BY-SA 3.0"),
    "wiki_qa": ("cloze questions on English Wikipedia paragraphs (via gensim)", "CC BY-SA 3.0"),
    "wiki_corpus": ("English Wikipedia sentences (via gensim)", "CC BY-SA 3.0"),
    "pydoc_topics": ("the help topics of the Python documentation", "PSF-2.0"),
    "pasted_objects": ("Fashion-MNIST items pasted onto scikit-image sample images",
                       "Apache-2.0 (the Fashion-MNIST items: MIT)"),
}
DATA_KEYS = ("hf_dataset", "root", "train_file", "train_images", "train_annotations")  # where the data is named
NOT_RECORDED = "not recorded"


@dataclass
class Export:
    """What the card is built from: the exported folder (config.json already written), the
    checkpoint's `lit_tasks` entry and its place in training, and the run's results.json."""

    folder: Path
    ckpt_path: Path
    meta: dict[str, Any]  # the checkpoint's "lit_tasks" entry: task, spec, label_names, ...
    config_json: dict[str, Any]  # the exported config.json
    epoch: int | None
    step: int | None
    parameters: int | None
    results: dict[str, Any] | None
    results_path: Path
    license: str = "other"


# -- reading results.json, field by field (an older run may lack any) ---------------------------

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dict(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _split_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k: v for k, v in sorted(metrics.items()) if k.startswith(prefix + "/") and _number(v)}


def _history(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = results.get("history")
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def tested_step(results: dict[str, Any]) -> int | None:
    """The step of the weights fit tested: the best checkpoint's, else the last epoch's."""
    best = _dict(results, "best")
    if "step" in best:
        return best["step"]
    rows = _history(results)
    return rows[-1].get("step") if rows and not best else None


@dataclass
class Figures:
    """Metrics of one split: `model_index` says whether they describe the exported weights."""

    split: str  # "validation" or "test"
    metrics: dict[str, float]
    where: str  # which weights they were measured on, for the prose
    model_index: bool


def figures(export: Export) -> list[Figures]:
    """The validation and test metrics of results.json, each said to be of the exported weights or not."""
    results = export.results or {}
    metrics = _dict(results, "metrics")
    out = []
    row = next((r for r in _history(results) if export.step is not None and r.get("step") == export.step), None)
    val_of_checkpoint = _split_metrics(row, "val") if row else {}
    if val_of_checkpoint:
        out.append(Figures("validation", val_of_checkpoint, f"epoch {row.get('epoch')} (step {export.step}), "
                           "the exported weights", True))
    elif _split_metrics(metrics, "val"):
        out.append(Figures("validation", _split_metrics(metrics, "val"),
                           "the run's last validation; not known to be of the exported weights", False))
    test = _split_metrics(metrics, "test")
    if test:
        step = tested_step(results)
        if step is not None and step == export.step:
            out.append(Figures("test", test, f"step {step}, the exported weights", True))
        else:
            where = f"step {step}" if step is not None else "weights results.json does not name"
            out.append(Figures("test", test, f"{where}, not the exported checkpoint (step {export.step})", False))
    return out


# -- what the model and the data are ---------------------------------------------------------

def task_names(export: Export) -> tuple[str | None, str]:
    """(pipeline tag or None, the task's name) of the checkpoint's task class."""
    task = str(export.meta.get("task") or "")
    return TASKS.get(task, (None, task or "unknown task"))


def data_source(config: dict[str, Any]) -> str | None:
    """Where the run's data came from, as its config names it (a folder or the train file)."""
    init_args = _dict(_dict(config, "data"), "init_args")
    for key in DATA_KEYS:
        value = init_args.get(key)
        value = value[0] if isinstance(value, list) and value else value
        if isinstance(value, str) and value:
            return value
    return None


def dataset_name(source: str) -> str:
    """The data's name: a folder's name, or the folder of a file (`.../debian_sections/train.csv`)."""
    path = Path(source)
    return path.parent.name if path.suffix else path.name


def demo_dataset(source: str) -> str | None:
    """The bundled demo dataset a path points into (`demo_data/<name>/...`), if any."""
    parts = Path(source).parts
    for i, part in enumerate(parts[:-1]):
        if part == "demo_data" and parts[i + 1] in DEMO_DATA:
            return parts[i + 1]
    return None


def run_name(export: Export) -> str:
    """The run's name: `run.name` of its config, else the folder above the run's version folder
    (`runs/<name>/<version>/`; by default the recipe file's name), else the exported folder's."""
    name = _dict(_dict(export.results or {}, "config"), "run").get("name")
    if isinstance(name, str) and name:
        return name
    ckpt = export.ckpt_path.resolve()
    run_dir = export.results_path.resolve().parent if export.results is not None else \
        ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    return run_dir.parent.name if run_dir is not None and run_dir.parent.name else export.folder.resolve().name


# -- the card ---------------------------------------------------------------------------------

def front_matter(export: Export) -> dict[str, Any]:
    """The YAML header the Hub reads; `model-index` holds only figures of the exported weights."""
    tag, task_name = task_names(export)
    family = (export.meta.get("spec") or {}).get("family")
    config = _dict(export.results or {}, "config")
    source = data_source(config)
    name = demo_dataset(source) or dataset_name(source) if source else None
    header: dict[str, Any] = {
        "license": export.license,
        "library_name": "transformers",  # the folder is a transformers one; the tag says who trained it
        "tags": [t for t in (tag, family, "lit_tasks") if t],
    }
    if name:
        header["datasets"] = [name]
    if tag:
        header["pipeline_tag"] = tag
    results = []
    for fig in figures(export):
        if not fig.model_index or not tag:  # the Hub checks a model-index task type against its task list
            continue
        results.append({
            "task": {"type": tag, "name": task_name},
            "dataset": {"type": name or "unknown", "name": name or "unknown", "split": fig.split},
            "metrics": [{"type": METRIC_TYPES.get(key.split("/", 1)[1], key.split("/", 1)[1]), "name": key,
                         "value": value} for key, value in fig.metrics.items()],
        })
    if results:
        header["model-index"] = [{"name": run_name(export), "results": results}]
    return header


def _list(items: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in items.items()) if items else NOT_RECORDED


def _seconds(value: Any) -> str:
    if not _number(value):
        return NOT_RECORDED
    minutes, secs = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{value:.1f} s" + (f" ({hours}h{minutes:02d}m{secs:02d}s)" if value >= 60 else "")


def model_section(export: Export) -> list[str]:
    spec = export.meta.get("spec") or {}
    _, task_name = task_names(export)
    architecture = (export.config_json.get("architectures") or ["?"])[0]
    lines = ["## Model", "",
             f"- Task: {task_name} (`lit_tasks.tasks.{export.meta.get('task', '?')}`)",
             f"- Architecture: `{architecture}` (family `{spec.get('family', '?')}`, head `{spec.get('head', '?')}`)"]
    if export.parameters is not None:
        lines.append(f"- Parameters: {export.parameters:,}")
    labels = export.meta.get("label_names")
    if labels:
        lines.append(f"- Labels ({len(labels)}): " + ", ".join(f"`{label}`" for label in labels))
    elif export.config_json.get("vocab_size"):
        lines.append(f"- Vocabulary: {export.config_json['vocab_size']} tokens")
    return lines


def results_section(export: Export) -> list[str]:
    figs = figures(export)
    if not figs:
        return ["## Results", "", "No validation or test metric was recorded."]
    lines = ["## Results", "", "| split | metric | value | measured on |", "|---|---|---|---|"]
    for fig in figs:
        lines += [f"| {fig.split} | `{key}` | {value:.4f} | {fig.where} |" for key, value in fig.metrics.items()]
    if task_names(export)[0] is None:
        lines += ["", "The Hub has no task type for this task: the figures are not in the metadata (`model-index`)."]
    elif any(not fig.model_index for fig in figs):
        lines += ["", "Figures not measured on the exported weights are left out of the metadata (`model-index`)."]
    return lines


def _hardware(results: dict[str, Any]) -> str:
    hw = _dict(_dict(results, "hardware"), "fit")
    if not hw:
        world = results.get("world_size")
        return NOT_RECORDED + (f" (world size {world})" if world else "")
    gpus = hw.get("gpus") or []
    gpu = f"{len(gpus)} x {gpus[0]}" if gpus and len(set(gpus)) == 1 else ", ".join(gpus) or "no GPU"
    return (f"{hw.get('accelerator', '?')} accelerator, {hw.get('devices', '?')} device(s) per node x "
            f"{hw.get('num_nodes', '?')} node(s), precision {hw.get('precision', '?')}; "
            f"CPU {hw.get('cpu', '?')} ({hw.get('cpu_cores', '?')} cores); {gpu}")


def training_section(export: Export) -> list[str]:
    results = export.results
    if results is None:
        return ["## Training", "",
                f"The training record was not found: no results.json at `{export.results_path}`. "
                f"This card was written from the checkpoint alone (`{export.ckpt_path}`, epoch "
                f"{export.epoch}, step {export.step}). Export again with `--results PATH/TO/results.json` "
                "to add how the model was trained and its metrics."]
    config = _dict(results, "config")
    run_dir = export.results_path.parent
    best = _dict(results, "best")
    epochs = [row.get("epoch") for row in _history(results) if isinstance(row.get("epoch"), int)]
    source = data_source(config)
    commands = results.get("commands")
    recipe = results.get("recipe")
    given = f"`{'`, `'.join(map(str, recipe))}` (--config), " if isinstance(recipe, list) and recipe else ""
    lines = ["## Training", "",
             f"- Run: `{run_name(export)}`, folder `{run_dir}` (status {results.get('status', NOT_RECORDED)}, "
             f"commands {', '.join(map(str, commands)) if isinstance(commands, list) and commands else NOT_RECORDED})",
             f"- Recipe: {given}resolved as the config below; rerun it with "
             f"`python -m lit_tasks fit --config {run_dir / 'config.yaml'}`"]
    if source:
        demo = demo_dataset(source)
        about = f": {DEMO_DATA[demo][0]}, licence {DEMO_DATA[demo][1]} (demo_data/ATTRIBUTION.md)" if demo else ""
        lines.append(f"- Data: `{source}`{about}")
    lines += [
        f"- Epochs run: {max(epochs) + 1 if epochs else NOT_RECORDED}; exported checkpoint `{export.ckpt_path.name}`: "
        f"epoch {export.epoch}, step {export.step}",
        "- Best: " + (f"{best.get('monitor')} = {best['score']:.4f} ({best.get('mode')}) at epoch {best.get('epoch')}, "
                      f"step {best.get('step')}" if _number(best.get("score")) else NOT_RECORDED),
        "- Wall time: " + (", ".join(f"{k} {_seconds(v)}" for k, v in _dict(results, "wall_time_s").items())
                           or NOT_RECORDED),
        "- Throughput: " + (f"{_dict(results, 'throughput')['train_samples_per_s']} training samples/s"
                            if _number(_dict(results, "throughput").get("train_samples_per_s")) else NOT_RECORDED),
        f"- Hardware: {_hardware(results)}",
        f"- Seed: {results.get('seed', NOT_RECORDED)}",
        f"- Versions: {_list(_dict(results, 'versions'))}",
    ]
    if config:
        lines += ["", "<details><summary>The resolved config (results.json <code>config</code>)</summary>", "",
                  "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", "", "</details>"]
    return lines


def processor_class(export: Export) -> str | None:
    """The `transformers` class that reads the folder's preprocessing files, if it has any."""
    files = {p.name for p in export.folder.iterdir()}
    has_tokenizer = bool(files & {"tokenizer.json", "vocab.txt", "vocab.json", "tokenizer_config.json"})
    if "preprocessor_config.json" in files:
        image = "image_processor_type" in (export.meta.get("preprocessor") or {})
        return "AutoImageProcessor" if image else "AutoProcessor" if has_tokenizer else "AutoFeatureExtractor"
    return "AutoTokenizer" if has_tokenizer else None


GENERATIVE = ("summarization", "translation", "text-generation")  # pipeline tags whose models generate
# how to call the model, by the class that prepares its inputs (a comment in the snippet)
USAGE = {
    "AutoImageProcessor": 'outputs = model(**processor(images=image, return_tensors="pt"))  # image: a PIL image',
    "AutoFeatureExtractor": 'outputs = model(**processor(waveform, sampling_rate=16000, return_tensors="pt"))',
    "AutoProcessor": 'outputs = model(**processor(waveform, sampling_rate=16000, return_tensors="pt"))',
    "AutoTokenizer": 'outputs = model(**tokenizer("some text", return_tensors="pt"))',
}


def load_snippet(export: Export, folder: str) -> str:
    """Python that loads the folder with `transformers`: the class config.json names, and the
    preprocessing (tokenizer, image processor, feature extractor) when the folder has it."""
    architecture = (export.config_json.get("architectures") or ["AutoModel"])[0]
    processor = processor_class(export)
    names = ", ".join(sorted(n for n in (architecture, processor) if n))
    quoted = json.dumps(folder)  # a Python string literal too
    lines = [f"from transformers import {names}", "", f"model = {architecture}.from_pretrained({quoted})"]
    if processor:
        variable = "tokenizer" if processor == "AutoTokenizer" else "processor"
        usage = USAGE[processor]
        if task_names(export)[0] in GENERATIVE:
            usage = 'ids = model.generate(**tokenizer("some text", return_tensors="pt"), max_new_tokens=40)'
        lines += [f"{variable} = {processor}.from_pretrained({quoted})", "# " + usage]
    return "\n".join(lines)


def loading_section(export: Export, folder: str) -> list[str]:
    run_config = export.results_path.parent / "config.yaml"
    config = run_config if export.results is not None else "YOUR_RECIPE.yaml"
    return [
        "## How to load", "",
        "With `transformers` (the class is config.json's `architectures`):", "",
        "```python", load_snippet(export, folder), "```", "",
        "With `lit_tasks` (the zoo model, a plain `torch.nn.Module`):", "",
        "```python", "from lit_tasks import zoo", "", f"model = zoo.from_pretrained({json.dumps(folder)})", "```", "",
        "Fine-tune from it (the folder's config.json defines the architecture):", "",
        "```bash",
        f"python -m lit_tasks fit --config {shlex.quote(str(config))} --model.init_from {shlex.quote(folder)} "
        "--model.backbone_config null",
        "```",
    ]


def license_section(export: Export) -> list[str]:
    lines = ["## License", ""]
    if export.license == "other":
        lines.append("Not set: export with `--license ID` (a Hub licence id such as `apache-2.0` or `mit`) "
                     "and respect the licence of the training data.")
    else:
        lines.append(f"`{export.license}`; respect the licence of the training data too.")
    return lines


def model_card(export: Export, folder: str | None = None) -> str:
    """The card's text; `folder` is how the loading snippets name the exported folder."""
    folder = folder if folder is not None else str(export.folder)
    _, task_name = task_names(export)
    header = yaml.safe_dump(front_matter(export), sort_keys=False, allow_unicode=True)
    article = "An" if task_name[:1].lower() in "aeiou" else "A"
    intro = (f"{article} {task_name.lower()} model exported by `python -m lit_tasks export` from `{export.ckpt_path}`, "
             "in the Hugging Face format: `config.json`, `model.safetensors` and the preprocessing files.")
    sections = [[f"# {run_name(export)}", "", intro], model_section(export), results_section(export),
                training_section(export), loading_section(export, folder), license_section(export)]
    return f"---\n{header}---\n\n" + "\n\n".join("\n".join(s) for s in sections) + "\n"


def write_model_card(export: Export, folder: str | None = None) -> Path:
    path = export.folder / CARD_FILE
    path.write_text(model_card(export, folder), encoding="utf-8")
    return path
