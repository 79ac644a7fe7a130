"""Predictors turn text into typed results and back: sentiment (``SentimentBatch`` / ``SentimentResult``),
sentence embeddings and generated text. Below them the engines (``megasense.inference``) see only
token ids; above them the CLI, the service, training and analytics all use these same results."""
