"""Training throughput (images/s) of the three networks on CPU: forward + losses + backward + SGD step.

One JSON line per (model, precision, channels_last, compile). Random images, PK-style labels (8 identities
x 4), the Robust-ReID objective (label-smoothed ID loss + batch-soft triplet with soft margin on both branches).

A/B switches, each ``off``, ``on`` or ``both`` (a record per setting, in one process):

* ``--channels-last``: model and images in NHWC storage;
* ``--compile``: ``torch.compile`` (inductor) of the training step's forward and losses (the backward runs
  the graph AOTAutograd compiled with it; the SGD step stays eager). ``compile_seconds`` is the wall time of
  the first step, which compiles, less one eager-speed step, and is reported apart from ``images_per_s``
  (measured after compiling); ``payback_images`` is how many images a run must train before the compile time
  is paid back by the faster steps (null when compiling is not faster).

    python benchmarks/bench_train.py [--models ...] [--batch-size 32] [--threads 2] [--amp both|off|on]
        [--channels-last off|on|both] [--compile off|on|both]
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

SWITCH = {"both": (False, True), "off": (False,), "on": (True,)}


def train_images_per_second(name: str, batch_size: int, amp: bool, seconds: float, channels_last: bool,
                            use_compile: bool = False) -> tuple[float, float]:
    """``(images/s after warm-up, seconds of the first step)``; the first step compiles with ``use_compile``."""
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

    def forward_loss(images, labels):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(images)
        loss, _ = criterion(out, labels)
        return loss

    forward = torch.compile(forward_loss) if use_compile else forward_loss

    def step():
        loss = forward(x, pids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    first_step = time.perf_counter() - start
    step()
    n, start = 0, time.perf_counter()
    while n < 1 or time.perf_counter() - start < seconds:
        step()
        n += 1
    return n * batch_size / (time.perf_counter() - start), first_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--amp", choices=["both", "off", "on"], default="both")
    parser.add_argument("--channels-last", nargs="?", const="on", default="off", choices=SWITCH,
                        help="NHWC model and images: off (default), on, or both for the A/B")
    parser.add_argument("--compile", nargs="?", const="on", default="off", choices=SWITCH,
                        help="torch.compile the forward + losses: off (default), on, or both for the A/B")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        gmacs = count_macs(build_model(name)) / 1e9
        for amp in SWITCH[args.amp]:
            eager = {}  # channels_last -> eager images/s, for the compile payback
            for channels_last in SWITCH[args.channels_last]:
                for compiled in SWITCH[args.compile]:
                    ips, first = train_images_per_second(name, args.batch_size, amp, args.seconds, channels_last,
                                                         compiled)
                    record = {
                        "bench": "train", "model": name, "batch_size": args.batch_size,
                        "precision": "bf16-autocast" if amp else "fp32", "channels_last": channels_last,
                        "compile": compiled, "images_per_s": round(ips, 1),
                        # forward + backward ~ 3x the forward MACs
                        "train_gmacs_per_s": round(3 * gmacs * ips, 1), "threads": args.threads,
                        "first_step_seconds": round(first, 2),
                    }
                    if compiled:
                        compile_s = max(first - args.batch_size / ips, 0.0)
                        record["compile_seconds"] = round(compile_s, 1)
                        base = eager.get(channels_last)
                        if base is not None:  # images after which compiling has paid for itself
                            gain = 1 / base - 1 / ips  # seconds saved per image
                            record["payback_images"] = round(compile_s / gain) if gain > 0 else None
                    else:
                        eager[channels_last] = ips
                    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
