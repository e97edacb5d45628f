"""The multimodal fusion classifier: image tokens attended by metadata and lesion-mask queries.

Wiring (see docs/ARCHITECTURE.md): a timm image backbone gives a feature map whose h*w
positions, projected to d and given a fixed 2-D sine-cosine position, are the keys and values;
the metadata MLP vector and the mask-branch vector are one query token each, in their own
attention module. Their outputs F_meta_img, F_mask_img and the pooled image vector F_img are
concatenated into a ReLU FFN that gives the class logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .backbones import create_backbone
from .positional import sincos_2d
from .weights import normalisation_for, weights_kind

FUSIONS = ("cross_attention", "concat")
MASK_INPUT_MODES = ("binary", "masked_image")


@dataclass
class FusionConfig:
    """How to build the fusion classifier; the defaults are the source paper's."""

    image_backbone: str = "efficientnet_b3"  # timm name of the image branch
    mask_backbone: str | None = None  # timm name of the mask branch; None: same as image_backbone
    image_weights: str | None = None  # weights spec (weights.py): None/"none", "hub", "package:<name>", path
    mask_weights: str | None = None  # weights spec of the mask branch; its stem is adapted to 1 channel
    d_model: int = 256  # width of every token and branch vector; a multiple of heads and of 4
    heads: int = 8  # attention heads per cross-attention module
    meta_hidden: int | None = None  # metadata MLP width; None: d_model
    dropout: float = 0.3  # in the metadata MLP and the classifier FFN
    use_meta: bool = True  # ablation switch: metadata branch on/off
    use_mask: bool = True  # ablation switch: mask branch on/off
    fusion: str = "cross_attention"  # "cross_attention" (the paper) or "concat" (baseline)
    mask_input_mode: str = "binary"  # mask branch sees the binary mask, or "masked_image": image * mask
    mask_threshold: float = 0.5  # lesion probability above which a pixel is lesion (in-graph)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r} is not one of {FUSIONS}")
        if self.mask_input_mode not in MASK_INPUT_MODES:
            raise ValueError(f"mask_input_mode {self.mask_input_mode!r} is not one of {MASK_INPUT_MODES}")
        if self.d_model % self.heads or self.d_model % 4:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads ({self.heads}) and of 4")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold {self.mask_threshold} must lie strictly between 0 and 1")


def projection(channels: int, d_model: int) -> nn.Sequential:
    """LayerNorm then Linear: backbone features -> d_model.

    Backbone feature scales differ by orders of magnitude (a randomly initialised backbone in
    eval mode gives ~1e-3, a pretrained one ~1); normalising first keeps the projected tokens,
    queries and the attention logits in a useful range from the first step, so the attention
    weights (and the logits) respond to the metadata and the mask from initialisation on.
    """
    return nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, d_model))


