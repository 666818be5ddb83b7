"""distiltune: fine-tune, distil, or both, from one config. See README.md."""
from .config.schema import DistillConfig
from .errors import DistilTuneError, NonFiniteLossError
from .losses import LOSSES, LossTerm, kd_loss, register_loss
from .models.hf import build_student, load_classifier
from .pipeline.run import run_pipeline
from .schedules import Schedule
from .training.trainer import DistillationTrainer, distill_objective, finetune_objective

__all__ = ["DistillConfig", "DistillationTrainer", "DistilTuneError", "NonFiniteLossError", "LOSSES", "LossTerm", "Schedule",
           "build_student", "distill_objective", "finetune_objective", "kd_loss", "load_classifier",
           "register_loss", "run_pipeline"]
__version__ = "0.1.0"
