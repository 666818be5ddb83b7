"""Tasks: what differs between one kind of model-and-data and another (see ``base.Task``).

Text classification/regression on transformers and any ``nn.Module`` classifier today; the stages
never branch on which one runs.
"""
from ..errors import DistilTuneError
from ..models.factories import is_factory
from .base import Loaded, Task
from .module_classification import ModuleClassification
from .text_classification import TextClassification

TASKS = {t.name: t for t in (TextClassification, ModuleClassification)}


def task_class(cfg) -> type[Task]:
    """Text transformers, or any nn.Module when the config names an input column."""
    if cfg.input_column:
        return ModuleClassification
    for role in ("teacher", "student"):
        name = getattr(cfg, role)
        if name and is_factory(name):
            raise DistilTuneError(f"the {role} '{name}' is a network factory, but input_column is not set",
                                  "set input_column to the dataset column the network reads (e.g. pixel_values)")
    return TextClassification


__all__ = ["Loaded", "ModuleClassification", "TASKS", "Task", "TextClassification", "task_class"]
