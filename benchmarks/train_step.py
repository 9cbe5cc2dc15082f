"""Milliseconds per training step of the slow-fast network, per backbone.

A step is forward + loss (0.9 MSE on the spot score + 0.1 cross-entropy on the class logits)
+ backward + Adam update, on random inputs. Settings:

* ``paper``: the paper's SAMM-LV model (ModelConfig defaults), batch 32, k 30;
* ``demo``: the ``model`` section of ``configs/demo.yaml``, batch 16, k 30.

Variants: the three backbones (``mamba`` with vrme's selective scan, ``transformer``, ``gru``);
``mambapy``: the same network with every Mamba layer replaced by ``mambapy``'s ``MambaBlock``
(its parallel scan), when that package imports; ``floor``: the same Mamba blocks with the
recurrence removed (``h_{t-1}`` dropped, so the "scan" is elementwise), the cost of everything
around the scan.

Per-block figures (paper shapes, batch 32): forward + backward of one residual block on the
slow path (15 steps x 256 channels) and on the fast path (30 steps x 128 channels), and the
activation memory that block keeps for backward.

Run: ``.venv/bin/python benchmarks/train_step.py [--steps 10] [--threads 2] [--json out.json]``.
Timings are the median (and minimum) over ``--steps`` timed steps after ``--warmup`` steps, all
variants interleaved step by step so that background load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrme.config import ModelConfig  # noqa: E402
from vrme.model import Block, Mamba, build_model  # noqa: E402


class MemorylessMamba(Mamba):
    """The Mamba layer with the recurrence removed: ``y_t = (delta_t u_t (B_t . C_t) + D u_t)
    * silu(z_t)``. Every projection still feeds the output; only the scan over time is gone."""

    def ssm(self, xs: Tensor, dt: Tensor, Bm: Tensor, Cm: Tensor, z: Tensor) -> Tensor:
        delta = F.softplus(dt + self.dt_proj.bias)
        bc = (Bm * Cm).sum(-1, keepdim=True)
        return (xs * delta * bc + xs * self.D) * F.silu(z)


def _mambapy_block(dim: int, cfg: ModelConfig) -> nn.Module:
    from mambapy.mamba import MambaBlock, MambaConfig

    return MambaBlock(
        MambaConfig(
            d_model=dim, n_layers=1, d_state=cfg.d_state, expand_factor=cfg.expand,
            d_conv=cfg.d_conv, pscan=True,
        )
    )


def _memoryless_block(dim: int, cfg: ModelConfig) -> nn.Module:
    return MemorylessMamba(dim, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                           dt_rank=cfg.dt_rank, scan="torch")


def _swap_mixers(model: nn.Module, make: Callable[[int, ModelConfig], nn.Module], cfg: ModelConfig) -> nn.Module:
    for m in model.modules():
        if isinstance(m, Block) and isinstance(m.mixer, Mamba):
            m.mixer = make(m.mixer.d_model, cfg)
    return model


def mambapy_available() -> bool:
    try:
        import mambapy.mamba  # noqa: F401
    except ImportError:
        return False
    return True


def make_variant(name: str, cfg: ModelConfig, k: int) -> nn.Module:
    """The network for one benchmark variant."""
    if name in ("mamba", "transformer", "gru"):
        return build_model(cfg.model_copy(update={"backbone": name, "scan": "torch"}), k)
    base = build_model(cfg.model_copy(update={"backbone": "mamba", "scan": "torch"}), k)
    if name == "mambapy":
        return _swap_mixers(base, _mambapy_block, cfg)
    if name == "floor":
        return _swap_mixers(base, _memoryless_block, cfg)
    raise ValueError(name)


def train_step_fn(model: nn.Module, batch: int, k: int, in_ch: int, n_classes: int) -> Callable[[], None]:
    """A closure running one full training step on fixed random data."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_ch, k, generator=g)
    target = torch.rand(batch, k, generator=g)
    labels = torch.randint(0, n_classes, (batch, k), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        spot, logits = model(x)
        loss = 0.9 * F.mse_loss(spot, target) + 0.1 * F.cross_entropy(
            logits.reshape(-1, n_classes), labels.reshape(-1)
        )
        loss.backward()
        opt.step()

    return step


def time_interleaved(fns: dict[str, Callable[[], None]], warmup: int, steps: int) -> dict[str, list[float]]:
    """Run every closure ``warmup`` then ``steps`` times, round-robin; ms of the timed runs."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for name, f in fns.items():
            t0 = time.perf_counter()
            f()
            out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def saved_bytes(module: nn.Module, x: Tensor) -> int:
    """Bytes of distinct tensor storages autograd keeps for backward in ``module(x)``,
    parameters and the input excluded."""
    skip = {p.untyped_storage().data_ptr() for p in module.parameters()}
    skip.add(x.untyped_storage().data_ptr())
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    del out
    return sum(seen.values())


def block_figures(cfg: ModelConfig, batch: int, k: int, variants: list[str], warmup: int, steps: int) -> list[dict]:
    """Per-block forward+backward time and saved activation memory at the slow and fast shapes."""
    rows = []
    makers = {
        "mamba": lambda d: Mamba(d, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                                 dt_rank=cfg.dt_rank, scan="torch"),
        "mambapy": lambda d: _mambapy_block(d, cfg),
        "floor": lambda d: _memoryless_block(d, cfg),
    }
    for path, length, dim in (("slow", (k + 1) // 2, cfg.slow_channels), ("fast", k, cfg.fast_channels)):
        x = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(1))
        blocks = {v: Block(dim, makers[v](dim), 0.0) for v in variants if v in makers}
        fns = {}
        for v, blk in blocks.items():
            def f(blk: nn.Module = blk) -> None:
                blk.zero_grad(set_to_none=True)
                blk(x).square().mean().backward()
            fns[v] = f
        times = time_interleaved(fns, warmup, steps)
        for v, blk in blocks.items():
            for p in blk.parameters():
                p.grad = None
            mem = saved_bytes(blk, x)
            rows.append({
                "path": path, "shape": f"{batch}x{length}x{dim}", "variant": v,
                "ms_median": statistics.median(times[v]), "ms_min": min(times[v]),
                "saved_mib": mem / 2**20,
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--settings", default="paper,demo")
    ap.add_argument("--variants", default="mamba,transformer,gru,mambapy,floor")
    ap.add_argument("--no-blocks", action="store_true", help="skip the per-block figures")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    if "mambapy" in variants and not mambapy_available():
        print("mambapy is not installed: skipping that variant", file=sys.stderr)
        variants.remove("mambapy")

    demo_raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    settings = {
        "paper": (ModelConfig(), 32, 30),
        "demo": (ModelConfig(**demo_raw.get("model", {})), 16, 30),
    }
    env = {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_avg_1min_start": os.getloadavg()[0],
    }
    print(f"# train step benchmark  torch {env['torch']}  threads {env['threads']}  "
          f"{env['cpu_capability']}  cpus {env['cpus']}  steps {args.steps} (+{args.warmup} warm-up)")
    results: dict = {"env": env, "steps": {}, "blocks": {}}
    for sname in args.settings.split(","):
        cfg, batch, k = settings[sname]
        torch.manual_seed(0)
        fns = {}
        n_params = {}
        for v in variants:
            model = make_variant(v, cfg, k)
            n_params[v] = sum(p.numel() for p in model.parameters())
            fns[v] = train_step_fn(model, batch, k, cfg.in_channels, cfg.n_classes)
        times = time_interleaved(fns, args.warmup, args.steps)
        print(f"\n## {sname}: batch {batch}, k {k}, channels {cfg.fast_channels}/{cfg.slow_channels}, "
              f"{cfg.stages}x{cfg.blocks_per_stage} blocks per path, d_state {cfg.d_state}")
        print(f"| variant | params | ms/step median | ms/step min |\n|---|---:|---:|---:|")
        results["steps"][sname] = {}
        for v in variants:
            med, lo = statistics.median(times[v]), min(times[v])
            results["steps"][sname][v] = {"ms_median": med, "ms_min": lo, "params": n_params[v]}
            print(f"| {v} | {n_params[v]:,} | {med:.1f} | {lo:.1f} |")
        if not args.no_blocks:
            rows = block_figures(cfg, batch, k, variants, args.warmup, args.steps)
            results["blocks"][sname] = rows
            print("\nOne Mamba block, forward + backward:\n")
            print("| path | B x T x C | variant | ms median | ms min | saved for backward (MiB) |")
            print("|---|---|---|---:|---:|---:|")
            for r in rows:
                print(f"| {r['path']} | {r['shape']} | {r['variant']} | {r['ms_median']:.1f} | "
                      f"{r['ms_min']:.1f} | {r['saved_mib']:.1f} |")
    results["env"]["load_avg_1min_end"] = os.getloadavg()[0]
    print(f"\nload average (1 min) at start {env['load_avg_1min_start']:.2f}, "
          f"at end {results['env']['load_avg_1min_end']:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
