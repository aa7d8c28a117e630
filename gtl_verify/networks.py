"""Transformer backbones and heads for the learned components (pure torch).

One block design serves every network of the suite: the masked-diffusion denoiser, the density
ratio network, the (time-dependent) domain classifiers and the planner. A block is a DiT block
with adaptive layer norm (AdaLN) modulation:

    h   = LN(x) * (1 + scale_1(c)) + shift_1(c)
    x  <- x + gate_1(c) * Attention(h)
    h   = LN(x) * (1 + scale_2(c)) + shift_2(c)
    x  <- x + gate_2(c) * MLP(h)

where the conditioning vector c is a learned constant (``time_conditioning=False``) or
MLP(sinusoidal(t)) (``time_conditioning=True``). A final AdaLN layer follows the blocks.
Positions are rotary (applied to queries and keys) or learned absolute embeddings. Attention is
bidirectional unless ``causal=True``.

The token embedding has ``num_embeddings`` rows so that the mask id (K by default, or a
tokenizer's id such as BERT's 103) has its own row; tokens outside ``0..num_embeddings-1`` raise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .storage import atomic_torch_save
from .validation import check_int_range, check_real_range, check_tokens

POSITIONS = ("rotary", "learned")


@dataclass(frozen=True)
class BackboneConfig:
    """Sizes of a backbone.

    ``vocab_size`` K: clean tokens 0..K-1 (the size of a denoiser's output).
    ``num_embeddings``: rows of the token embedding, >= K; must exceed the mask id (K + 1 when the
    mask id is K; K when a tokenizer's mask id lies inside the vocabulary).
    ``max_length``: longest sequence accepted. ``hidden``/``blocks``/``heads``: transformer sizes
    (``hidden % heads == 0``; rotary positions need an even head size). ``cond``: size of the
    conditioning vector. ``mlp_ratio``: MLP width / hidden. ``dropout`` in [0, 1).
    ``positions``: ``rotary`` or ``learned``. ``time_conditioning``: condition on t in [0, 1].
    ``causal``: causal (autoregressive) attention instead of bidirectional.
    """

    vocab_size: int
    num_embeddings: int
    max_length: int
    hidden: int = 128
    blocks: int = 2
    heads: int = 4
    cond: int = 64
    mlp_ratio: float = 4
    dropout: float = 0.0
    positions: str = "rotary"
    time_conditioning: bool = False
    causal: bool = False

    def __post_init__(self) -> None:
        check_int_range("vocab_size", self.vocab_size, 1)
        check_int_range("num_embeddings", self.num_embeddings, 1)
        if self.num_embeddings < self.vocab_size:
            raise ValueError(
                f"num_embeddings must be >= vocab_size={self.vocab_size} (it must also cover the "
                f"mask id), got {self.num_embeddings}"
            )
        check_int_range("max_length", self.max_length, 1)
        check_int_range("hidden", self.hidden, 1)
        check_int_range("blocks", self.blocks, 0)
        check_int_range("heads", self.heads, 1)
        check_int_range("cond", self.cond, 2)
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be divisible by heads={self.heads}, got hidden={self.hidden}")
        check_real_range("mlp_ratio", self.mlp_ratio, 0.0, open_low=True)
        if self.mlp_width < 1:
            raise ValueError(f"mlp_ratio gives an MLP width below 1 at hidden={self.hidden}, got {self.mlp_ratio}")
        dropout = check_real_range("dropout", self.dropout, 0.0, 1.0)
        if dropout >= 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {list(POSITIONS)}, got {self.positions!r}")
        if self.positions == "rotary" and self.head_dim % 2:
            raise ValueError(
                f"rotary positions need an even head size hidden/heads, got hidden={self.hidden}, heads={self.heads}"
            )
        for name in ("time_conditioning", "causal"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def mlp_width(self) -> int:
        return int(round(self.hidden * self.mlp_ratio))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BackboneConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown BackboneConfig keys: {unknown}")
        return cls(**data)


# ------------------------------------------------------------------ building blocks
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of times t in [0, 1] (scaled by 1000), [B] -> [B, dim]:

        emb = [cos(1000 t f_j), sin(1000 t f_j)],  f_j = max_period^(-j / (dim/2)).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _rotary_tables(length: int, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]  # [L, dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [L, dim]
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding x cos + rot(x) sin of x [..., d] with tables ``cos``, ``sin``
    broadcastable to x (e.g. [L, d] for x [B, heads, L, d], [L, 1, 1, d] for x [B, L, 2, heads, d])."""
    return x * cos.to(x.dtype) + _rotate_half(x) * sin.to(x.dtype)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def _init_modulation(linear: nn.Linear) -> None:
    # small (not zero) weights: the conditioning already acts at initialisation
    nn.init.normal_(linear.weight, std=0.02)
    nn.init.zeros_(linear.bias)


class DiTBlock(nn.Module):
    """Attention + MLP block with AdaLN shift/scale/gate from a conditioning vector."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        h = config.hidden
        self.heads, self.causal, self.dropout = config.heads, config.causal, config.dropout
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False)
        self.qkv = nn.Linear(h, 3 * h, bias=False)
        self.proj = nn.Linear(h, h)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(h, config.mlp_width), nn.GELU(approximate="tanh"), nn.Linear(config.mlp_width, h))
        self.drop = nn.Dropout(config.dropout)
        self.modulation = nn.Linear(config.cond, 6 * h)
        _init_modulation(self.modulation)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        attn_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, length, h = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=-1)
        y = _modulate(self.norm1(x), shift1, scale1)
        qkv = self.qkv(y).reshape(b, length, 3, self.heads, h // self.heads)
        qk = qkv[:, :, :2]
        if rotary is not None:
            # rotated in the projection's own (contiguous) layout, queries and keys in one pass: the
            # same elementwise values as rotating the [B, heads, L, d] views, at a fraction of the cost
            cos, sin = rotary
            qk = apply_rotary(qk, cos[:, None, None, :], sin[:, None, None, :])
        q, k = qk.permute(2, 0, 3, 1, 4)
        v = qkv[:, :, 2].transpose(1, 2)
        p = self.dropout if self.training else 0.0
        if attn_mask is None:
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        a = a.transpose(1, 2).reshape(b, length, h)
        x = x + gate1[:, None, :] * self.drop(self.proj(a))
        y = _modulate(self.norm2(x), shift2, scale2)
        return x + gate2[:, None, :] * self.drop(self.mlp(y))


class Backbone(nn.Module):
    """Token embedding, DiT blocks and a final AdaLN: ``forward(z, t=None) -> [B, L, hidden]``."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        if not isinstance(config, BackboneConfig):
            raise ValueError(f"config must be a BackboneConfig, got {type(config).__name__}")
        self.config = config
        h = config.hidden
        self.embedding = nn.Embedding(config.num_embeddings, h)
        nn.init.normal_(self.embedding.weight, std=0.02)
        if config.positions == "learned":
            self.position = nn.Embedding(config.max_length, h)
            nn.init.normal_(self.position.weight, std=0.02)
        else:
            self.position = None
            cos, sin = _rotary_tables(config.max_length, config.head_dim)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        if config.time_conditioning:
            self.time_mlp = nn.Sequential(nn.Linear(config.cond, config.cond), nn.SiLU(), nn.Linear(config.cond, config.cond))
            self.constant_cond = None
        else:
            self.time_mlp = None
            self.constant_cond = nn.Parameter(torch.randn(config.cond))
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.blocks))
        self.final_norm = nn.LayerNorm(h, elementwise_affine=False)
        self.final_modulation = nn.Linear(config.cond, 2 * h)
        _init_modulation(self.final_modulation)

    # -------------------------------------------------------------- inputs
    def _check_inputs(self, z: torch.Tensor, t: torch.Tensor | float | None) -> torch.Tensor | None:
        cfg = self.config
        check_tokens("z", z, cfg.num_embeddings)
        if z.shape[1] > cfg.max_length:
            raise ValueError(f"z has length {z.shape[1]}, longer than max_length={cfg.max_length}")
        if z.shape[1] == 0:
            raise ValueError("z must hold at least one position, got length 0")
        if not cfg.time_conditioning:
            return None
        if t is None:
            raise ValueError("t is required: this network has time_conditioning=True, got t=None")
        t = torch.as_tensor(t, dtype=torch.float32, device=z.device)
        if t.dim() == 0:
            t = t.expand(z.shape[0])
        if t.shape != (z.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({z.shape[0]},), got {tuple(t.shape)}")
        if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
            raise ValueError(f"t must lie in [0, 1], got values in [{t.min().item()}, {t.max().item()}]")
        return t

    def conditioning(self, batch: int, t: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vector c [B, cond] (learned constant, or MLP(sinusoidal(t)))."""
        if self.time_mlp is None:
            return self.constant_cond[None, :].expand(batch, -1)
        emb = timestep_embedding(t, self.config.cond).to(self.final_modulation.weight.dtype)
        return self.time_mlp(emb)

    def _attention_mask(self, attention_mask: torch.Tensor | None, length: int, device) -> torch.Tensor | None:
        if attention_mask is None:
            return None
        keep = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L] keys
        if self.config.causal:
            keep = keep & torch.ones(length, length, dtype=torch.bool, device=device).tril()
        # every query may attend to itself (no empty rows)
        return keep | torch.eye(length, dtype=torch.bool, device=device)

    def forward(
        self,
        z: torch.Tensor,
        t: torch.Tensor | float | None = None,
        attention_mask: torch.Tensor | None = None,
        extra_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states [B, L, hidden] of tokens ``z`` [B, L] (ids < num_embeddings).

        ``t`` [B] or scalar in [0, 1]: required when ``time_conditioning``, ignored otherwise.
        ``attention_mask`` [B, L] (True = real token) hides padding keys. ``extra_embedding``
        [B, L, hidden] is added to the token embeddings (input features of a head).
        """
        t = self._check_inputs(z, t)
        b, length = z.shape
        if attention_mask is not None and attention_mask.shape != z.shape:
            raise ValueError(f"attention_mask must have shape {tuple(z.shape)}, got {tuple(attention_mask.shape)}")
        x = self.embedding(z.long())
        if extra_embedding is not None:
            if extra_embedding.shape != x.shape:
                raise ValueError(f"extra_embedding must have shape {tuple(x.shape)}, got {tuple(extra_embedding.shape)}")
            x = x + extra_embedding.to(x.dtype)
        rotary = None
        if self.position is not None:
            x = x + self.position.weight[None, :length]
        else:
            rotary = (self.rotary_cos[:length], self.rotary_sin[:length])
        c = self.conditioning(b, t)
        mask = self._attention_mask(attention_mask, length, z.device)
        for block in self.blocks:
            x = block(x, c, rotary, mask)
        shift, scale = self.final_modulation(F.silu(c)).chunk(2, dim=-1)
        return _modulate(self.final_norm(x), shift, scale)


# ------------------------------------------------------------------ heads
def readout(head: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Apply an output ``head`` to hidden states ``h`` [..., hidden] in the head's weight dtype
    (float32 unless the weights themselves were cast down) with autocast disabled.

    Under bf16 autocast the backbone runs in bf16 but the outputs that enter guidance (logits,
    log-ratios, planner scores) are not rounded to bf16's 8 significant bits, which costs up to
    2^-9 |y| (0.06 nats at a log-ratio of 30) before the float64 combine."""
    dtype = next(head.parameters()).dtype
    with torch.autocast(device_type=h.device.type, enabled=False):
        return head(h.to(dtype))


class DenoiserNet(nn.Module):
    """Backbone + linear head: logits over the K clean tokens, [B, L, K]."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, z: torch.Tensor, t: torch.Tensor | float | None = None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return readout(self.head, self.backbone(z, t, attention_mask))


class SequenceNet(nn.Module):
    """Backbone + masked-mean pooling + MLP: one vector [B, outputs] per sequence.

    Pooling averages the hidden states over the positions with ``attention_mask`` True (all
    positions by default). Used as domain classifier (one logit of P(source | z)) and as ratio
    network (one log-ratio).
    """

    def __init__(self, config: BackboneConfig, outputs: int = 1) -> None:
        super().__init__()
        self.config = config
        self.outputs = check_int_range("outputs", outputs, 1)
        self.backbone = Backbone(config)
        self.head = nn.Sequential(nn.Linear(config.hidden, config.hidden), nn.SiLU(), nn.Linear(config.hidden, self.outputs))

    def forward(self, z: torch.Tensor, t: torch.Tensor | float | None = None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.backbone(z, t, attention_mask).to(self.head[0].weight.dtype)
        if attention_mask is None:
            pooled = h.mean(dim=1)
        else:
            w = attention_mask.to(h.dtype)[..., None]
            pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return readout(self.head, pooled)


def confidence_features(log_probs: torch.Tensor) -> torch.Tensor:
    """Per-position features of denoiser log-probs [B, L, K] -> [B, L, 3]:
    (top probability, entropy, top-1 minus top-2 probability); finite for one-hot rows."""
    lp = log_probs.float()
    p = lp.exp()
    top = torch.topk(p, min(2, p.shape[-1]), dim=-1).values
    margin = top[..., 0] - (top[..., 1] if top.shape[-1] > 1 else 0.0)
    entropy = -torch.where(p > 0, p * lp, torch.zeros_like(p)).sum(-1)
    return torch.stack([top[..., 0], entropy, margin], dim=-1)


class PositionNet(nn.Module):
    """Backbone + per-position scalar score [B, L] (the planner: higher = reveal sooner).

    With ``log_prob_features=True`` the forward pass also takes the denoiser log-probs [B, L, K]
    and adds a linear embedding of their :func:`confidence_features` to the token embeddings.
    """

    def __init__(self, config: BackboneConfig, log_prob_features: bool = False) -> None:
        super().__init__()
        self.config = config
        self.log_prob_features = bool(log_prob_features)
        self.backbone = Backbone(config)
        self.features = nn.Linear(3, config.hidden) if self.log_prob_features else None
        self.head = nn.Linear(config.hidden, 1)

    def forward(
        self,
        z: torch.Tensor,
        t: torch.Tensor | float | None = None,
        log_probs: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = None
        if self.features is not None:
            if log_probs is None:
                raise ValueError("log_probs is required: this PositionNet has log_prob_features=True, got None")
            if log_probs.shape[:2] != z.shape:
                raise ValueError(f"log_probs must have shape ({z.shape[0]}, {z.shape[1]}, K), got {tuple(log_probs.shape)}")
            extra = self.features(confidence_features(log_probs).to(self.features.weight.dtype))
        return readout(self.head, self.backbone(z, t, attention_mask, extra)).squeeze(-1)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (scalars) of ``module`` (only those with requires_grad if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------ saving and loading
NETWORKS: dict[str, type[nn.Module]] = {"denoiser": DenoiserNet, "sequence": SequenceNet, "position": PositionNet}


def _spec(net: nn.Module) -> dict[str, Any]:
    for kind, cls in NETWORKS.items():
        if type(net) is cls:
            spec: dict[str, Any] = {"kind": kind, "config": net.config.to_dict()}
            if isinstance(net, SequenceNet):
                spec["outputs"] = net.outputs
            if isinstance(net, PositionNet):
                spec["log_prob_features"] = net.log_prob_features
            return spec
    raise ValueError(f"net must be one of {[c.__name__ for c in NETWORKS.values()]}, got {type(net).__name__}")


def build_network(spec: dict[str, Any]) -> nn.Module:
    """A fresh network from ``{"kind": denoiser|sequence|position, "config": {...}, ...}``."""
    kind = spec.get("kind")
    if kind not in NETWORKS:
        raise ValueError(f"network kind must be one of {sorted(NETWORKS)}, got {kind!r}")
    config = BackboneConfig.from_dict(spec["config"])
    if kind == "sequence":
        return SequenceNet(config, outputs=spec.get("outputs", 1))
    if kind == "position":
        return PositionNet(config, log_prob_features=spec.get("log_prob_features", False))
    return DenoiserNet(config)


def save_network(net: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save a network (spec, weights on CPU, optional metadata) atomically with torch.save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "spec": _spec(net),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": meta or {},
    }
    return atomic_torch_save(payload, path)


def load_network(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a network saved by :func:`save_network`: (network in eval mode, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network file not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or not {"spec", "state_dict"} <= payload.keys():
        raise ValueError(f"network file {path} must hold 'spec' and 'state_dict'")
    net = build_network(payload["spec"])
    net.load_state_dict(payload["state_dict"])
    return net.to(map_location).eval(), payload.get("meta", {})
