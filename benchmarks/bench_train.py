"""Training throughput (images/s) of the three networks on CPU: forward + losses + backward + SGD step.

One JSON line per (model, precision). Random images, PK-style labels (8 identities x 4), the Robust-ReID
objective (label-smoothed ID loss + batch-soft triplet with soft margin on both branches).

    python benchmarks/bench_train.py [--models ...] [--batch-size 32] [--threads 2] [--amp both|off|on]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from robustreid.config import LossConfig
from robustreid.model import build_model, list_models
from robustreid.profile import count_macs
from robustreid.losses import ReIDCriterion


def train_images_per_second(name: str, batch_size: int, amp: bool, seconds: float, channels_last: bool) -> float:
    torch.manual_seed(0)
    model = build_model(name, 100)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = ReIDCriterion(LossConfig(), 100)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    h, w = model.data_config["input_size"]
    x = torch.randn(batch_size, 3, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pids = torch.arange(batch_size) // 4

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss, _ = criterion(out, pids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--amp", choices=["both", "off", "on"], default="both")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        gmacs = count_macs(build_model(name)) / 1e9
        for amp in {"both": (False, True), "off": (False,), "on": (True,)}[args.amp]:
            ips = train_images_per_second(name, args.batch_size, amp, args.seconds, args.channels_last)
            print(json.dumps({
                "bench": "train", "model": name, "batch_size": args.batch_size,
                "precision": "bf16-autocast" if amp else "fp32", "channels_last": args.channels_last,
                "images_per_s": round(ips, 1),
                # forward + backward ~ 3x the forward MACs
                "train_gmacs_per_s": round(3 * gmacs * ips, 1), "threads": args.threads,
            }), flush=True)


if __name__ == "__main__":
    main()
