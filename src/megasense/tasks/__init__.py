"""Tasks turn text into token ids and model outputs back into answers: sentiment, embeddings, generation."""
