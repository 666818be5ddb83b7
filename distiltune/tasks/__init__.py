"""Tasks: what differs between one kind of model-and-data and another (see ``base.Task``).

Text classification/regression, token classification (NER) and extractive question answering on
transformers, and any ``nn.Module`` classifier; the stages never branch on which one runs.
"""
from ..errors import DistilTuneError
from ..models.factories import is_factory
from .base import Loaded, Task
from .module_classification import ModuleClassification
from .text_classification import TextClassification
from .question_answering import QuestionAnswering
from .token_classification import TokenClassification
from .causal_lm import CausalLM

TASKS = {t.name: t for t in (TextClassification, TokenClassification, QuestionAnswering, CausalLM, ModuleClassification)}
WORD_AND_SPAN_TASKS = {"token_classification": TokenClassification, "question_answering": QuestionAnswering,
                       "causal_lm": CausalLM}


def task_class(cfg) -> type[Task]:
    """Text transformers (one label per text, or per word for task_type token_classification), or any
    nn.Module when the config names an input column."""
    if cfg.task_type in WORD_AND_SPAN_TASKS:
        if cfg.input_column:
            raise DistilTuneError(f"task_type {cfg.task_type} reads text, but input_column names a tensor column",
                                  f"remove input_column ({cfg.task_type} runs on transformers models)")
        return WORD_AND_SPAN_TASKS[cfg.task_type]
    if cfg.input_column:
        return ModuleClassification
    if cfg.task_type == "auto" and _names_causal_lm(cfg):
        return CausalLM
    for role in ("teacher", "student"):
        name = getattr(cfg, role)
        if name and is_factory(name):
            raise DistilTuneError(f"the {role} '{name}' is a network factory, but input_column is not set",
                                  "set input_column to the dataset column the network reads (e.g. pixel_values)")
    return TextClassification


def _names_causal_lm(cfg) -> bool:
    """task_type auto: a teacher (or student) whose architecture is a causal LM makes the task causal_lm."""
    from ..gguf import is_gguf_name
    from ..models.hf import resolve_path

    for role in ("teacher", "student"):
        name = getattr(cfg, role)
        if name in ("demo:smollm2-135m-instruct",) or is_gguf_name(name):  # GGUF files hold decoder LLMs
            return True
        if not name or name == "from_teacher" or is_factory(name) or name.startswith("demo:"):
            continue
        try:
            from transformers import AutoConfig

            arch = AutoConfig.from_pretrained(resolve_path(name)).architectures or []
        except Exception:  # not loadable here: the task's own checks name the problem
            continue
        return any(a.endswith("ForCausalLM") for a in arch)
    return False


__all__ = ["CausalLM", "Loaded", "ModuleClassification", "QuestionAnswering", "TASKS", "Task", "TextClassification",
           "TokenClassification", "task_class"]
