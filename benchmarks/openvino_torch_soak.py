"""OpenVINO beside PyTorch in one long process (issue 28): a soak run that alternates, in ONE process under
faulthandler, the things a training script that also extracts with OpenVINO does, for ``--seconds``.

Setup (not timed): a small synthetic Market1501 (``write_market1501``) in a temporary folder, a tiny
``robustreid_1x`` with identity classifiers, its test descriptor exported once (``export_openvino``: the IR is
compiled and checked against PyTorch there), one ``OpenVinoEmbedder`` on it and the training loader
(``build_train_loader``, ``--workers`` persistent worker processes, as ``robustreid train`` makes them). Then,
round after round until ``--seconds`` have passed (the first round runs every phase however long it takes),
the phases:

* ``train``: ``--train-steps`` SGD steps (``train.train_step``, the paper's ID + triplet objective) on batches
  of the training loader (its workers were forked before OpenVINO started, as in a training run);
* ``torch_infer``: ``FeatureExtractor(model)`` over the query images (a BatchNorm-folded copy, no workers),
  and the exported snapshot's ``embed`` in PyTorch on a fixed batch;
* ``openvino_infer``: the long-lived ``OpenVinoEmbedder`` on the fixed batch; it must equal its first output
  and the snapshot's PyTorch output (atol 1e-4), else the round counts a mismatch;
* ``compile_destroy``: a new ``OpenVinoEmbedder`` (compiled on ``openvino_backend.shared_core()``, every other
  one with ``micro_batch=2``), two batches, then deleted and collected (``gc.collect``);
* ``fork_after_openvino``: ``FeatureExtractor(ir, backend="openvino", num_workers=--workers)`` over the query
  images, whose DataLoader forks its workers after OpenVINO's threads have started (the path of
  ``robustreid eval --backend openvino --num-workers 2``), and ``extract_features`` in PyTorch with as many
  workers; the descriptors must equal the first round's.

Each phase runs under ``faulthandler.dump_traceback_later(--phase-timeout, exit=True)``, so a hang prints
every thread's stack and ends the process (exit 1); a segmentation fault prints the faulting stack
(faulthandler is inherited by the forked workers too). At the end one JSON line: per phase its runs, items and
seconds, the rounds, the largest thread count seen, the versions and the CPU's vector extensions. Exit 0: it
survived with consistent outputs; 1: outputs diverged (``mismatches`` > 0) or a phase failed; 2: bad
arguments (one line).

    nice -n 19 python benchmarks/openvino_torch_soak.py [--seconds 120] [--workers 2] [--train-steps 4]
        [--threads N] [--phase-timeout 120] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings

import torch

PROG = "openvino_torch_soak"
# A tiny robustreid_1x (the tests' TINY): a training step and an inference take milliseconds.
TINY = {"stem_channels": 8, "stage_channels": (32, 32, 32), "stage_repeats": (0, 0, 0), "feat_dim": 16,
        "conv_init": "fan_out"}
PHASES = ("train", "torch_infer", "openvino_infer", "compile_destroy", "fork_after_openvino")


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit 2 (argparse's own error() prints the usage as well)."""

    def error(self, message: str):
        print(f"{PROG}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="soak duration after the setup")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (>= 1)")
    parser.add_argument("--train-steps", type=int, default=4, help="SGD steps per train phase")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--phase-timeout", type=float, default=120.0, help="seconds before a phase is a hang")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error(f"--seconds {args.seconds}: expected a number > 0")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected an integer >= 1 (the point is forked workers)")
    if args.train_steps < 1:
        parser.error(f"--train-steps {args.train_steps}: expected an integer >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: expected an integer >= 1")
    if not args.phase_timeout > 0:
        parser.error(f"--phase-timeout {args.phase_timeout}: expected a number > 0")
    return args


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux
        return -1


