"""Batch scoring and the model as a library (see README: "Batch scoring", "The model as a library")."""

from scoring.library import Predictor, load_model

__all__ = ["Predictor", "load_model"]
