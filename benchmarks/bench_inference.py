"""CPU inference throughput of the three networks (issue: package and network; deployment issue extends it).

Prints one JSON object per (model, batch size): images/s of ``model.embed`` in eval mode, fp32, eager, with
``--threads`` torch threads (default 2). BatchNorm statistics are first calibrated on random images (train-mode
forwards without gradients): a freshly initialised network runs far slower (denormal activations) and is not
what anyone deploys.

    python benchmarks/bench_inference.py [--models hacnn robustreid_1x robustreid_2x] [--batch-sizes 1 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from robustreid.model import build_model, list_models
from robustreid.profile import count_macs
from robustreid.swag import update_bn


def calibrate_bn(model: torch.nn.Module, batches: int = 4, batch_size: int = 32) -> None:
    """BatchNorm running statistics from random images (``swag.update_bn``), then eval mode."""
    h, w = model.data_config["input_size"]
    update_bn(model, [torch.randn(batch_size, 3, h, w) for _ in range(batches)])
    model.eval()


@torch.no_grad()
def images_per_second(model: torch.nn.Module, batch_size: int, min_seconds: float = 3.0) -> float:
    h, w = model.data_config["input_size"]
    x = torch.randn(batch_size, 3, h, w)
    for _ in range(2):  # warm-up
        model.embed(x)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        model.embed(x)
        n += 1
    return n * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models:
        model = build_model(name)
        calibrate_bn(model)
        gmacs = count_macs(model) / 1e9
        for bs in args.batch_sizes:
            ips = images_per_second(model, bs, args.seconds)
            print(json.dumps({
                "bench": "inference", "model": name, "batch_size": bs, "images_per_s": round(ips, 1),
                "ms_per_image": round(1000 / ips, 2), "gflops_per_s": round(2 * gmacs * ips, 1),
                "dtype": "float32", "backend": "torch-eager", "threads": args.threads,
                "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            }), flush=True)


if __name__ == "__main__":
    main()
