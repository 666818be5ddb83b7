"""distiltune: fine-tune, distil, or both, from one config. See README.md."""
from .config import DistillConfig
from .errors import DistilTuneError, NonFiniteLossError
from .losses import LOSSES, LossTerm, kd_loss, register_loss
from .models import build_student, load_classifier
from .pipeline import run_pipeline
from .schedules import Schedule
from .trainer import DistillationTrainer, distill_objective, finetune_objective

__all__ = ["DistillConfig", "DistillationTrainer", "DistilTuneError", "NonFiniteLossError", "LOSSES", "LossTerm", "Schedule",
           "build_student", "distill_objective", "finetune_objective", "kd_loss", "load_classifier",
           "register_loss", "run_pipeline"]
__version__ = "0.1.0"