def _cpu_extensions() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted({f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")})


class Soak:
    """The model, data and OpenVINO objects of one soak run, and its counters."""

    def __init__(self, args: argparse.Namespace, root: str):
        from robustreid.config import LossConfig
        from robustreid.datasets import load_dataset
        from robustreid.export import export_openvino
        from robustreid.loaders import build_train_loader
        from robustreid.losses import ReIDCriterion
        from robustreid.model import build_model
        from robustreid.openvino_backend import OpenVinoEmbedder
        from robustreid.synthetic.market1501 import write_market1501

        self.args = args
        write_market1501(os.path.join(root, "market"), ids_train=8, ids_test=6, cameras=3,
                         images_per_id_per_cam=2, distractors=4, junk=2, seed=args.seed)
        self.dataset = load_dataset("market1501", os.path.join(root, "market"))
        self.query = [r.img_path for r in self.dataset.query]
        torch.manual_seed(args.seed)
        self.model = build_model("robustreid_1x", self.dataset.num_train_pids, **TINY)
        self.criterion = ReIDCriterion(LossConfig(), self.dataset.num_train_pids)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loader = build_train_loader(self.dataset.train, self.model.data_config, batch_p=4, batch_k=2,
                                         num_workers=args.workers, seed=args.seed)
        self.epoch, self.batches = 0, iter(())
        self.snapshot = copy.deepcopy(self.model).eval()  # what was exported
        self.ir = os.path.join(root, "ir", "model.xml")
        self.export = export_openvino(self.snapshot, self.ir)  # compiles and runs the IR: OpenVINO's threads
        self.embedder = OpenVinoEmbedder(self.ir)
        h, w = self.model.data_config["input_size"]
        self.batch = torch.randn(6, 3, h, w, generator=torch.Generator().manual_seed(args.seed))
        with torch.no_grad():
            self.expected = self.snapshot.embed(self.batch)
        self.first_ov = self.embedder.embed(self.batch)
        self.first_fork: dict[str, torch.Tensor] = {}
        self.mismatches: dict[str, int] = {}
        self.counts = {name: {"runs": 0, "items": 0, "seconds": 0.0} for name in PHASES}
        self.threads_max = _threads()
        self.compiled = 0

    def _mismatch(self, what: str, got: torch.Tensor, want: torch.Tensor, atol: float) -> None:
        if got.shape != want.shape or not torch.allclose(got, want, atol=atol, rtol=0):
            self.mismatches[what] = self.mismatches.get(what, 0) + 1

    def train(self) -> int:
        from robustreid.train import train_step

        self.model.train()
        for _ in range(self.args.train_steps):
            batch = next(self.batches, None)
            if batch is None:  # a new epoch: the persistent workers (forked at the first one) are reused
                self.epoch += 1
                self.loader.sampler.set_epoch(self.epoch)
                self.batches = iter(self.loader)
                batch = next(self.batches)
            imgs, pids = batch[0], batch[1]
            train_step(self.model, imgs, pids, self.optimizer, self.criterion, lr=0.01)
        return self.args.train_steps

    def torch_infer(self) -> int:
        from robustreid.evaluate import FeatureExtractor

        feats = FeatureExtractor(copy.deepcopy(self.model).eval(), batch_size=8)(self.query)
        with torch.no_grad():
            self._mismatch("torch_snapshot", self.snapshot.embed(self.batch), self.expected, 1e-6)
        return len(feats) + len(self.batch)

    def openvino_infer(self) -> int:
        got = self.embedder.embed(self.batch)
        self._mismatch("openvino_repeat", got, self.first_ov, 1e-6)
        self._mismatch("openvino_vs_torch", got, self.expected, 1e-4)
        return len(self.batch)

    def compile_destroy(self) -> int:
        from robustreid.openvino_backend import OpenVinoEmbedder

        embedder = OpenVinoEmbedder(self.ir, micro_batch=2 if self.compiled % 2 else None)
        self.compiled += 1
        for _ in range(2):
            self._mismatch("openvino_new_model", embedder.embed(self.batch), self.expected, 1e-4)
        del embedder
        gc.collect()
        return 2 * len(self.batch)

    def fork_after_openvino(self) -> int:
        from robustreid.evaluate import FeatureExtractor, extract_features

        workers = self.args.workers
        results = {"openvino_workers": FeatureExtractor(self.ir, backend="openvino", batch_size=8,
                                                        num_workers=workers)(self.query),
                   "torch_workers": extract_features(self.snapshot, self.dataset.query, batch_size=8,
                                                     num_workers=workers)[0]}
        for name, feats in results.items():
            self._mismatch(name, feats, self.first_fork.setdefault(name, feats), 1e-6)
        return sum(len(f) for f in results.values())

    def run(self) -> int:
        """Rounds of the phases until ``--seconds`` have passed (the first round whole, however long it is);
        returns the number of rounds begun."""
        start, rounds = time.perf_counter(), 0
        while time.perf_counter() - start < self.args.seconds:
            rounds += 1
            for name in PHASES:
                if rounds > 1 and name != PHASES[0] and time.perf_counter() - start >= self.args.seconds:
                    break  # the first round always runs every phase
                faulthandler.dump_traceback_later(self.args.phase_timeout, exit=True)
                t = time.perf_counter()
                items = getattr(self, name)()
                faulthandler.cancel_dump_traceback_later()
                count = self.counts[name]
                count["runs"] += 1
                count["items"] += items
                count["seconds"] += time.perf_counter() - t
                self.threads_max = max(self.threads_max, _threads())
        return rounds


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import openvino
    except ImportError as exc:
        print(f"{PROG}: error: openvino is not installed ({exc}): pip install 'robustreid[openvino]'",
              file=sys.stderr)
        return 2
    faulthandler.enable(all_threads=True)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*no bfloat16 support", category=UserWarning)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"{PROG}-") as root:
        soak = Soak(args, root)
        setup = time.perf_counter() - t0
        rounds = soak.run()
        soak_seconds = time.perf_counter() - t0 - setup
        del soak.loader, soak.batches  # the persistent training workers end here, not at interpreter exit
        gc.collect()
    mismatches = sum(soak.mismatches.values())
    print(json.dumps({
        "bench": PROG, "survived": True, "consistent": mismatches == 0, "rounds": rounds,
        "setup_s": round(setup, 1), "soak_s": round(soak_seconds, 1),
        "phases": {name: {**c, "seconds": round(c["seconds"], 2)} for name, c in soak.counts.items()},
        "mismatches": soak.mismatches, "threads_max": soak.threads_max, "workers": args.workers,
        "torch_threads": torch.get_num_threads(), "export_parity_ok": soak.export["parity"]["ok"],
        "openvino": openvino.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_extensions": _cpu_extensions(), "cpu_count": os.cpu_count(),
    }), flush=True)
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
