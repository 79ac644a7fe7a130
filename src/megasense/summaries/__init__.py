"""Study summaries: documents, dialogues and tables of texts to abstracts, bullet points and Markdown study notes,
checked against their source (``summarizer.Summarizer``; the journey is in docs/architecture.md)."""
