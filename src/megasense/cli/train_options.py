"""Which of ``megasense train``'s options each task takes (the options themselves are in ``cli/sentiment.py``)."""

LOOP_OPTIONS = ("epochs", "max_steps", "lr", "batch_size", "max_length", "lora", "lora_rank", "patience", "eval_every")
"""``train`` options of the training loop itself, which every task takes."""
