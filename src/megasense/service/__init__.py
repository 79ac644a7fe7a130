"""The HTTP service: ``create_app(settings)`` builds a FastAPI app for sentiment and embeddings."""
