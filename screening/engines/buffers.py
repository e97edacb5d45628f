"""Host and device buffers of the two engines, sized from the manifest for the profile's max batch.

The segmenter's ``mask`` output and the classifier's ``mask`` input are one device buffer: the
mask never leaves the GPU between the two engines. Every engine input and output is float32,
because the FP16 conversion keeps the models' I/O types (see ``fp16``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attention import ATTENTION_OUTPUT
from ..errors import BundleError
from ..manifest import Manifest
from .profile import resolve_shape

IO_DTYPE = np.dtype(np.float32)
SHARED_MASK = "segmenter/mask"  # device buffer written by the segmenter, read by the classifier


@dataclass(frozen=True)
class BufferSpec:
    """One device buffer (and its page-locked host twin, when it crosses to the host)."""

    shape: tuple[int, ...]  # at the profile's max batch
    dtype: np.dtype = IO_DTYPE

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def batch_shape(self, batch: int) -> tuple[int, ...]:
        """The shape of a batch of ``batch`` items."""
        return (batch, *self.shape[1:])

    def batch_nbytes(self, batch: int) -> int:
        """Bytes that one batch of ``batch`` items occupies (what an async copy moves)."""
        return int(np.prod(self.batch_shape(batch))) * self.dtype.itemsize


@dataclass(frozen=True)
class BufferPlan:
    """Which buffers exist and how each engine tensor and run_batch argument maps onto them."""

    max_batch: int
    device: dict[str, BufferSpec]  # key "<role>/<tensor>" -> buffer
    bindings: dict[str, dict[str, str]]  # role -> tensor name -> device key
    host_inputs: dict[str, str] = field(default_factory=dict)  # run_batch argument -> device key
    host_outputs: dict[str, str] = field(default_factory=dict)  # BatchOutputs field -> device key

    @property
    def device_nbytes(self) -> int:
        return sum(spec.nbytes for spec in self.device.values())

    @property
    def host_nbytes(self) -> int:
        """Page-locked host memory: one twin per buffer that crosses to or from the host."""
        keys = {*self.host_inputs.values(), *self.host_outputs.values()}
        return sum(self.device[key].nbytes for key in keys)


def buffer_plan(manifest: Manifest, max_batch: int) -> BufferPlan:
    """Plan the buffers of a bundle's two engines for batches of up to ``max_batch`` items."""
    seg, cls = manifest.segmenter, manifest.classifier
    mask_out = resolve_shape(seg.outputs["mask"], max_batch, "segmenter output 'mask'")
    mask_in = resolve_shape(cls.inputs["mask"], max_batch, "classifier input 'mask'")
    if mask_out != mask_in:
        raise BundleError(f"segmenter output 'mask' has shape {list(mask_out[1:])} per image but the "
                          f"classifier input 'mask' expects {list(mask_in[1:])}: "
                          f"the bundle's models do not fit together")
    def buffer(shape: list, where: str) -> BufferSpec:
        return BufferSpec(resolve_shape(shape, max_batch, where))

    device = {
        "segmenter/image": buffer(seg.inputs["image"], "segmenter input 'image'"),
        SHARED_MASK: BufferSpec(mask_out),
        "classifier/image": buffer(cls.inputs["image"], "classifier input 'image'"),
        "classifier/meta": buffer(cls.inputs["meta"], "classifier input 'meta'"),
        "classifier/logits": buffer(cls.outputs["logits"], "classifier output 'logits'"),
    }
    bindings = {
        "segmenter": {"image": "segmenter/image", "mask": SHARED_MASK},
        "classifier": {"image": "classifier/image", "mask": SHARED_MASK, "meta": "classifier/meta",
                       "logits": "classifier/logits"},
    }
    host_outputs = {"mask": SHARED_MASK, "logits": "classifier/logits"}
    if ATTENTION_OUTPUT in cls.outputs:  # optional explanation output (screening.attention)
        key = f"classifier/{ATTENTION_OUTPUT}"
        device[key] = buffer(cls.outputs[ATTENTION_OUTPUT], f"classifier output {ATTENTION_OUTPUT!r}")
        bindings["classifier"][ATTENTION_OUTPUT] = key
        host_outputs[ATTENTION_OUTPUT] = key
    return BufferPlan(
        max_batch=max_batch, device=device, bindings=bindings,
        host_inputs={"seg_image": "segmenter/image", "cls_image": "classifier/image", "meta": "classifier/meta"},
        host_outputs=host_outputs,
    )
