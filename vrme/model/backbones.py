"""Temporal blocks of the slow-fast network: a Mamba layer (the paper's), a Transformer layer and
a GRU, each wrapped in the same residual block with stochastic depth.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from vrme.model.mamba import Mamba, ScanChoice

Backbone = Literal["mamba", "transformer", "gru"]


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's whole residual branch with probability
    ``rate`` and scale survivors by ``1 / (1 - rate)``; the identity in eval mode."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``mask``: this sample's factors, drawn beforehand by :meth:`draw` (0 or
        ``1 / (1 - rate)`` per sample, shape (batch, 1, ...)); None draws them here."""
        if self.rate == 0.0 or not self.training:
            return x
        return x * (self.draw(x) if mask is None else mask)

    def draw(self, x: Tensor) -> Tensor:
        """The factors for a batch like ``x``, drawn from torch's global generator."""
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


def drop_path_rates(max_rate: float, n_blocks: int) -> list[float]:
    """Drop-path rate of each of the ``n_blocks`` blocks of a stage.

    The reference spaces ``n_blocks`` rates evenly over ``[0, max_rate]``, puts a 0 in front and
    takes the first ``n_blocks``: with 4 blocks and 0.2 that is 0, 0, 0.067, 0.133.
    """
    if n_blocks == 1:
        return [0.0]
    rates = [0.0] + [max_rate * i / (n_blocks - 1) for i in range(n_blocks)]
    return rates[:n_blocks]


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(length, dim) sine/cosine position codes (Transformer backbone; the others are ordered by
    construction)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


class TransformerMixer(nn.Module):
    """Self-attention over time plus a feed-forward layer (pre-norm inside), on (B, T, dim)."""

    def __init__(self, dim: int, n_heads: int, expand: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"model.n_heads ({n_heads}) must divide the channel count ({dim})")
        self.attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, expand * dim), nn.GELU(),
                                 nn.Linear(expand * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        h = x + self.attn(x, x, x, need_weights=False)[0]
        return h + self.ffn(self.norm(h))


class GRUMixer(nn.Module):
    """A one-layer unidirectional GRU over time (causal, like the Mamba layer), on (B, T, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.gru(x)[0]


class Block(nn.Module):
    """``x + drop_path(LayerNorm(mixer(LayerNorm(x))))`` on (batch, time, dim).

    The reference normalises both before the Mamba layer and after it, inside the residual.
    """

    def __init__(self, dim: int, mixer: nn.Module, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer = mixer
        self.post_norm = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, drop_mask: Tensor | None = None) -> Tensor:
        return x + self.drop_path(self.post_norm(self.mixer(self.norm(x))), drop_mask)


def make_mixer(
    backbone: Backbone,
    dim: int,
    *,
    d_state: int,
    d_conv: int,
    expand: int,
    dt_rank: int | None,
    n_heads: int,
    scan: ScanChoice,
) -> nn.Module:
    """The temporal layer of one block for ``backbone`` (channels ``dim`` in and out)."""
    if backbone == "mamba":
        return Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank, scan=scan)
    if backbone == "transformer":
        return TransformerMixer(dim, n_heads, expand)
    if backbone == "gru":
        return GRUMixer(dim)
    raise ValueError(f"unknown backbone {backbone!r}")
