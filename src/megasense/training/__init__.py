"""Training: a generic loop (``Trainer``) and classification fine-tuning on top of it."""
