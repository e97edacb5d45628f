"""A small ensemble exported as one classifier: the members' class probabilities, averaged.

Independently trained classifiers make different mistakes on cameras they have not seen, and
the mean of their probabilities ranks better than either (docs/results.md). The ensemble is one
module with the fusion classifier's interface (image, mask, metadata in; logits and attention
out), so it exports to one ONNX graph and the runtime, the manifest contract and the TensorRT
path need nothing new: screening applies ``softmax(logits / temperature)`` as for one model.

Its "logits" are the logarithm of the mean probability. With temperature 1 the runtime's softmax
gives the mean back exactly (the mean sums to 1); the bundle's temperature is fitted on the
validation split on top, as for a single model. Each member's softmax is taken at temperature 1:
the members are averaged as trained, and the ensemble is calibrated once, as a whole.
"""

from __future__ import annotations

import torch
from torch import nn

from .fusion import FusionClassifier

# The log of a probability the float16 engines can still represent: a class no member believes
# in gets a very low, finite logit instead of -inf (which would turn into NaN downstream).
MIN_PROBABILITY = 1e-7


class ProbabilityMean(nn.Module):
    """Members' softmax probabilities averaged; returned as log-probabilities ("logits")."""

    def __init__(self, members: list[FusionClassifier]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        queries = {tuple(m.attention_queries) for m in members}
        if len(queries) != 1:
            raise ValueError(f"ensemble members attend with different queries: {sorted(queries)}")
        self.members = nn.ModuleList(members)

    @property
    def attention_queries(self) -> list[str]:
        return list(self.members[0].attention_queries)

    def _log_mean(self, logits: list[torch.Tensor]) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(x.float(), dim=1) for x in logits]).mean(dim=0)
        return torch.log(probabilities.clamp_min(MIN_PROBABILITY))

    def forward(self, image: torch.Tensor, mask: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self._log_mean([member(image, mask, meta) for member in self.members])

    def forward_with_attention(self, image: torch.Tensor, mask: torch.Tensor,
                               meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log mean probabilities, the members' attention maps averaged): the report's heat
        map shows where the ensemble as a whole looked."""
        outputs = [member.forward_with_attention(image, mask, meta) for member in self.members]
        attention = torch.stack([a for _, a in outputs]).mean(dim=0)
        return self._log_mean([x for x, _ in outputs]), attention
