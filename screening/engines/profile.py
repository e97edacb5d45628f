"""The one optimisation profile of an engine: min 1, opt and max over the batch axis.

Shapes come from the manifest (batch axis ``"N"``, the other axes numbers, the spatial ones
equal to its ``input_size``), so an engine is built for exactly the tensors the runtime feeds.
Batches larger than the profile's max are split by ``batch_slices``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import BundleError, InputError
from ..manifest import ModelSpec

BATCH_AXIS = "N"
DEFAULT_MAX_BATCH = 32  # the largest batch the engine accepts; larger ones are split


@dataclass(frozen=True)
class InputProfile:
    """Min, opt and max shapes of one engine input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[int]]) -> "InputProfile":
        return cls(tuple(int(d) for d in data["min"]), tuple(int(d) for d in data["opt"]),
                   tuple(int(d) for d in data["max"]))


def check_batches(opt_batch: int, max_batch: int) -> None:
    """Raise InputError unless 1 <= opt_batch <= max_batch."""
    if max_batch < 1:
        raise InputError(f"--max-batch must be at least 1, got {max_batch}")
    if opt_batch < 1:
        raise InputError(f"--opt-batch must be at least 1, got {opt_batch}")
    if opt_batch > max_batch:
        raise InputError(f"--opt-batch {opt_batch} is larger than --max-batch {max_batch}")


def resolve_shape(shape: Sequence[Any], batch: int, where: str) -> tuple[int, ...]:
    """A manifest shape with ``batch`` on its batch axis.

    Args:
        shape: the manifest's shape, batch axis first as ``"N"``, e.g. ``["N", 3, 224, 224]``.
        batch: the batch size to put on the batch axis.
        where: names the tensor in error messages, e.g. ``"segmenter input 'image'"``.
    """
    if not shape or shape[0] != BATCH_AXIS:
        raise BundleError(f"{where} has shape {list(shape)}: its first axis must be the batch axis {BATCH_AXIS!r}")
    for dim in shape[1:]:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise BundleError(f"{where} has dimension {dim!r} in {list(shape)}: "
                              f"only the batch axis may be symbolic, the others must be positive numbers")
    return (batch, *shape[1:])


def profile_shapes(spec: ModelSpec, role: str, opt_batch: int, max_batch: int) -> dict[str, InputProfile]:
    """The optimisation profile of every input of one model, in the manifest's input order.

    Args:
        spec: the model's manifest entry (input names and shapes).
        role: ``"segmenter"`` or ``"classifier"``, for error messages.
        opt_batch: batch size TensorRT optimises for.
        max_batch: largest batch the engine accepts.
    """
    check_batches(opt_batch, max_batch)
    profiles = {}
    for name, shape in spec.inputs.items():
        where = f"{role} input {name!r}"
        profiles[name] = InputProfile(resolve_shape(shape, 1, where), resolve_shape(shape, opt_batch, where),
                                      resolve_shape(shape, max_batch, where))
    return profiles


def batch_slices(count: int, max_batch: int) -> list[slice]:
    """Consecutive slices of at most ``max_batch`` items covering ``range(count)``."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    return [slice(start, min(start + max_batch, count)) for start in range(0, count, max_batch)]
