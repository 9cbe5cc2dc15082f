"""The CUDA path: vrme's torch selective scan against ``mamba_ssm``'s kernel on a GPU.

Marked ``cuda``; skipped (with the reason) where no CUDA device or no ``mamba_ssm`` is present,
as on the CI machine. ``pytest -m cuda`` runs only these on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from vrme.model.scan import cuda_scan_available, selective_scan

pytestmark = pytest.mark.cuda

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
needs_mamba_ssm = pytest.mark.skipif(not cuda_scan_available(),
                                     reason="mamba_ssm is not installed")


def _inputs(device: str, seed: int = 0, b: int = 3, t: int = 50, d: int = 16, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, t, d, generator=g)
    delta = torch.randn(b, t, d, generator=g) * 0.5
    A = -torch.rand(d, n, generator=g) - 0.1
    B = torch.randn(b, t, n, generator=g)
    C = torch.randn(b, t, n, generator=g)
    D = torch.randn(d, generator=g)
    z = torch.randn(b, t, d, generator=g)
    bias = torch.randn(d, generator=g) * 0.1
    return [x.to(device).requires_grad_(True) for x in (u, delta, A, B, C, D, z, bias)]


def _run(impl: str, args):
    u, delta, A, B, C, D, z, bias = args
    y = selective_scan(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True, impl=impl)
    grads = torch.autograd.grad((y * torch.cos(y)).sum(), args)
    return y.detach(), [g.detach() for g in grads]


@needs_cuda
@needs_mamba_ssm
def test_torch_scan_matches_mamba_ssm_on_the_gpu():
    args = _inputs("cuda")
    y_ref, g_ref = _run("cuda", args)
    y, g = _run("torch", args)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


@needs_cuda
def test_torch_scan_on_the_gpu_matches_the_cpu():
    cpu = _inputs("cpu")
    gpu = [x.detach().cuda().requires_grad_(True) for x in cpu]
    y_cpu, g_cpu = _run("torch", cpu)
    y_gpu, g_gpu = _run("torch", gpu)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    for got, want in zip(g_gpu, g_cpu):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)
