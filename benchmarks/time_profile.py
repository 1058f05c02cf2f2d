"""Where the inference time goes: ``torch.profiler`` over ``ReIDNet.embed``, self CPU time grouped by operator.

The network is BN-calibrated (train-mode forwards on random images, as the other benchmarks do) or loaded from
``--checkpoint``; after ``--warmup`` untimed calls, ``--calls`` calls of ``embed`` on a random batch are profiled.
Prints one JSON line per operator group (share of the profiled self CPU time, ms per call) and a last line with
the convolutions' achieved GFLOP/s: 2 x MACs of the convolution layers (forward hooks) / time inside the
convolution kernels. That separates the two ways to be slow: slow convolutions, or time outside them.

    python benchmarks/time_profile.py [--model robustreid_1x] [--batch-size 64] [--threads 2] [--channels-last]
        [--optimized] [--checkpoint CKPT]

``--optimized`` profiles what ``FeatureExtractor`` runs on a CPU: ``inference.optimize_for_inference`` (BatchNorm
folded, channels_last) on micro-batches of ``inference.CPU_MICRO_BATCH`` images.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from robustreid.checkpoint import load_model
from robustreid.inference import CPU_MICRO_BATCH, embed_micro_batched, optimize_for_inference
from robustreid.model import build_model, list_models
from robustreid.swag import update_bn

# aten operator name -> group; the first matching substring wins, the rest is "other"
GROUPS = (
    ("convolution", "conv"), ("conv2d", "conv"), ("grid_sampler", "grid_sample (hard-attention crops)"),
    ("batch_norm", "batch_norm"), ("relu", "relu / clamp"), ("clamp", "relu / clamp"),
    ("pow", "GeM pow"), ("sigmoid", "sigmoid / tanh"), ("tanh", "sigmoid / tanh"), ("mean", "mean / pooling"),
    ("pool", "mean / pooling"), ("upsample", "upsample (attention)"), ("addmm", "linear"), ("linear", "linear"),
    ("mm", "linear"), ("mul", "elementwise mul / add"), ("add", "elementwise mul / add"),
    ("copy", "copies (shuffle, cat, contiguous)"), ("cat", "copies (shuffle, cat, contiguous)"),
    ("clone", "copies (shuffle, cat, contiguous)"), ("contiguous", "copies (shuffle, cat, contiguous)"),
)


def group_of(name: str) -> str:
    low = name.lower()
    return next((group for key, group in GROUPS if key in low), "other")


def conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every Conv2d in one ``embed`` call (from the output shapes)."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.embed(x)
    for h in handles:
        h.remove()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="robustreid_1x", choices=list_models())
    parser.add_argument("--checkpoint", help="a trained checkpoint instead of a BN-calibrated untrained network")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--optimized", action="store_true",
                        help="BatchNorm folded, channels_last, micro-batches (as FeatureExtractor runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.checkpoint:
        model = load_model(args.checkpoint)
    else:
        model = build_model(args.model, 0)
        h, w = model.data_config["input_size"]
        update_bn(model, [torch.randn(32, 3, h, w) for _ in range(4)])
    model.eval()
    h, w = model.data_config["input_size"]
    x = torch.randn(args.batch_size, 3, h, w)
    if args.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    macs = conv_macs(model, x)
    embed = model.embed
    if args.optimized:
        fast = optimize_for_inference(model)
        embed = lambda images: embed_micro_batched(fast.embed, images, CPU_MICRO_BATCH, channels_last=True)  # noqa: E731
    with torch.no_grad():
        for _ in range(args.warmup):
            embed(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.calls):
                embed(x)
    self_us: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        self_us[group_of(event.key)] += event.self_cpu_time_total
    total = sum(self_us.values())
    common = {"bench": "time_profile", "model": args.checkpoint or args.model, "batch_size": args.batch_size,
              "threads": args.threads, "channels_last": args.channels_last or args.optimized,
              "optimized": args.optimized}
    for group, us in sorted(self_us.items(), key=lambda kv: -kv[1]):
        print(json.dumps({**common, "group": group, "share": round(us / total, 4),
                          "ms_per_call": round(us / 1e3 / args.calls, 2)}))
    conv_s = self_us["conv"] / 1e6 / args.calls
    print(json.dumps({**common, "group": "summary", "ms_per_call": round(total / 1e3 / args.calls, 1),
                      "images_per_s_profiled": round(args.batch_size * args.calls * 1e6 / total, 1),
                      "conv_gmacs_per_call": round(macs / 1e9, 3),
                      "conv_gflops_per_s": round(2 * macs / conv_s / 1e9, 1) if conv_s else None}))


if __name__ == "__main__":
    main()
