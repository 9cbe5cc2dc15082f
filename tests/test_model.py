"""The slow-fast network, its Mamba layer and the pure-PyTorch selective scan."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import pytest
import torch

import vrme.model.fused as fused_mod
import vrme.model.scan as scan_mod
from vrme import native
from vrme.config import ConfigError, ModelConfig
from vrme.model import (
    Mamba,
    SlowFastNet,
    build_model,
    cuda_scan_available,
    drop_path_rates,
    selective_scan,
    selective_scan_ref,
)

TINY = dict(fast_channels=8, slow_channels=16, stages=2, blocks_per_stage=2, d_state=4, n_heads=2)


def _scan_inputs(b: int, L: int, D: int, N: int, seed: int,
                 dtype=torch.float64) -> list[torch.Tensor]:
    """u, delta, A, B, C, D, z, delta_bias with realistic ranges, all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    ts = [
        torch.randn(b, L, D, generator=g, dtype=dtype),  # u
        torch.randn(b, L, D, generator=g, dtype=dtype),  # delta (pre-softplus)
        -torch.rand(D, N, generator=g, dtype=dtype) * 4 - 0.05,  # A < 0
        torch.randn(b, L, N, generator=g, dtype=dtype),  # B
        torch.randn(b, L, N, generator=g, dtype=dtype),  # C
        torch.randn(D, generator=g, dtype=dtype),  # D
        torch.randn(b, L, D, generator=g, dtype=dtype),  # z
        torch.randn(D, generator=g, dtype=dtype) * 0.5,  # delta_bias
    ]
    return [t.requires_grad_(True) for t in ts]


def _fwd_bwd(fn, inputs, kwargs, seed=3):
    y = fn(*inputs, **kwargs)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    grads = torch.autograd.grad(y, [t for t in inputs if t is not None], gy)
    return y, grads


needs_fused = pytest.mark.skipif(not fused_mod.fused_scan_available(),
                                 reason="fused scan kernel unavailable: "
                                 f"{fused_mod.fused_scan_error()}")
IMPLS = ["torch", pytest.param("fused", marks=needs_fused)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("items_per_chunk", [0, 1, 2])  # 0: the default chunking
@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((3, 16, 6, 4), dict(delta_softplus=True)),
        ((5, 30, 8, 4), dict(delta_softplus=True)),
        ((2, 1, 4, 3), dict(delta_softplus=True)),  # a single time step
        ((4, 9, 5, 7), dict(delta_softplus=False)),
        # channels: two full blocks of the kernel + a part
        ((3, 7, 150, 5), dict(delta_softplus=True)),
    ],
)
def test_scan_matches_sequential_loop_float64(monkeypatch, impl, items_per_chunk, shape, kwargs):
    b, L, D, N = shape
    if items_per_chunk:  # process the batch in chunks (groups) of this many items (last partial)
        monkeypatch.setattr(scan_mod, "_CHUNK_ELEMS", items_per_chunk * L * D * N)
        monkeypatch.setattr(fused_mod, "_GROUPS", max(1, b // items_per_chunk))
    ours = _scan_inputs(b, L, D, N, seed=1)
    ref = [t.detach().clone().requires_grad_(True) for t in ours]
    if not kwargs["delta_softplus"]:  # keep delta positive without softplus
        for ts in (ours, ref):
            with torch.no_grad():
                ts[1].abs_()
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    y1, g1 = _fwd_bwd(lambda *a, **k: selective_scan(*a, impl=impl, **k), ours, kwargs)
    y2, g2 = _fwd_bwd(selective_scan_ref, ref, kwargs)
    assert y1.shape == (b, L, D)
    assert (y1 - y2).abs().max().item() < 1e-10
    for name, a, r in zip(names, g1, g2):
        assert (a - r).abs().max().item() < 1e-10, name
        if not (name == "A" and L == 1):  # with one step A never acts (h_{-1} = 0)
            assert r.abs().max().item() > 0, name  # the comparison is not vacuous


@pytest.mark.parametrize("impl", IMPLS)
def test_scan_without_optional_inputs_matches_loop(impl):
    u, delta, A, B, C, *_ = _scan_inputs(3, 12, 5, 4, seed=2)
    delta = delta.detach().abs().requires_grad_(True)
    inputs = [u, delta, A, B, C]
    ref_inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    y1, g1 = _fwd_bwd(lambda *a: selective_scan(*a, impl=impl), inputs, {})
    y2, g2 = _fwd_bwd(selective_scan_ref, ref_inputs, {})
    assert (y1 - y2).abs().max().item() < 1e-10
    assert max((a - r).abs().max().item() for a, r in zip(g1, g2)) < 1e-10


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_fused)])
def test_scan_core_passes_gradcheck(fused):
    u, delta, A, B, C, *_ = _scan_inputs(2, 5, 3, 2, seed=4)
    delta = torch.nn.functional.softplus(delta).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: scan_mod._ScanCore.apply(*a, fused),
                                    (u, delta, A, B, C))


