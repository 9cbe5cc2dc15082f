"""Milliseconds and memory per training step of the slow-fast network at the paper's settings.

A step is forward + loss (0.9 MSE on the spot score + 0.1 cross-entropy on the class logits)
+ backward + Adam update, on random inputs. Settings (model, batch size and k from the
configs):

* ``samm``: ``configs/samm_lv.yaml``, the paper's SAMM-LV setting: batch 32, k 30;
* ``casme3``: ``configs/casme3.yaml``, the paper's CAS(ME)^3 setting: batch 256, k 50;
* ``demo``: ``configs/demo.yaml`` (a tiny model), batch 16, k 30.

Variants:

* ``mamba``: the Mamba backbone with ``model.scan: auto`` (on a CPU the fused C scan when it
  builds, else the pure-PyTorch one; the table says which ran);
* ``mamba-torch``: the same with the pure-PyTorch scan (``model.scan: torch``);
* ``mamba-mbN``: ``mamba`` with ``train.micro_batch: N`` (blocks run N windows at a time and
  are recomputed in backward; gradients unchanged);
* ``floor``: the same Mamba blocks with the recurrence removed (``h_{t-1}`` dropped, so the
  "scan" is elementwise): the cost of everything around the scan;
* ``mambapy``: every Mamba layer replaced by ``mambapy``'s ``MambaBlock`` (its parallel scan),
  when that package is installed (``pip install -e '.[bench]'``);
* ``transformer``, ``gru``: the other backbones.

Every variant of a setting is timed in the same run, round-robin step by step (the order
rotating each round) so that background load hits them alike; ``x floor`` and ``x mambapy``
are medians of the per-round ratios. Peak memory is the peak resident set size of a fresh
process that builds the variant and runs two steps (``peak RSS``), and how far the steps
raised it above the process with its model, data and optimizer built (``step``).

Per-block figures (``--blocks``): forward + backward of one residual block on the slow and fast
paths, and the activation memory that block keeps for backward.

Run: ``.venv/bin/python benchmarks/train_step.py --threads 1 [--settings samm,casme3]
[--steps 10] [--casme3-steps 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrme.config import ModelConfig, load_config  # noqa: E402
from vrme.model import Block, Mamba, build_model, fused_scan_available, set_micro_batch  # noqa: E402

CONFIGS = {"samm": "samm_lv.yaml", "casme3": "casme3.yaml", "demo": "demo.yaml"}
DEFAULT_VARIANTS = {
    "samm": "mamba,mamba-torch,floor,mambapy,transformer,gru",
    "casme3": "mamba,mamba-mb32,mamba-torch,floor,mambapy",
    "demo": "mamba,mamba-torch,floor",
}
# mambapy keeps several state-sized (batch, time, channels, d_state) tensors per block for
# backward: 255 MiB per block at the SAMM setting (the per-block table), so 13.3 times that
# at CAS(ME)^3's, about 80 GB for the 24 blocks.
TOO_BIG = {("casme3", "mambapy"): "its activations would need about 80 GB (255 MiB per block at "
                                  "the samm setting x 13.3 x 24 blocks)"}


@dataclass
class Setting:
    name: str
    model: ModelConfig
    batch: int
    k: int

    def describe(self) -> str:
        m = self.model
        return (f"batch {self.batch}, k {self.k}, channels {m.fast_channels}/{m.slow_channels}, "
                f"{m.stages}x{m.blocks_per_stage} blocks per path, d_state {m.d_state}")


def load_setting(name: str) -> Setting:
    cfg = load_config(ROOT / "configs" / CONFIGS[name])
    return Setting(name, cfg.model, cfg.train.batch_size, cfg.features.k)


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


def _swap_mixers(model: nn.Module, make: Callable[[int, ModelConfig], nn.Module],
                 cfg: ModelConfig) -> nn.Module:
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


def scan_label() -> str:
    return "fused C scan" if fused_scan_available() else "PyTorch scan (no C compiler)"


def make_variant(name: str, cfg: ModelConfig, k: int) -> nn.Module:
    """The network for one benchmark variant (weights drawn from torch's global generator)."""
    if name in ("mamba", "transformer", "gru"):
        return build_model(cfg.model_copy(update={"backbone": name, "scan": "auto"}), k)
    if name == "mamba-torch":
        return build_model(cfg.model_copy(update={"backbone": "mamba", "scan": "torch"}), k)
    if name.startswith("mamba-mb"):
        model = build_model(cfg.model_copy(update={"backbone": "mamba", "scan": "auto"}), k)
        set_micro_batch(model, int(name[len("mamba-mb"):]))
        return model
    base = build_model(cfg.model_copy(update={"backbone": "mamba", "scan": "torch"}), k)
    if name == "mambapy":
        return _swap_mixers(base, _mambapy_block, cfg)
    if name == "floor":
        return _swap_mixers(base, _memoryless_block, cfg)
    raise ValueError(f"unknown variant {name!r}")


def train_step_fn(model: nn.Module, batch: int, k: int, in_ch: int, n_classes: int,
                  device: str = "cpu") -> Callable[[], None]:
    """A closure running one full training step on fixed random data (on ``device``, where
    the model must be; a CUDA step waits for the GPU to finish)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_ch, k, generator=g).to(device)
    target = torch.rand(batch, k, generator=g).to(device)
    labels = torch.randint(0, n_classes, (batch, k), generator=g).to(device)
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
        if device != "cpu":
            torch.cuda.synchronize()

    return step


def time_interleaved(fns: dict[str, Callable[[], None]], warmup: int,
                     steps: int) -> dict[str, list[float]]:
    """Run every closure ``warmup`` then ``steps`` times, round-robin with the order rotating
    each round; ms of the timed runs, in round order."""
    names = list(fns)
    for _ in range(warmup):
        for f in fns.values():
            f()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(steps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def ratio(times: dict[str, list[float]], a: str, b: str) -> float | None:
    """Median over rounds of ``a``'s time over ``b``'s in the same round."""
    if a not in times or b not in times:
        return None
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def time_setting(setting: Setting, variants: list[str], warmup: int, steps: int,
                 device: str = "cpu") -> dict[str, dict[str, float]]:
    """Per variant: ms/step median and min, x floor, x mambapy, parameter count."""
    fns, n_params = {}, {}
    for v in variants:
        torch.manual_seed(0)
        model = make_variant(v, setting.model, setting.k).to(device)
        n_params[v] = sum(p.numel() for p in model.parameters())
        fns[v] = train_step_fn(model, setting.batch, setting.k, setting.model.in_channels,
                               setting.model.n_classes, device)
    times = time_interleaved(fns, warmup, steps)
    return {v: {"ms_median": statistics.median(times[v]), "ms_min": min(times[v]),
                "x_floor": ratio(times, v, "floor"), "x_mambapy": ratio(times, v, "mambapy"),
                "params": n_params[v], "ms_all": times[v]} for v in variants}


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MiB: Linux's VmHWM (``ru_maxrss`` would
    include the parent's size at the fork that started this process), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_memory(setting: str, variant: str, threads: int | None) -> dict[str, float] | str:
    """Peak RSS of a fresh process running two steps of ``variant`` (or why it failed)."""
    cmd = [sys.executable, __file__, "--peak-child", setting, variant]
    if threads:
        cmd += ["--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return f"failed: {res.stderr.strip().splitlines()[-1:] or res.returncode}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def _peak_child(setting_name: str, variant: str) -> None:
    setting = load_setting(setting_name)
    torch.manual_seed(0)
    model = make_variant(variant, setting.model, setting.k)
    step = train_step_fn(model, setting.batch, setting.k, setting.model.in_channels,
                         setting.model.n_classes)
    base = _current_rss_mb()
    for _ in range(2):
        step()
    print(json.dumps({"peak_rss_mib": _rss_mb(), "before_steps_mib": base,
                      "step_mib": _rss_mb() - base}))


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


def block_figures(setting: Setting, variants: list[str], warmup: int, steps: int) -> list[dict]:
    """Per-block forward+backward time and saved activation memory at the slow and fast shapes."""
    cfg, batch, k = setting.model, setting.batch, setting.k
    rows = []
    makers = {
        "mamba": lambda d: Mamba(d, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                                 dt_rank=cfg.dt_rank, scan="auto"),
        "mamba-torch": lambda d: Mamba(d, d_state=cfg.d_state, d_conv=cfg.d_conv,
                                       expand=cfg.expand, dt_rank=cfg.dt_rank, scan="torch"),
        "mambapy": lambda d: _mambapy_block(d, cfg),
        "floor": lambda d: _memoryless_block(d, cfg),
    }
    for path, length, dim in (("slow", (k + 1) // 2, cfg.slow_channels),
                              ("fast", k, cfg.fast_channels)):
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
            rows.append({
                "path": path, "shape": f"{batch}x{length}x{dim}", "variant": v,
                "ms_median": statistics.median(times[v]), "ms_min": min(times[v]),
                "x_floor": ratio(times, v, "floor"), "saved_mib": saved_bytes(blk, x) / 2**20,
            })
    return rows


def _fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def env_info() -> dict:
    return {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "scan": scan_label(),
        "load_avg_1min_start": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default="samm,casme3", help="of: " + ", ".join(CONFIGS))
    ap.add_argument("--variants", default=None,
                    help="comma-separated; default per setting: " + "; ".join(
                        f"{k}: {v}" for k, v in DEFAULT_VARIANTS.items()))
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    ap.add_argument("--casme3-steps", type=int, default=3, help="timed steps at casme3")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--blocks", default="samm", help="settings with per-block figures ('' = none)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--peak-child", nargs=2, metavar=("SETTING", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_child:
        _peak_child(*args.peak_child)
        return 0
    env = env_info()
    print(f"# train step benchmark  torch {env['torch']}  threads {env['threads']}  "
          f"{env['cpu_capability']}  cpus {env['cpus']}  mamba = {env['scan']}")
    results: dict = {"env": env, "steps": {}, "memory": {}, "blocks": {}}
    have_mambapy = mambapy_available()
    for sname in [s for s in args.settings.split(",") if s]:
        setting = load_setting(sname)
        variants = [v for v in (args.variants or DEFAULT_VARIANTS[sname]).split(",") if v]
        skipped = {}
        if not have_mambapy and "mambapy" in variants:
            skipped["mambapy"] = "not installed (pip install -e '.[bench]')"
        for v in variants:
            if (sname, v) in TOO_BIG:
                skipped[v] = TOO_BIG[(sname, v)]
        variants = [v for v in variants if v not in skipped]
        steps = args.casme3_steps if sname == "casme3" else args.steps
        res = time_setting(setting, variants, args.warmup, steps)
        results["steps"][sname] = res
        mem: dict = {}
        if not args.no_memory:
            mem = {v: peak_memory(sname, v, args.threads) for v in variants}
            results["memory"][sname] = mem
        print(f"\n## {sname} ({CONFIGS[sname]}): {setting.describe()}; {steps} timed steps "
              f"(+{args.warmup} warm-up) per variant")
        print("| variant | params | ms/step median | ms/step min | x floor | x mambapy | "
              "peak RSS (MiB) | step (MiB) |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for v in variants:
            r, m = res[v], mem.get(v)
            peak = step_mib = "-"
            if isinstance(m, dict):
                peak, step_mib = f"{m['peak_rss_mib']:.0f}", f"{m['step_mib']:.0f}"
            elif isinstance(m, str):
                peak = m
            print(f"| {v} | {r['params']:,} | {r['ms_median']:.1f} | {r['ms_min']:.1f} | "
                  f"{_fmt(r['x_floor'])} | {_fmt(r['x_mambapy'], '.3f')} | {peak} | {step_mib} |")
        for v, why in skipped.items():
            print(f"| {v} | - | not run: {why} | | | | | |")
        if sname in args.blocks.split(","):
            rows = block_figures(setting, [v for v in variants if v in
                                           ("mamba", "mamba-torch", "mambapy", "floor")],
                                 args.warmup, steps)
            results["blocks"][sname] = rows
            print("\nOne Mamba block, forward + backward:\n")
            print("| path | B x T x C | variant | ms median | ms min | x floor "
                  "| saved for backward (MiB) |")
            print("|---|---|---|---:|---:|---:|---:|")
            for r in rows:
                print(f"| {r['path']} | {r['shape']} | {r['variant']} | {r['ms_median']:.1f} | "
                      f"{r['ms_min']:.1f} | {_fmt(r['x_floor'])} | {r['saved_mib']:.1f} |")
    steps_res = results["steps"]
    if "samm" in steps_res and "casme3" in steps_res:
        samm, cas = load_setting("samm"), load_setting("casme3")
        work = (cas.batch * cas.k) / (samm.batch * samm.k)
        print(f"\ncasme3 step / samm step (medians; {work:.1f}x the window-frames per step):")
        for v in steps_res["casme3"]:
            if v in steps_res["samm"]:
                ratio = steps_res['casme3'][v]['ms_median'] / steps_res['samm'][v]['ms_median']
                print(f"- {v}: {ratio:.1f}x")
    results["env"]["load_avg_1min_end"] = os.getloadavg()[0]
    print(f"\nload average (1 min) at start {env['load_avg_1min_start']:.2f}, "
          f"at end {results['env']['load_avg_1min_end']:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
