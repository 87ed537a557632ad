"""Training: the one loop, its schedules and the checkpoint files."""

from vaekit.training.rollback import TrainingDiverged
from vaekit.training.stop import StopTraining
from vaekit.training.trainer import Trainer, TrainingInterrupted

__all__ = ["StopTraining", "Trainer", "TrainingDiverged", "TrainingInterrupted"]