@pytest.mark.parametrize("impl", IMPLS)
def test_scan_float32_close_to_float64_reference(impl):
    """float32 forward and gradients agree with the float64 loop to float32 rounding."""
    ins64 = _scan_inputs(4, 30, 80, 16, seed=5)
    ins32 = [t.detach().float().requires_grad_(True) for t in ins64]
    gy = torch.randn(4, 30, 80, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y32 = selective_scan(*ins32, delta_softplus=True, impl=impl)
    g32 = torch.autograd.grad(y32, ins32, gy.float())
    y64 = selective_scan_ref(*ins64, delta_softplus=True)
    g64 = torch.autograd.grad(y64, ins64, gy)
    assert y32.dtype == torch.float32
    assert (y32.double() - y64).abs().max().item() < 1e-4
    for a, r in zip(g32, g64):
        assert (a.double() - r).abs().max().item() < 1e-5 * max(1.0, r.abs().max().item())


@needs_fused
def test_fused_scan_same_numbers_whatever_the_thread_count():
    """The batch is split into fixed groups and their A gradients added in order, so the
    number of threads changes nothing in the kernel's results, bit for bit. (The PyTorch
    operations around it, softplus and silu, may round differently with another thread count.)"""
    u, delta, A, B, C, *_ = (t.detach().float() for t in _scan_inputs(37, 20, 70, 16, seed=8))
    delta = torch.nn.functional.softplus(delta)
    dy = torch.randn(u.shape, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            outs.append((fused_mod.fused_scan_forward(u, delta, A, B, C),
                         *fused_mod.fused_scan_backward(u, delta, A, B, C, dy)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*outs))
    assert len(fused_mod._groups(37)) > 1  # the split is real


@needs_fused
def test_fused_scan_restores_the_callers_float_mode():
    """The kernel flushes subnormals while it runs, and only then."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    ins = [t.detach().float() for t in _scan_inputs(2, 5, 8, 4, seed=9)]
    selective_scan(*ins, delta_softplus=True, impl="fused")
    assert (tiny * 1.0).item() > 0  # still a subnormal, not flushed to zero


def test_fused_scan_builds_where_a_compiler_exists():
    if native.compiler() is None:
        pytest.skip("no C compiler on this machine")
    assert fused_mod.fused_scan_available(), fused_mod.fused_scan_error()


def test_fused_scan_without_a_compiler_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "compiler", lambda: None)
    with pytest.raises(RuntimeError, match="no C compiler"):
        fused_mod._build()
    monkeypatch.setenv("VRME_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "compiler", lambda: "/nonexistent/cc")
    with pytest.raises(RuntimeError, match="does not run"):
        fused_mod._build()


@needs_fused
def test_fused_scan_builds_in_the_temp_folder_when_the_cache_is_not_writable(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VRME_KERNEL_CACHE", str(blocker / "kernels"))
    kernel = fused_mod._build()
    assert kernel.path.parent == Path(tempfile.gettempdir()) / f"vrme-kernels-{os.getuid()}"


def test_fused_scan_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(fused_mod, "_kernel", lambda: RuntimeError("no C compiler found"))
    with pytest.raises(RuntimeError, match="no C compiler"):
        Mamba(8, d_state=4, scan="fused")
    with pytest.raises(ConfigError, match="no C compiler"):
        build_model(ModelConfig(scan="fused", **TINY), 16)
    u, delta, A, B, C, *_ = _scan_inputs(1, 4, 2, 2, seed=0)
    with pytest.raises(RuntimeError, match="no C compiler"):
        selective_scan(u, delta, A, B, C, impl="fused")


@pytest.mark.parametrize("impl", IMPLS)
def test_scan_saves_only_its_inputs_for_backward(impl):
    """Memory-light: nothing of state size (batch x time x channels x d_state) is kept."""
    b, L, D, N = 4, 16, 16, 64
    ins = [t.detach().float().requires_grad_(True) for t in _scan_inputs(b, L, D, N, seed=6)]
    saved: dict[int, int] = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = selective_scan(*ins, delta_softplus=True, impl=impl)
    state_bytes = b * L * D * N * 4
    assert sum(saved.values()) < state_bytes / 4
    y.sum().backward()
    assert all(t.grad is not None for t in ins)


def test_cuda_scan_requested_without_kernels_fails_clearly():
    if cuda_scan_available():
        pytest.skip("mamba_ssm is installed")
    with pytest.raises(ConfigError, match="mamba_ssm"):
        build_model(ModelConfig(scan="cuda", **TINY), 16)
    u, delta, A, B, C, *_ = _scan_inputs(1, 4, 2, 2, seed=0)
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        selective_scan(u, delta, A, B, C, impl="cuda")


def test_mamba_layer_is_causal():
    torch.manual_seed(0)
    layer = Mamba(8, d_state=4, d_conv=4, expand=2, scan="torch")
    x = torch.randn(2, 20, 8)
    x2 = x.clone()
    x2[:, 12:] += torch.randn(2, 8, 8)
    y, y2 = layer(x), layer(x2)
    assert torch.equal(y[:, :12], y2[:, :12])
    assert not torch.allclose(y[:, 12:], y2[:, 12:])


def test_mamba_layer_default_init_matches_mamba_ssm():
    torch.manual_seed(0)
    layer = Mamba(32, d_state=16, d_conv=4, expand=2, scan="torch")
    assert layer.dt_rank == 2 and layer.d_inner == 64
    assert torch.allclose(layer.A_log.exp(), torch.arange(1, 17.0).expand(64, 16))
    assert torch.equal(layer.D, torch.ones(64))
    dt = torch.nn.functional.softplus(layer.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert layer.in_proj.bias is None and layer.out_proj.bias is None
    assert layer.conv1d.bias is not None and layer.conv1d.groups == 64


@pytest.mark.parametrize("backbone", ["mamba", "transformer", "gru"])
@pytest.mark.parametrize("k", [16, 30, 15])
def test_build_model_shapes_and_ranges(backbone, k):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, **TINY), k)
    x = torch.randn(3, 36, k)
    spot, logits = model(x)
    assert spot.shape == (3, k) and spot.dtype == torch.float32
    assert logits.shape == (3, k, 5)
    assert spot.min() >= 0 and spot.max() <= 1
    # The reference's (batch, 1, channels, k) input gives the same result.
    model.eval()
    assert torch.equal(model(x)[0], model(x[:, None])[0])


@pytest.mark.parametrize("backbone", ["mamba", "transformer", "gru"])
def test_every_parameter_learns(backbone):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, drop_path=0.0, **TINY), 16)
    model.train()
    spot, logits = model(torch.randn(4, 36, 16))
    (spot.square().mean() + logits.logsumexp(-1).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backbone", ["mamba", "gru"])
def test_same_seed_same_model_and_outputs(backbone):
    cfg = ModelConfig(backbone=backbone, **TINY)
    x = torch.randn(2, 36, 16, generator=torch.Generator().manual_seed(9))
    outs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        m = build_model(cfg, 16)
        torch.manual_seed(11)  # drop-path draws
        outs.append((m.state_dict(), m(x)))
    (sd_a, (s_a, l_a)), (sd_b, (s_b, l_b)), (sd_c, _) = outs
    assert all(torch.equal(sd_a[n], sd_b[n]) for n in sd_a)
    assert torch.equal(s_a, s_b) and torch.equal(l_a, l_b)
    assert not all(torch.equal(sd_a[n], sd_c[n]) for n in sd_a)


def test_drop_path_schedule_follows_reference():
    assert drop_path_rates(0.2, 4) == pytest.approx([0.0, 0.0, 0.2 / 3, 0.4 / 3])
    assert drop_path_rates(0.1, 1) == [0.0]
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**TINY, "blocks_per_stage": 4}), 16)
    for path in (model.slow_stages, model.fast_stages):
        for stage in path:
            assert [blk.drop_path.rate for blk in stage] == pytest.approx(drop_path_rates(0.2, 4))


def _mamba_params(d: int, n: int = 64, conv: int = 4, expand: int = 2) -> int:
    di, r = expand * d, math.ceil(d / 16)
    return d * 2 * di + di * conv + di + di * (r + 2 * n) + r * di + di + di * n + di + di * d


def test_paper_model_has_the_reference_structure():
    """Stem, slow stem, 3 stages x 4 blocks per path, 2 laterals, heads on 384 features."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(), 30)
    f, s = 128, 256
    conv_bn = lambda ci, co: ci * co * 3 + co + 2 * co  # noqa: E731
    block = lambda d: _mamba_params(d) + 4 * d  # noqa: E731  (two LayerNorms)
    expected = (
        conv_bn(36, f) + conv_bn(f, f) + conv_bn(f, s)
        + 12 * block(s) + 12 * block(f)
        + 2 * conv_bn(f, s)
        + (f + s + 1) + (f + s) * 5 + 5
    )
    assert sum(p.numel() for p in model.parameters()) == expected
    assert len(model.slow_stages) == 3 and all(len(st) == 4 for st in model.slow_stages)
    assert len(model.laterals) == 2
    assert model.spot_head.in_features == 384 and model.recog_head.out_features == 5


def test_reference_init():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY), 16)
    mambas = [m for m in model.modules() if isinstance(m, Mamba)]
    assert mambas
    for m in mambas:
        # the network-wide init zeroes dt_proj's bias as the reference does: dt = softplus(0)
        assert torch.equal(m.dt_proj.bias, torch.zeros_like(m.dt_proj.bias))
        assert m.dt_proj.weight.abs().max() <= 2.0 and m.dt_proj.weight.std() < 0.05
        bound = 1 / math.sqrt(m.d_inner) / math.sqrt(TINY["blocks_per_stage"])
        assert m.out_proj.weight.abs().max() <= bound
    assert torch.equal(model.spot_head.bias, torch.zeros(1))

    torch.manual_seed(0)
    own = build_model(ModelConfig(init="mamba", **TINY), 16)
    m = next(m for m in own.modules() if isinstance(m, Mamba))
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 0.1 + 1e-6


