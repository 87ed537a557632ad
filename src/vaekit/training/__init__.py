"""Training: the one loop, its schedules and the checkpoint files."""

from vaekit.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted"]
