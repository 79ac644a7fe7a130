"""What a pretraining run reports on rank 0: loss, learning rate, grad norm, tokens/s and MFU.

They go to a progress bar, a JSONL file and, optionally, TensorBoard event files (the
``tensorboard`` extra; scalars ``train/loss``, ``train/lr``, ``train/grad_norm`` every step and
``train/tokens_per_s``, ``train/mfu`` every ``log_every`` steps).

MFU (model FLOPs utilisation) counts the FLOPs the model needs, not what the hardware ran
(recomputation is not counted): ``6 N`` per token for the matrix multiplications forward and backward
(``N`` the non-embedding parameters plus the output layer) plus ``12 L H T`` for attention scores
and values (PaLM's appendix B), divided by the configured peak FLOP/s of the devices.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from megasense.config import ModelConfig
from megasense.config.extras import MissingExtraError
from megasense.files.jsonl import JsonlLog
from megasense.files.progress import Bar, progress_bar


class TensorBoardUnavailableError(MissingExtraError):
    """``tensorboard`` logging was asked for but the ``tensorboard`` package is not installed."""


def summary_writer_class() -> type:
    """torch's ``SummaryWriter``, or an error that names the extra to install."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it, and says so less clearly)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise TensorBoardUnavailableError(
            f"train.tensorboard needs the tensorboard package, which is not installed ({exc}); "
            "install it with: pip install 'megasense[tensorboard]'"
        ) from None
    return SummaryWriter


def flops_per_token(cfg: ModelConfig, seq_length: int) -> float:
    """Training FLOPs (forward + backward) per token at ``seq_length``."""
    matmul_params = cfg.num_parameters(include_embeddings=False) + cfg.padded_vocab_size * cfg.hidden_size
    attention = 12 * cfg.num_layers * cfg.num_attention_heads * cfg.head_dim * seq_length
    return 6.0 * matmul_params + attention


class StepReporter:
    """Progress bar and JSONL metrics, on the one rank where ``enabled``; throughput per log interval."""

    def __init__(
        self,
        *,
        total: int,
        start: int,
        tokens_per_step: int,
        flops_per_token: float,
        peak_flops: float | None,
        log_every: int,
        metrics_path: str | None,
        enabled: bool,
        progress: bool,
        tensorboard: bool | str = False,
    ) -> None:
        """``tensorboard``: ``True`` writes event files under ``runs/`` (SummaryWriter's default
        directory), a string under that directory; checked on every rank, written on the enabled one."""
        self.total, self.start = total, start
        self.tokens_per_step, self.flops_per_token, self.peak_flops = tokens_per_step, flops_per_token, peak_flops
        self.log_every = log_every
        self.enabled = enabled
        self.path = Path(metrics_path) if metrics_path and enabled else None
        self.show_progress = progress and enabled
        self._writer_class = summary_writer_class() if tensorboard else None
        self._tensorboard_dir = tensorboard if isinstance(tensorboard, str) else None
        self._writer = None
        self._log = JsonlLog(self.path)
        self._advance: Bar = Bar()
        self._stack = contextlib.ExitStack()
        self._steps = 0
        self._began = self._mark = 0.0
        self._mark_steps = 0

    def __enter__(self) -> StepReporter:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._log)
            if self._writer_class is not None and self.enabled:
                self._writer = self._writer_class(log_dir=self._tensorboard_dir)
                stack.callback(self._writer.close)
            self._advance = stack.enter_context(
                progress_bar(
                    "pretraining",
                    self.total,
                    enabled=self.show_progress,
                    status=_STATUS,
                    completed=self.start,
                    loss=float("nan"),
                    lr=0.0,
                    norm="-",
                    tps=0.0,
                    mfu="-",
                )
            )
            self._stack = stack.pop_all()
        self._began = self._mark = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def tensorboard_dir(self) -> str | None:
        """Where the event files go (None: no TensorBoard, or not this rank)."""
        return self._writer.log_dir if self._writer is not None else None

    def rates(self, steps: int, seconds: float) -> dict[str, float]:
        tokens_per_s = steps * self.tokens_per_step / max(seconds, 1e-9)
        out = {"tokens_per_s": tokens_per_s}
        if self.peak_flops:
            out["mfu"] = tokens_per_s * self.flops_per_token / self.peak_flops
        return out

    def step(self, record: dict[str, Any]) -> None:
        """``record``: the trainer's ``step``, ``loss``, ``lr`` and ``grad_norm`` after one optimizer step."""
        self._steps += 1
        if not self.enabled:
            return
        now = time.perf_counter()
        # The first step after start includes warm-up work (allocations, first collectives): the
        # interval rates restart after it, the run's summary keeps it.
        rates = self.rates(self._steps - self._mark_steps, now - self._mark)
        self._advance(completed=record["step"], **_bar_fields(record, rates))
        logged = self._steps == 1 or record["step"] % self.log_every == 0 or record["step"] == self.total
        self._scalars(record, rates if logged else {})
        if logged:
            self.write({"event": "train", **record, **rates})
            self._mark, self._mark_steps = now, self._steps

    def _scalars(self, record: dict[str, Any], rates: dict[str, float]) -> None:
        if self._writer is None:
            return
        for key in ("loss", "lr", "grad_norm", *rates):
            value = rates[key] if key in rates else record.get(key)
            if value is not None:
                self._writer.add_scalar(f"train/{key}", float(value), global_step=record["step"])

    def summary(self) -> dict[str, float]:
        return self.rates(self._steps, time.perf_counter() - self._began)

    def write(self, record: dict[str, Any]) -> None:
        self._log.write(record)


_STATUS = "loss {loss:.3f} lr {lr:.1e} |g| {norm} {tps:,.0f} tok/s MFU {mfu}"


def _bar_fields(record: dict[str, Any], rates: dict[str, float]) -> dict[str, Any]:
    norm = record.get("grad_norm")
    mfu = rates.get("mfu")
    return {
        "loss": record["loss"],
        "lr": record["lr"],
        "norm": f"{norm:.2f}" if norm is not None else "-",
        "tps": rates["tokens_per_s"],
        "mfu": f"{100 * mfu:.1f}%" if mfu is not None else "-",
    }
