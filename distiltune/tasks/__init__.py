"""Tasks: what differs between one kind of model-and-data and another (see ``base.Task``).

Text classification/regression and token classification (NER) on transformers, and any ``nn.Module``
classifier; the stages
never branch on which one runs.
"""
from ..errors import DistilTuneError
from ..models.factories import is_factory
from .base import Loaded, Task
from .module_classification import ModuleClassification
from .text_classification import TextClassification
from .token_classification import TokenClassification

TASKS = {t.name: t for t in (TextClassification, TokenClassification, ModuleClassification)}


def task_class(cfg) -> type[Task]:
    """Text transformers (one label per text, or per word for task_type token_classification), or any
    nn.Module when the config names an input column."""
    if cfg.task_type == "token_classification":
        if cfg.input_column:
            raise DistilTuneError("task_type token_classification reads words, but input_column names a tensor column",
                                  "remove input_column (token classification runs on transformers models)")
        return TokenClassification
    if cfg.input_column:
        return ModuleClassification
    for role in ("teacher", "student"):
        name = getattr(cfg, role)
        if name and is_factory(name):
            raise DistilTuneError(f"the {role} '{name}' is a network factory, but input_column is not set",
                                  "set input_column to the dataset column the network reads (e.g. pixel_values)")
    return TextClassification


__all__ = ["Loaded", "ModuleClassification", "TASKS", "Task", "TextClassification", "TokenClassification", "task_class"]
