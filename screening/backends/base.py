"""The Runner interface every inference backend implements (Polygraphy-style).

A runner wraps one model. ``infer(feed) -> outputs`` checks the feed against the model's
declared inputs and times the call; subclasses implement only ``_activate``, ``_infer_impl``
and ``_deactivate``. Runners are context managers: resources live between enter and exit.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output; None marks a dynamic axis."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


class Runner(ABC):
    """One model behind a backend; use as ``with runner: runner.infer({...})``."""

    backend = "abstract"

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_active = False
        self.inference_time = 0.0  # seconds spent in _infer_impl, summed over calls
        self.calls = 0

    def __enter__(self) -> "Runner":
        self._activate()
        self.is_active = True
        return self

    def __exit__(self, *exc_info) -> None:
        self.is_active = False
        self._deactivate()

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _deactivate(self) -> None: ...

    @abstractmethod
    def input_specs(self) -> dict[str, TensorSpec]: ...

    @abstractmethod
    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on one batch; raises ValueError when the feed does not fit the model."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active: use it inside a with-block")
        self._check_feed(feed)
        start = time.perf_counter()
        outputs = self._infer_impl(feed)
        self.inference_time += time.perf_counter() - start
        self.calls += 1
        return outputs

    def _check_feed(self, feed: dict[str, np.ndarray]) -> None:
        specs = self.input_specs()
        if set(feed) != set(specs):
            raise ValueError(f"{self.name}: feed has inputs {sorted(feed)}, model expects {sorted(specs)}")
        for name, spec in specs.items():
            array = feed[name]
            if array.dtype != spec.dtype:
                raise ValueError(f"{self.name}: input {name!r} is {array.dtype}, model expects {spec.dtype}")
            if len(array.shape) != len(spec.shape) or any(
                want is not None and got != want for got, want in zip(array.shape, spec.shape)
            ):
                raise ValueError(f"{self.name}: input {name!r} has shape {array.shape}, "
                                 f"model expects {spec.shape}")
