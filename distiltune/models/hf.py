"""Loading teachers/students, building a student from the teacher's layers, freezing layers."""
from __future__ import annotations

import copy
import os
import re

from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..errors import DistilTuneError
from .features import LAYOUTS
from ..gguf import gguf_folder, is_gguf_name

DEMO_MODELS = {"demo:all-mpnet-base-v2": "demo_teacher_path", "demo:all-MiniLM-L6-v2": "demo_student_path",
               "demo:smollm2-135m-instruct": "smollm2_path"}


def resolve_path(name: str) -> str:
    if name in DEMO_MODELS:
        from .. import assets

        return getattr(assets, DEMO_MODELS[name])()
    if name.startswith("demo:"):
        raise DistilTuneError(f"unknown demo model '{name}'", f"use one of {', '.join(DEMO_MODELS)}")
    if is_gguf_name(name):  # llama.cpp's format: dequantised once into a cached model folder
        from ..assets import cache_dir

        return gguf_folder(name, cache_dir())
    return name


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model")


def load_tokenizer(name: str, **kwargs):
    path = resolve_path(name)
    # Without tokenizer files some classes fall back to a 5-token vocabulary: all text becomes [UNK].
    if os.path.isdir(path) and not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        raise DistilTuneError(f"model folder '{name}' holds no tokenizer files",
                              "save the tokenizer next to the model (tokenizer.save_pretrained(folder))")
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise DistilTuneError(f"could not load a tokenizer from '{name}': {str(e).splitlines()[0][:160]}",
                              "give a model folder that holds tokenizer files, or a hub name (needs internet)") from None


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers split text identically (same class, vocabulary and casing), so token
    position i means the same thing to both models."""
    if a is b:
        return True
    if a is None or b is None or type(a) is not type(b) or a.get_vocab() != b.get_vocab():
        return False
    probe = "Hello, WORLD! naïve tokenisation-check 123"
    return a(probe)["input_ids"] == b(probe)["input_ids"]


def weights_fingerprint(path: str) -> str:
    """Identifies a given model: file names, sizes and mtimes of a local folder, or the hub name."""
    if not os.path.isdir(path):
        return path
    stats = sorted((f, st.st_size, int(st.st_mtime)) for f in os.listdir(path)
                   if os.path.isfile(os.path.join(path, f)) for st in [os.stat(os.path.join(path, f))])
    return repr((os.path.abspath(path), stats))


def label_maps(label_names: list[str] | None) -> dict:
    if label_names is None:
        return {"num_labels": 1, "problem_type": "regression"}
    return {"num_labels": len(label_names),
            "id2label": {i: n for i, n in enumerate(label_names)},
            "label2id": {n: i for i, n in enumerate(label_names)}}


def _generic(names) -> bool:
    return all(re.fullmatch(r"LABEL_\d+", str(n)) for n in names)


def check_labels(path: str, name: str, label_names: list[str] | None, role: str,
                 head: str = "ForSequenceClassification") -> bool:
    """From config.json alone: whether the model has a classification head (``head``: the suffix of
    its architecture's name), and that its labels match the data's (count, and names unless generic LABEL_i)."""
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise DistilTuneError(f"could not load the {role} '{name}': {str(e).splitlines()[0][:160]}",
                              f"point '{role}' to a model folder (config.json + weights) or a hub name") from None
    want = label_maps(label_names)
    has_head = bool(getattr(config, "architectures", None)) and any(
        a.endswith(head) for a in config.architectures)
    other = {"ForSequenceClassification": "a text classifier", "ForTokenClassification": "a token classifier",
             "ForQuestionAnswering": "a question-answering model"}
    wrong = next((what for suffix, what in other.items() if suffix != head and any(
        a.endswith(suffix) for a in getattr(config, "architectures", None) or [])), None)
    if wrong and head in other:
        raise DistilTuneError(f"the {role} '{name}' is {wrong} ({config.architectures[0]}), but this task needs "
                              f"{other[head]}", f"give a {other[head]} or its base model (a new head is trained), "
                              "or set task_type to the model's task")
    if head == "ForQuestionAnswering":  # a start and an end per token: no label set to match
        return has_head
    if has_head:
        ckpt_names = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else []
        if len(ckpt_names) != want["num_labels"]:
            raise DistilTuneError(
                f"the {role} '{name}' predicts {len(ckpt_names)} labels but the data has {want['num_labels']}",
                f"use a {role} trained on this label set, or its base model so a new head is trained")
        if label_names is not None and not _generic(ckpt_names) and ckpt_names != list(label_names):
            raise DistilTuneError(
                f"the {role}'s labels {ckpt_names} differ from the data's labels {list(label_names)}",
                "map the data labels to the model's names and order, or fine-tune a fresh head")
    return has_head


def untrained_teacher(name: str) -> DistilTuneError:
    return DistilTuneError(
        f"the teacher '{name}' has an untrained classifier head (freshly initialised), so its soft labels are noise",
        "set finetune_teacher: auto to fine-tune it first, or point teacher to a fine-tuned checkpoint")


def load_classifier(name: str, label_names: list[str] | None, role: str, auto=None,
                    head: str = "ForSequenceClassification"):
    """Load ``name`` as a sequence classifier for our label set (``auto``: another transformers
    auto class, e.g. AutoModelForTokenClassification, whose architectures end in ``head``).

    Returns ``(model, head_trained)``; ``head_trained`` is False when the classification head
    was freshly initialised (missing from the checkpoint), so the model does not know the task yet.
    """
    path = resolve_path(name)
    has_head = check_labels(path, name, label_names, role, head)
    want = {} if head == "ForQuestionAnswering" else label_maps(label_names)
    try:
        model, info = (auto or AutoModelForSequenceClassification).from_pretrained(
            path, **want, ignore_mismatched_sizes=False, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise DistilTuneError(f"could not load the {role} '{name}' as a classifier: {str(e).splitlines()[0][:160]}",
                              "use an encoder model (BERT, RoBERTa, MPNet, DistilBERT, ...) or a folder saved by distiltune") from None
    missing = info.get("missing_keys", [])
    head_trained = has_head and not any("classifier" in k or "score" in k or "qa_outputs" in k for k in missing)
    return model, head_trained


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _layer_prefix(model) -> tuple[str, str]:
    mtype = model.config.model_type
    if mtype not in LAYOUTS:
        raise DistilTuneError(f"building a student from a '{mtype}' teacher is not supported",
                              f"use one of {', '.join(sorted(LAYOUTS))}, or name a pretrained student")
    stack, attr, _ = LAYOUTS[mtype]
    return f"{model.base_model_prefix}.{stack}", attr


def default_student_layers(n: int) -> list[int]:
    """Every other layer, as DistilBERT: 12 -> [0, 2, 4, 6, 8, 10]."""
    return list(range(0, n, 2))


def check_student_layers(layers: list[int], n: int) -> None:
    """Teacher layer indices a student keeps: each within the teacher's ``n`` layers, none twice."""
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise DistilTuneError(f"student_layers {bad} are out of range for a teacher with {n} layers",
                              f"use indices between 0 and {n - 1}")
    if len(set(layers)) != len(layers):
        raise DistilTuneError(f"student_layers {layers} repeats a layer", "list each teacher layer at most once")


def build_student(teacher: nn.Module, layers: list[int] | None = None) -> nn.Module:
    """A student with the teacher's embeddings, head and the chosen ``layers`` (teacher indices, in order)."""
    prefix, attr = _layer_prefix(teacher)
    n = getattr(teacher.config, attr)
    layers = default_student_layers(n) if layers is None else list(layers)
    check_student_layers(layers, n)
    config = copy.deepcopy(teacher.config)
    setattr(config, attr, len(layers))
    if isinstance(getattr(config, "layer_types", None), list):  # decoders: each kept layer keeps its attention
        config.layer_types = [config.layer_types[i] for i in layers]  # kind (full or sliding-window)
    student = type(teacher)(config)  # built fresh: each layer's cache index (layer_idx) is its new position
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    remap = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher.state_dict().items():
        m = pat.match(key)
        if m is None:
            state[key] = value
        elif int(m.group(1)) in remap:
            state[f"{prefix}.{remap[int(m.group(1))]}.{m.group(2)}"] = value
    missing, unexpected = student.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"student build left weights unset: missing={missing[:3]} unexpected={unexpected[:3]}")
    student.config.distiltune_teacher_layers = layers
    return student


