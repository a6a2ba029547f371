"""Batch prediction with a trained model, as a Ray Data job (:mod:`cars.prediction.job`)."""
