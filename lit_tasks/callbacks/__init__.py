"""Callbacks every lit_tasks run gets: results.json, figures, prediction files, resume state."""

from lit_tasks.callbacks.media import FigureLogger
from lit_tasks.callbacks.predictions import PredictionWriter
from lit_tasks.callbacks.results import ResultsWriter
from lit_tasks.callbacks.resume import ResumeState

__all__ = ["FigureLogger", "PredictionWriter", "ResultsWriter", "ResumeState"]
