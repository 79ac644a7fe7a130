"""Pipeline schedules on CPU: GPipe vs 1F1B at pp=2 (two gloo processes) against one process at pp=1.

A 4-layer GPT (hidden 128, sequence 128, random token ids: the schedule, not the data, is measured)
trains on a batch of 16 rows cut into ``--microbatches`` micro-batches. For each run it prints the
median milliseconds per training step (forward + backward, slowest rank) and the peak bytes of
activations saved for backward on each rank, counted by ``torch.autograd.graph.saved_tensors_hooks``.
GPipe keeps every micro-batch's activations until its backward; 1F1B keeps at most ``pp - stage`` of
them, so its peak should be about ``(pp - stage) / microbatches`` of GPipe's. Every process uses one
thread, so pp=2 has twice the cores of pp=1; on a shared CPU the times are only indicative.

    .venv/bin/python benchmarks/pipeline_schedules.py --microbatches 8 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BATCH, SEQ = 16, 128


class SavedBytes:
    """Live and peak bytes of tensors autograd saved for backward (released when the graph frees them)."""

    def __init__(self) -> None:
        self.live = self.peak = 0

    def pack(self, tensor: torch.Tensor):
        size = tensor.numel() * tensor.element_size()
        self.live += size
        self.peak = max(self.peak, self.live)
        return tensor, _Release(self, size)

    @staticmethod
    def unpack(packed):
        return packed[0]


class _Release:
    def __init__(self, counter: SavedBytes, size: int) -> None:
        self.counter, self.size = counter, size

    def __del__(self) -> None:
        self.counter.live -= self.size


def _model_config():
    from megasense.config.presets import gpt_tiny

    return gpt_tiny().replace(
        vocab_size=512, hidden_size=128, num_layers=4, num_attention_heads=4, ffn_hidden_size=512,
        max_position_embeddings=SEQ, hidden_dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip


def _batch(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=gen)
    return ids, torch.roll(ids, -1, dims=1)


def _measure(step, steps: int) -> tuple[float, int]:
    counter, times = SavedBytes(), []
    for _ in range(steps + 1):  # the first step warms up (and infers the pipeline's shapes)
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
            step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), counter.peak


def single(steps: int) -> tuple[float, int]:
    from megasense.models import build_model

    torch.set_num_threads(1)  # as each pipeline rank (run_distributed) does
    torch.manual_seed(0)
    model = build_model(_model_config())
    model.init_weights()
    ids, labels = _batch(model.config)
    return _measure(lambda: model(ids, labels=labels).loss.backward(), steps)


def _stage_run(rank: int, world_size: int, schedule: str, microbatches: int, steps: int) -> tuple[float, int]:
    from megasense.config.parallel import ParallelConfig
    from megasense.models import build_model
    from megasense.models.gpt import causal_lm_loss
    from megasense.parallel import build_mesh
    from megasense.parallel.pipeline_parallel import build_pipeline

    config = ParallelConfig(pp=2, pp_schedule=schedule, microbatches=microbatches)
    torch.manual_seed(0)
    model = build_model(_model_config())
    model.init_weights()
    pipe = build_pipeline(model, build_mesh(config, device_type="cpu"), config, causal_lm_loss)
    ids, labels = _batch(model.config)
    return _measure(lambda: pipe.step(ids, labels), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microbatches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    from megasense.parallel.launch import run_distributed

    seconds, peak = single(args.steps)
    print(f"pp=1 (one process)        {seconds * 1000:8.1f} ms/step   saved activations {peak / 2**20:7.1f} MiB")
    for schedule in ("gpipe", "1f1b"):
        ranks = run_distributed(_stage_run, world_size=2, args=(schedule, args.microbatches, args.steps), timeout=600)
        seconds = max(s for s, _ in ranks)
        per_stage = ", ".join(f"{p / 2**20:.1f}" for _, p in ranks)
        print(
            f"pp=2 {schedule:5s} x{args.microbatches} micro  {seconds * 1000:8.1f} ms/step   "
            f"saved activations per stage {per_stage} MiB"
        )


if __name__ == "__main__":
    main()
