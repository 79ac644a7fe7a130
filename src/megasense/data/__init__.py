"""Data: tables of texts for prediction and evaluation, corpora and datasets for training."""
