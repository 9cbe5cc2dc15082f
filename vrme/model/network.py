"""The slow-fast multitask network (METHOD.md section 6).

Input ``(batch, in_channels, k)``: per-frame ROI optical-flow features of one window. A
convolutional stem maps it to ``fast_channels`` per frame (the fast path, ``k`` steps) and a
stride-2 convolution gives the slow path (``slow_channels``, ``ceil(k / 2)`` steps). Each stage
runs ``blocks_per_stage`` temporal blocks on each path; after every stage but the last the fast
path is added into the slow one through a stride-2 convolution (lateral connection). The slow
path is then repeated x2 in time, concatenated with the fast path, and two per-frame linear
heads give the spotting score (sigmoid) and the class logits.

Micro-batches (``micro_batch``, ``train.micro_batch`` in the config): in training, the temporal
blocks of each stage can run a few windows at a time, keeping for backward only each stage's
input and recomputing the blocks of one micro-batch at a time there (activation
checkpointing), so the activation memory of a step is that of one micro-batch of blocks plus
the small per-stage tensors of the whole batch. Everything that mixes windows (the
BatchNorms of the stem and the lateral connections, the heads and the loss) still sees the
whole batch, and the drop-path draws are made in the unchunked order, so the loss and the
gradients are those of the unchunked step up to float rounding (the weight gradients are
summed over micro-batches). It costs one more forward pass of the blocks.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vrme.model.backbones import Backbone, Block, drop_path_rates, make_mixer
from vrme.model.mamba import Mamba, ScanChoice

InitScheme = Literal["reference", "mamba"]


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv1d(c_in, c_out, 3, stride, 1), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]


class LateralConnection(nn.Module):
    """Adds the fast path, downsampled x2 in time by a Conv1d + BN + ReLU, into the slow path."""

    def __init__(self, fast_channels: int, slow_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn_relu(fast_channels, slow_channels, 2))

    def forward(self, slow: Tensor, fast: Tensor) -> Tensor:
        """``slow`` (B, ceil(T/2), slow_channels), ``fast`` (B, T, fast_channels) -> slow shape."""
        return slow + self.conv(fast.transpose(1, 2)).transpose(1, 2)


class SlowFastNet(nn.Module):
    """Shared slow-fast temporal backbone with a spotting head and a recognition head.

    ``forward(x)`` takes ``x`` (batch, in_channels, k) float and returns ``(spot, logits)``:
    ``spot`` (batch, k) in [0, 1] and ``logits`` (batch, k, n_classes), one per frame index of
    the window (frames after skipping).
    """

    def __init__(
        self,
        *,
        backbone: Backbone = "mamba",
        in_channels: int = 36,
        fast_channels: int = 128,
        slow_channels: int = 256,
        stages: int = 3,
        blocks_per_stage: int = 4,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        drop_path: float = 0.2,
        n_heads: int = 4,
        n_classes: int = 5,
        scan: ScanChoice = "auto",
        init: InitScheme = "reference",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.stem = nn.Sequential(
            *_conv_bn_relu(in_channels, fast_channels, 1),
            *_conv_bn_relu(fast_channels, fast_channels, 1),
        )
        self.stem_slow = nn.Sequential(*_conv_bn_relu(fast_channels, slow_channels, 2))
        rates = drop_path_rates(drop_path, blocks_per_stage)
        mixer_args = dict(
            d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank, n_heads=n_heads,
            scan=scan
        )

        def stage(dim: int) -> nn.ModuleList:
            return nn.ModuleList(
                Block(dim, make_mixer(backbone, dim, **mixer_args), rates[i])  # type: ignore[arg-type]
                for i in range(blocks_per_stage)
            )

        # Built slow stage then fast stage, stage by stage, as the reference does (this fixes
        # the order in which parameters draw from the random generator).
        self.slow_stages = nn.ModuleList()
        self.fast_stages = nn.ModuleList()
        for _ in range(stages):
            self.slow_stages.append(stage(slow_channels))
        for _ in range(stages):
            self.fast_stages.append(stage(fast_channels))
        self.laterals = nn.ModuleList(
            LateralConnection(fast_channels, slow_channels) for _ in range(stages - 1)
        )
        self.spot_head = nn.Linear(fast_channels + slow_channels, 1)
        self.recog_head = nn.Linear(fast_channels + slow_channels, n_classes)
        self._init_weights(init, n_layer=blocks_per_stage)
        self.micro_batch: int | None = None

    def _init_weights(self, scheme: InitScheme, n_layer: int) -> None:
        """The reference's initialisation.

        Every Linear weight is drawn from a normal truncated to [-2, 2] with std 0.02 and every
        Linear bias set to 0; LayerNorms start at (1, 0). Inside the Mamba layers this replaces
        ``mamba_ssm``'s own dt_proj init (so dt starts at softplus(0) ~ 0.69), as in the
        reference; ``scheme="mamba"`` keeps the Mamba layers' own init instead. Finally every
        ``out_proj`` weight is redrawn kaiming-uniform (a = sqrt(5)) and divided by
        ``sqrt(n_layer)`` (GPT-2 style residual scaling). Convolutions and BatchNorms keep
        PyTorch's defaults.
        """
        keep = set()
        if scheme == "mamba":
            keep = {id(m) for mb in self.modules() if isinstance(mb, Mamba) for m in mb.modules()}
        for m in self.modules():
            if isinstance(m, nn.Linear) and id(m) not in keep:
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            out_proj = getattr(m, "out_proj", None)
            if isinstance(out_proj, nn.Linear):
                nn.init.kaiming_uniform_(out_proj.weight, a=math.sqrt(5))
                with torch.no_grad():
                    out_proj.weight /= math.sqrt(n_layer)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(batch, in_channels, k) -> spot (batch, k) in [0, 1], logits (batch, k, n_classes)."""
        if x.ndim == 4 and x.shape[1] == 1:  # the reference's (batch, 1, channels, k)
            x = x.squeeze(1)
        k = x.shape[-1]
        x = self.stem(x)
        slow = self.stem_slow(x).transpose(1, 2)
        fast = x.transpose(1, 2)
        mb = self.micro_batch
        chunked = (mb is not None and self.training and torch.is_grad_enabled()
                   and x.shape[0] > mb)
        for i, (slow_blocks, fast_blocks) in enumerate(zip(self.slow_stages, self.fast_stages)):
            if chunked:
                # The drop-path factors of the whole batch, drawn in the unchunked order.
                slow_masks = [blk.drop_path.draw(slow) if self._drops(blk) else None
                              for blk in slow_blocks]
                fast_masks = [blk.drop_path.draw(fast) if self._drops(blk) else None
                              for blk in fast_blocks]
                slow = _chunked_blocks(slow_blocks, slow, slow_masks, mb)
                fast = _chunked_blocks(fast_blocks, fast, fast_masks, mb)
            else:
                for blk in slow_blocks:
                    slow = blk(slow)
                for blk in fast_blocks:
                    fast = blk(fast)
            if i < len(self.laterals):
                slow = self.laterals[i](slow, fast)
        slow = slow.repeat_interleave(2, dim=1)[:, :k]  # nearest-neighbour x2 upsampling
        fused = torch.cat((slow, fast), dim=2)
        spot = torch.sigmoid(self.spot_head(fused)).squeeze(-1)
        return spot, self.recog_head(fused)

    @staticmethod
    def _drops(blk: Block) -> bool:
        return blk.training and blk.drop_path.rate > 0.0


def _run_blocks(blocks: nn.ModuleList, x: Tensor, *masks: Tensor | None) -> Tensor:
    for blk, m in zip(blocks, masks):
        x = blk(x, m)
    return x


def _chunked_blocks(blocks: nn.ModuleList, x: Tensor, masks: list[Tensor | None],
                    size: int) -> Tensor:
    """``blocks`` over ``x`` (batch, time, channels), ``size`` windows at a time, each
    micro-batch checkpointed: only its input is kept and its blocks are recomputed in backward."""
    outs = []
    for s in range(0, x.shape[0], size):
        part = [None if m is None else m[s:s + size] for m in masks]
        outs.append(checkpoint(_run_blocks, blocks, x[s:s + size], *part, use_reentrant=False,
                               preserve_rng_state=False))
    return torch.cat(outs)
