"""Configuration dataclasses and presets. No torch import here: configs load anywhere."""

from megasense.config.generation import GenerationConfig
from megasense.config.head import TASKS, HeadConfig
from megasense.config.model import ConfigError, ModelConfig, padded_vocab_size
from megasense.config.parallel import ParallelConfig
from megasense.config.presets import PRESETS, preset
from megasense.config.train import TrainConfig

__all__ = [
    "PRESETS",
    "TASKS",
    "ConfigError",
    "GenerationConfig",
    "HeadConfig",
    "ModelConfig",
    "ParallelConfig",
    "TrainConfig",
    "padded_vocab_size",
    "preset",
]
