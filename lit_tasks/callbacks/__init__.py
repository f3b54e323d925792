"""Callbacks every lit_tasks run gets: results.json, figures, prediction files."""

from lit_tasks.callbacks.media import FigureLogger
from lit_tasks.callbacks.predictions import PredictionWriter
from lit_tasks.callbacks.results import ResultsWriter

__all__ = ["FigureLogger", "PredictionWriter", "ResultsWriter"]