def freeze(model: nn.Module, embeddings: bool, first_layers: int) -> int:
    """Freeze embeddings and/or the first N encoder layers; returns the number of frozen parameters."""
    if not embeddings and first_layers == 0:
        return 0
    base = model.base_model
    frozen = []
    if embeddings:  # an encoder's embedding block (words, positions, norm), or a decoder's token embeddings
        frozen.append(getattr(base, "embeddings", None) or model.get_input_embeddings())
    if first_layers:
        prefix, attr = _layer_prefix(model)
        n = getattr(model.config, attr)
        if first_layers > n:
            raise DistilTuneError(f"freeze_layers={first_layers} but the model has only {n} layers",
                                  f"use freeze_layers between 0 and {n}")
        stack = model.get_submodule(prefix)
        frozen.extend(stack[i] for i in range(first_layers))
    count = 0
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
            count += p.numel()
    return count


def save_model(model, tokenizer, path: str, card: str | None = None, extra: dict[str, str] | None = None) -> None:
    """Write a standard HF model folder atomically (temp folder + rename); ``extra`` maps file names to text."""
    def weights(tmp):
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    write_folder(path, weights, ({"README.md": card} if card else {}) | (extra or {}))


def write_folder(path: str, write_weights, files: dict[str, str]) -> None:
    """Fill a temp folder (``write_weights(tmp)`` plus text ``files``), then swap it in: a crash
    mid-save never leaves a half-written model folder behind."""
    import shutil

    tmp = path.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        write_weights(tmp)
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
    except BaseException:  # nothing half-written left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def model_size_mb(path: str) -> float:
    files = [f for f in os.listdir(path) if f.endswith((".safetensors", ".bin"))]
    return sum(os.path.getsize(os.path.join(path, f)) for f in files) / 1e6


def plain_model(model):
    """The model without the autocast wrapper accelerate puts around ``forward`` for mixed precision:
    left in place, later stages nest it, the speed measurement times bf16 as "fp32", and an ONNX
    export traces bf16 ops that onnxruntime's CPU provider lacks."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False, keep_torch_compile=False)


def cpu_copy(model):
    """A plain fp32 CPU copy of a PyTorch model (timed as deployed without a GPU); other runtimes as they are."""
    if isinstance(model, nn.Module):
        return plain_model(copy.deepcopy(model)).float().to("cpu").eval()
    return model