def metadata_mlp(meta_dim: int, hidden: int, d_model: int, dropout: float) -> nn.Sequential:
    """Linear, BatchNorm, ReLU, Dropout; then a projection to d_model when hidden differs."""
    layers: list[nn.Module] = [nn.Linear(meta_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                               nn.Dropout(dropout)]
    # The next layer (attention in-projection or the FFN) is linear already, so a second
    # Linear of the same width would add parameters but no expressiveness.
    if hidden != d_model:
        layers.append(nn.Linear(hidden, d_model))
    return nn.Sequential(*layers)


class FusionClassifier(nn.Module):
    """forward(image, mask, meta) -> logits; the signature is the same in every ablation."""

    def __init__(self, cfg: FusionConfig, meta_dim: int, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.image_backbone = create_backbone(cfg.image_backbone, cfg.image_weights,
                                              num_classes=0, global_pool="")
        channels = self.image_backbone.num_features
        self.image_proj = projection(channels, d)
        self.normalisation = normalisation_for(cfg.image_backbone, cfg.image_weights)
        if cfg.use_meta:
            self.meta_mlp = metadata_mlp(meta_dim, cfg.meta_hidden or d, d, cfg.dropout)
        if cfg.use_mask:
            in_chans = 1 if cfg.mask_input_mode == "binary" else 3
            self.mask_backbone = create_backbone(cfg.mask_backbone or cfg.image_backbone,
                                                 cfg.mask_weights, num_classes=0, in_chans=in_chans)
            self.mask_proj = projection(pooled_width(self.mask_backbone), d)
        queries = [name for name, on in (("meta", cfg.use_meta), ("mask", cfg.use_mask)) if on]
        if cfg.fusion == "cross_attention" and queries:
            self.token_proj = projection(channels, d)
            # One module per query modality: metadata and mask look for different things in
            # the image, so each learns its own query/key/value projections.
            self.attention = nn.ModuleDict(
                {name: nn.MultiheadAttention(d, cfg.heads, batch_first=True) for name in queries})
        parts = len(queries) + 1
        self.head = nn.Sequential(nn.Linear(parts * d, d), nn.ReLU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(d, num_classes))
        self.frozen_backbones: set[str] = set()  # names of backbones kept frozen (see freeze_backbones)
        self.frozen_image_blocks = 0  # the image backbone's stem and first blocks kept frozen (freeze_image_stem)

    def image_tokens(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) feature map -> (N, h*w, d) keys/values with positions added."""
        h, w = feature_map.shape[-2:]
        tokens = self.token_proj(feature_map.flatten(2).transpose(1, 2))
        return tokens + sincos_2d(h, w, self.cfg.d_model, tokens.device, tokens.dtype)

    def attend(self, name: str, query: torch.Tensor, tokens: torch.Tensor,
               need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, d) query vector attends over (N, L, d) image tokens.

        Returns:
            The attended vector (N, d), e.g. F_meta_img, and with ``need_weights`` the attention
            weights averaged over heads (N, L), a distribution over the image positions; else None.
        """
        attended, weights = self.attention[name](query.unsqueeze(1), tokens, tokens,
                                                 need_weights=need_weights, average_attn_weights=True)
        return attended[:, 0], None if weights is None else weights[:, 0]

    @property
    def attention_queries(self) -> list[str]:
        """Names of the queries that attend over the image tokens, in output order; [] when none."""
        if self.cfg.fusion != "cross_attention":
            return []
        return list(self.attention) if hasattr(self, "attention") else []

    def mask_input(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """What the mask branch sees, thresholded in-graph so ONNX consumers feed probabilities."""
        binary = (mask > self.cfg.mask_threshold).to(image.dtype)
        # A normalised image is 0 at the mean colour, so the masked-out background becomes
        # a neutral grey rather than a black that the backbone never saw in pretraining.
        return binary if self.cfg.mask_input_mode == "binary" else image * binary

    def forward(self, image: torch.Tensor, mask: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            image: (N, 3, H, W) normalised with ``self.normalisation``.
            mask: (N, 1, H, W) lesion probability in [0, 1] from the segmenter.
            meta: (N, D) one-hot metadata from the manifest's vocabulary.

        Returns:
            (N, num_classes) logits.
        """
        feature_map, mask_vector = self.backbone_features(image, mask)
        logits = self.forward_from_features(feature_map, mask_vector, meta)
        return self._keep_unused_inputs(logits, mask, meta)

    def backbone_features(self, image: torch.Tensor,
                          mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The backbones' outputs: the part a frozen-backbone ablation computes once and caches.

        Args:
            image: (N, 3, H, W) normalised with ``self.normalisation``.
            mask: (N, 1, H, W) lesion probability in [0, 1].

        Returns:
            The image feature map (N, C, h, w), and the mask branch's pooled vector (N, C_mask),
            or None when the mask branch is off.
        """
        feature_map = self.image_backbone.forward_features(image)
        mask_vector = self.mask_backbone(self.mask_input(image, mask)) if self.cfg.use_mask else None
        return feature_map, mask_vector

    def forward_from_features(self, feature_map: torch.Tensor, mask_vector: torch.Tensor | None,
                              meta: torch.Tensor) -> torch.Tensor:
        """Class logits from backbone outputs: projections, attention, metadata MLP and head.

        ``forward`` is ``backbone_features`` followed by this, so training on cached backbone
        outputs runs exactly the head code the exported model runs.

        Args:
            feature_map: (N, C, h, w) from ``backbone_features``.
            mask_vector: (N, C_mask) from ``backbone_features``; ignored (may be None) when
                the mask branch is off.
            meta: (N, D) one-hot metadata.

        Returns:
            (N, num_classes) logits.
        """
        return self._fuse(feature_map, mask_vector, meta, need_weights=False)[0]

    def forward_with_attention(self, image: torch.Tensor, mask: torch.Tensor,
                               meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and where each query looked in the image (the explanation output).

        Args: as ``forward``.

        Returns:
            (N, num_classes) logits, and (N, Q, h, w) attention weights of the Q queries
            (``attention_queries`` order) over the h x w image feature positions, averaged over
            heads; each (h, w) map sums to 1.

        Raises:
            ValueError: the model has no cross-attention (concat fusion, or no query branch).
        """
        if not self.attention_queries:
            raise ValueError("this classifier has no cross-attention queries, so no attention maps")
        feature_map, mask_vector = self.backbone_features(image, mask)
        logits, weights = self._fuse(feature_map, mask_vector, meta, need_weights=True)
        h, w = feature_map.shape[-2:]
        attention = torch.stack(weights, dim=1).reshape(feature_map.shape[0], len(weights), h, w)
        return self._keep_unused_inputs(logits, mask, meta), attention

    def _fuse(self, feature_map: torch.Tensor, mask_vector: torch.Tensor | None, meta: torch.Tensor,
              need_weights: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits, and the attention weights (N, h*w) per query when ``need_weights``."""
        vectors = {}
        if self.cfg.use_meta:
            vectors["meta"] = self.meta_mlp(meta)
        if self.cfg.use_mask:
            vectors["mask"] = self.mask_proj(mask_vector)
        weights: list[torch.Tensor] = []
        if self.cfg.fusion == "cross_attention" and vectors:
            tokens = self.image_tokens(feature_map)
            parts = []
            for name, vector in vectors.items():
                attended, weight = self.attend(name, vector, tokens, need_weights)
                parts.append(attended)
                if weight is not None:
                    weights.append(weight)
        else:
            parts = list(vectors.values())
        parts.append(self.image_proj(feature_map.mean(dim=(2, 3))))
        return self.head(torch.cat(parts, dim=1)), weights

    def _keep_unused_inputs(self, logits: torch.Tensor, mask: torch.Tensor,
                            meta: torch.Tensor) -> torch.Tensor:
        """Add an exact zero per ablated input, so an exported ONNX graph still takes it.

        The TorchScript ONNX exporter drops graph inputs nothing reads, and the bundle contract
        requires image, mask and meta in every variant. One element per row times zero stays
        finite in FP16 (a sum over the mask could overflow), and no optimiser folds x * 0.
        """
        for tensor, used in ((mask, self.cfg.use_mask), (meta, self.cfg.use_meta)):
            if not used:
                logits = logits + tensor.flatten(1)[:, :1] * 0.0
        return logits

    def pretrained_branches(self) -> list[str]:
        """The branches whose backbone starts from pretrained weights (what ``backbone_lr`` is for).

        A branch built without weights, such as a small mask branch trained from scratch,
        learns at the head's rate.
        """
        specs = {"image": self.cfg.image_weights, "mask": self.cfg.mask_weights}
        return [name for name in self.named_backbones() if weights_kind(specs[name]) != "none"]

    def backbones(self) -> list[nn.Module]:
        """The pretrained-style backbones (image, and mask when on)."""
        return list(self.named_backbones().values())

    def named_backbones(self) -> dict[str, nn.Module]:
        return {"image": self.image_backbone, **({"mask": self.mask_backbone} if self.cfg.use_mask else {})}

    def train(self, mode: bool = True) -> "FusionClassifier":
        super().train(mode)
        # A frozen backbone keeps its BatchNorm statistics too, not only its weights.
        for name in self.frozen_backbones:
            self.named_backbones()[name].eval()
        for module in image_stem(self, self.frozen_image_blocks):
            module.eval()
        return self


class WithAttention(nn.Module):
    """Export wrapper: ``forward`` gives (logits, attention), so the ONNX graph has both outputs."""

    def __init__(self, model: FusionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, mask: torch.Tensor,
                meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_attention(image, mask, meta)


def backbone_parameters(model: FusionClassifier, pretrained_only: bool = False) -> list[nn.Parameter]:
    """Parameters of the image and mask backbones; with ``pretrained_only`` those of the backbones
    that start from pretrained weights, the ones a lower backbone learning rate is for."""
    names = model.pretrained_branches() if pretrained_only else list(model.named_backbones())
    return [p for name in names for p in model.named_backbones()[name].parameters()]


def pooled_width(backbone: nn.Module) -> int:
    """Width of a timm backbone's pooled output (``num_classes=0``).

    For EfficientNets it is ``num_features``; MobileNetV3 and LCNet put a 1x1 conv head after the
    pooling, so their output is ``head_hidden_size`` wide (1,024 for mobilenetv3_small_050).
    """
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def freeze_backbones(model: FusionClassifier, freeze: bool = True,
                     branches: tuple[str, ...] = ("image", "mask")) -> int:
    """Freeze (or unfreeze) backbones for a warm-up / fine-tune schedule.

    Frozen backbones get ``requires_grad=False`` and stay in eval mode (BatchNorm statistics
    fixed) even when ``model.train()`` is called; projections, attention, metadata MLP and head
    stay trainable. Build the optimiser over ``p for p in model.parameters() if p.requires_grad``
    or keep all parameters in it: frozen ones simply get no gradient.

    Args:
        model: the classifier.
        freeze: True to freeze, False to make trainable again.
        branches: which backbones, of "image" and "mask" (absent ones are ignored).

    Returns:
        The number of parameter elements whose ``requires_grad`` is now ``not freeze``.
    """
    chosen = {name: b for name, b in model.named_backbones().items() if name in branches}
    parameters = [p for backbone in chosen.values() for p in backbone.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(not freeze)
    if freeze:
        model.frozen_backbones |= set(chosen)
    else:
        model.frozen_backbones -= set(chosen)
    for module in image_stem(model, model.frozen_image_blocks):  # frozen for the whole run, warm-up or not
        module.requires_grad_(False)
    model.train(model.training)
    return sum(p.numel() for p in parameters if p.requires_grad != freeze)


def image_stem(model: FusionClassifier, blocks: int) -> list[nn.Module]:
    """The image backbone's stem and its first ``blocks`` blocks ([] for 0).

    timm's EfficientNet and MobileNet backbones name them ``conv_stem``, ``bn1`` and ``blocks``;
    another layout is refused rather than freezing something else.
    """
    if blocks < 0:
        raise ValueError(f"frozen_image_blocks must be 0 or more, not {blocks}")
    if blocks == 0:
        return []
    backbone = model.image_backbone
    if not all(hasattr(backbone, name) for name in ("conv_stem", "bn1", "blocks")):
        raise ValueError(f"frozen_image_blocks needs an EfficientNet/MobileNet-style image backbone (conv_stem, "
                         f"bn1, blocks), not {type(backbone).__name__}")
    if blocks > len(backbone.blocks):
        raise ValueError(f"frozen_image_blocks {blocks} is more than the image backbone's {len(backbone.blocks)} blocks")
    return [backbone.conv_stem, backbone.bn1, *list(backbone.blocks)[:blocks]]


def freeze_image_stem(model: FusionClassifier, blocks: int) -> int:
    """Keep the image backbone's stem and first ``blocks`` blocks frozen for the whole run.

    Their ImageNet features are edges, colours and textures that any camera's image has; not
    updating them skips the most expensive part of the backward pass (the full-resolution layers:
    30-40 % of a training step on a CPU for the stem and three blocks of Lite0 at 160 px). Their
    BatchNorm statistics stay fixed too. Returns the number of parameter elements frozen.
    """
    modules = image_stem(model, blocks)
    model.frozen_image_blocks = blocks
    for module in modules:
        module.requires_grad_(False)
    model.train(model.training)
    return sum(p.numel() for module in modules for p in module.parameters())