def test_transformer_heads_must_divide_channels():
    with pytest.raises(ConfigError, match="n_heads"):
        build_model(ModelConfig(backbone="transformer", **{**TINY, "n_heads": 3}), 16)


def test_demo_sized_mamba_model_trains_a_little():
    """A few Adam steps on a learnable toy target reduce the loss (the whole stack is wired)."""
    torch.manual_seed(0)
    model: SlowFastNet = build_model(ModelConfig(drop_path=0.0, **TINY), 16)
    x = torch.randn(16, 36, 16)
    target = torch.sigmoid(x[:, 0])  # per-frame target from the first channel
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        spot, _ = model(x)
        loss = torch.nn.functional.mse_loss(spot, target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _train_step(model, x, target, micro_batch, seed=5):
    """One forward + backward in training mode; the loss, every gradient and BN buffer."""
    model.micro_batch = micro_batch
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # drop-path draws
    spot, logits = model(x)
    loss = torch.nn.functional.mse_loss(spot, target) + logits.logsumexp(-1).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return loss.detach(), grads, buffers


@pytest.mark.parametrize("scan", IMPLS)
@pytest.mark.parametrize("micro_batch", [1, 3, 7])
def test_micro_batches_give_the_unchunked_loss_and_gradients(scan, micro_batch):
    """Blocks run a few windows at a time with recomputation; BatchNorm, heads and loss still see
    the whole batch and drop-path draws are made in the unchunked order, so (in float64) the
    loss, every gradient and the BatchNorm statistics equal the unchunked step's."""
    import copy

    torch.manual_seed(0)
    cfg = ModelConfig(scan=scan, drop_path=0.6, **{**TINY, "blocks_per_stage": 3})  # 0, 0, 0.3
    model = build_model(cfg, 16).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 36, 16, generator=g, dtype=torch.float64)
    target = torch.rand(8, 16, generator=g, dtype=torch.float64)
    l0, g0, b0 = _train_step(copy.deepcopy(model), x, target, None)
    l1, g1, b1 = _train_step(copy.deepcopy(model), x, target, micro_batch)
    assert abs(l0.item() - l1.item()) < 1e-12
    for n in g0:
        scale = max(1.0, g0[n].abs().max().item())
        assert (g0[n] - g1[n]).abs().max().item() < 1e-12 * scale, n
    for n in b0:
        assert torch.allclose(b0[n].double(), b1[n].double(), rtol=0, atol=1e-12), n
    # Not vacuous: another drop-path draw gives other gradients.
    _, g2, _ = _train_step(copy.deepcopy(model), x, target, micro_batch, seed=6)
    assert any((g0[n] - g2[n]).abs().max() > 1e-6 for n in g0)


def test_micro_batches_keep_only_stage_inputs_for_backward():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**TINY, "blocks_per_stage": 4}), 16)
    x = torch.randn(16, 36, 16)
    kept = []
    for mb in (None, 4):
        model.micro_batch = mb
        saved: dict[int, int] = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            spot, logits = model(x)
        (spot.sum() + logits.sum()).backward()  # the recomputation runs, the gradients arrive
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad(set_to_none=True)
        kept.append(sum(saved.values()))
    assert kept[1] < kept[0] / 3


def test_micro_batches_are_off_in_eval_and_without_grad():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY), 16)
    x = torch.randn(5, 36, 16)
    model.eval()
    ref = model(x)
    model.micro_batch = 2
    out = model(x)
    assert torch.equal(ref[0], out[0]) and torch.equal(ref[1], out[1])
