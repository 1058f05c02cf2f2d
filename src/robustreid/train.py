"""Training with the paper's recipe (Section 3.1, Section 4 implementation details): a plain loop.

``fit(cfg, dataset, out_dir)`` runs the phases in order:

1. set up: seed, (optional) process group for ``torchrun``, model, PK loader, SGD, losses;
2. resume from ``out_dir/last.pt`` if asked (model, optimiser, epoch, SWAG state, history), or initialise: from
   pretrained weights (``cfg.init`` / ``pretrained``: every weight but the identity classifiers, which are new
   for this dataset's identities: random, or imprinted with ``cfg.classifier_init``) or the network's own init;
3. the main stage, epochs ``[0, schedule.epochs)`` at the Eq. 1 learning rate, evaluating every
   ``eval_every_epochs`` and keeping ``best.pt`` (by mAP) and ``last.pt``;
4. the SWAG stage (Section 3.1), epochs ``[schedule.epochs, schedule.total_epochs)`` on cosine cycles, a snapshot
   collected at the end of each cycle;
5. the end: with SWAG, the SWA mean (BatchNorm statistics refreshed) becomes the model, evaluated alone and with
   Bayesian model averaging; a summary is returned and written to ``summary.json``.

The learning rate of every iteration is ``schedule.lr_at(epoch + i / iters, cfg.schedule)`` (a pure function);
the loop only assigns it. ``last.pt`` is written atomically at the end of every epoch, so a run killed at any
moment resumes from its last finished epoch, and - on CPU, whose kernels are deterministic - ends with exactly
the weights of an uninterrupted run (the sampler and every sample's augmentation are functions of the seed and
the epoch only). A NaN or infinite loss stops the run with a clear message and leaves ``last.pt`` untouched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torch.distributed as dist
from torch import nn

from . import __version__
from .amp import autocast_dtype, needs_grad_scaler
from .atomicfile import remove_stale_temp_files, write_text
from .checkpoint import check_finite_weights, load_checkpoint, model_from_checkpoint, model_state, save_checkpoint
from .config import TrainConfig, config_to_dict, apply_overrides
from .datasets import ReidDataset
from .device import resolve_device, unwrap
from .loaders import RandomErasing, build_train_loader
from .losses import ReIDCriterion
from .model import Architecture, ReIDNet, arch_name, build_model, resolve_architecture
from .schedule import lr_at, swag_cycle_end

__all__ = ["TrainingDiverged", "scale_invariant_layers", "balance_init", "freeze_batchnorm_stats",
           "check_pretrained_arch", "load_pretrained_weights", "imprint_records", "imprint_classifiers",
           "pretrained_state", "train_one_epoch", "fit", "config_from_checkpoint",
           "check_inputs"]


class TrainingDiverged(RuntimeError):
    """The loss, or a weight, became NaN or infinite."""


def _check_finite(model: nn.Module, epoch: int) -> None:
    """Refuse to checkpoint non-finite weights: the previous ``last.pt`` stays the last good one."""
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise TrainingDiverged(f"{name} holds NaN or infinite values after epoch {epoch}; "
                                   f"not saved, the last checkpoint is the previous epoch's")


# ---- init: relative updates balanced across layers -----------------------------------------------------------


def scale_invariant_layers(model: nn.Module) -> list[nn.Module]:
    """The Conv2d / Linear layers whose output goes straight into a BatchNorm (the next module of their
    ``nn.Sequential``): the network's function does not depend on their weights' norm, only on their direction."""
    found = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for layer, after in zip(seq, list(seq)[1:]):
                if isinstance(layer, (nn.Conv2d, nn.Linear)) and isinstance(after, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    found.append(layer)
    return found


def balance_init(model: nn.Module, loss_fn: Callable[[], torch.Tensor], lr: float, target: float) -> list[float]:
    """Rescale every scale-invariant layer (``scale_invariant_layers``) so that one plain SGD step at ``lr`` on the
    gradient of ``loss_fn()`` moves its weights by at most ``target`` of their norm; returns the scale factors.

    A layer's relative update is ``r = lr * ||g|| / ||w||``; multiplying ``w`` by ``s`` leaves the network's output
    unchanged and divides ``g`` by ``s``, so ``r`` becomes ``r / s^2`` and ``s = max(1, sqrt(r / target))``. Only norms
    change: the directions, and so the function computed, are the init's. (A data-dependent init in the spirit
    of LSUV, Mishkin & Matas 2016, and GradInit, Zhu et al. 2021; the paper gives no init. At init the gradient
    grows ~9,000x from robustreid_1x's feature to its stem, so one SGD step at 3e-2 would move the stem by 11x its
    norm and the stage-3 layers by 1 %: README, "Learning study".) BatchNorm running statistics are restored.
    """
    layers = scale_invariant_layers(model)
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    model.zero_grad(set_to_none=True)
    loss_fn().backward()
    scales = []
    with torch.no_grad():
        for layer in layers:
            w, g = layer.weight, layer.weight.grad
            if g is None or float(w.norm()) == 0.0 or float(g.norm()) == 0.0:
                continue
            # only ever enlarge: a layer already slower than ``target`` keeps its init (shrinking a weight until its
            # output variance nears BatchNorm's eps would break the scale invariance this relies on)
            scale = max(1.0, math.sqrt(lr * float(g.norm()) / float(w.norm()) / target))
            w.mul_(scale)
            scales.append(scale)
        model.load_state_dict(buffers, strict=False)
    model.zero_grad(set_to_none=True)
    return scales


# ---- init: from pretrained weights (fine-tuning) --------------------------------------------------------------


def freeze_batchnorm_stats(model: nn.Module) -> int:
    """Put every BatchNorm layer of ``model`` (in train mode) into eval mode: batches are normalised with the
    running statistics, which no longer change; the affine weights keep their gradients (``cfg.freeze_bn``).
    Returns how many layers were frozen."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.eval()
    return len(layers)


# The Architecture fields that shape only the identity classifiers
CLASSIFIER_ONLY_FIELDS = ("classifier_bias", "classifier_norm")


def check_pretrained_arch(arch: Architecture, state: dict, source: str = "the pretrained checkpoint") -> None:
    """A one-line ``ValueError`` unless checkpoint ``state`` holds a network of architecture ``arch`` (the run's)
    with finite weights: ``--init zoo:hacnn is a hacnn (block=inception, ...), this run trains robustreid_1x
    (block=shuffle, ...)``; ``--init x.pt holds non-finite weights: stem.0.weight has ...``. The fields of the
    identity classifiers alone (``CLASSIFIER_ONLY_FIELDS``) may differ: those weights are not loaded."""
    if "arch" not in state or "model" not in state:
        raise ValueError(f"{source} holds no network (no arch / model entry)")
    saved = Architecture.from_dict(dict(state["arch"]))
    # The identity classifiers are never loaded (they are new for the run's identities), so the fields that
    # shape only them may differ: a run may fine-tune with another logit scale or with biases.
    if dataclasses.replace(saved, **{k: getattr(arch, k) for k in CLASSIFIER_ONLY_FIELDS}) != arch:
        fields = [k for k in saved.to_dict()
                  if k not in CLASSIFIER_ONLY_FIELDS and getattr(saved, k) != getattr(arch, k)]

        def listed(a: Architecture) -> str:
            return ", ".join(f"{k}={getattr(a, k)}" for k in fields)

        raise ValueError(f"{source} is a {arch_name(saved)} ({listed(saved)}), this run trains {arch_name(arch)} "
                         f"({listed(arch)}): pick the matching --preset or --set model=...")
    check_finite_weights(state, source)


def load_pretrained_weights(model: ReIDNet, state: dict, source: str = "the pretrained checkpoint") -> list[str]:
    """Load every weight of checkpoint ``state`` into ``model`` but the identity classifiers (``classifiers.*``):
    backbone, attention, heads, BatchNorm statistics. ``model`` keeps its own classifiers, sized for its
    dataset; the architectures must be the same (``check_pretrained_arch``). Returns the names loaded."""
    check_pretrained_arch(model.arch, state, source)
    weights = {k: v for k, v in state["model"].items() if not k.startswith("classifiers.")}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shapes that do not fit
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise ValueError(f"{source}: weights do not fit: {lines[1] if len(lines) > 1 else lines[0]}") from None
    missing = [k for k in missing if not k.startswith("classifiers.")]
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit the architecture: missing {missing}, unexpected {unexpected}")
    return sorted(weights)


def imprint_records(records, per_identity: int) -> list:
    """At most ``per_identity`` records of each identity (0: all), spread over its cameras: its records in
    camera order, taken at evenly spaced positions. Deterministic."""
    by_pid: dict[int, list] = {}
    for r in records:
        by_pid.setdefault(r.pid, []).append(r)
    chosen = []
    for pid in sorted(by_pid):
        own = sorted(by_pid[pid], key=lambda r: (r.camid, r.img_path))
        if per_identity and len(own) > per_identity:
            own = [own[i] for i in np.linspace(0, len(own) - 1, per_identity).round().astype(int)]
        chosen.extend(own)
    return chosen


@torch.no_grad()
def imprint_classifiers(model: ReIDNet, records, batch_size: int = 128, num_workers: int = 0,
                        device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None) -> None:
    """Each identity classifier row set to the mean direction of its identity's branch features, at the norm
    the row would start with (weight imprinting, Qi et al., CVPR 2018); biases to 0. ``records``: the run's
    training records (or ``imprint_records`` of them), pids ``0..num_classes-1``, read with the test transform,
    the network in eval mode (under autocast to ``amp_dtype`` unless None).

    Why (docs/MODEL_ZOO.md, "Fine-tuning v3"): on unit-norm features a row of norm ``s`` moves by at most ``lr / s``
    of its norm per sample of its identity, so fresh random rows barely turn in a short fine-tune, and the
    identity loss pulls the features toward random directions. Imprinted rows give the loss the identities'
    own directions from the first step: logit ``s * cos`` of a feature with its identity's mean direction
    (``s = classifier_norm``; without ``l2_norm`` the row is divided by the mean feature norm, so the logits
    have the same range)."""
    from .loaders import build_test_loader

    if not model.classifiers:
        return
    was_training = model.training
    model.eval()
    n = model.num_classes
    sums = [torch.zeros(n, model.arch.feat_dim, device=device) for _ in model.classifiers]
    norms = [torch.zeros((), device=device) for _ in model.classifiers]
    counts = torch.zeros(n, device=device)
    for imgs, pids, _, _ in build_test_loader(list(records), model.data_config, batch_size, num_workers):
        with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(imgs.to(device))
        pids = pids.to(device)
        for k, feats in enumerate(f for f in (out.global_feat, out.local_feat) if f is not None):
            feats = feats.float()
            sums[k].index_add_(0, pids, F.normalize(feats, dim=1))
            norms[k] += feats.norm(dim=1).sum()
        counts += torch.bincount(pids, minlength=n).float()
    if bool((counts == 0).any()):
        raise ValueError(f"imprinting: identity {int((counts == 0).nonzero()[0])} has no training image "
                         f"(expected pids 0..{n - 1})")
    s = model.arch.classifier_norm
    for clf, total, norm in zip(model.classifiers, sums, norms):
        scale = s if model.arch.l2_norm else s / float(norm / counts.sum())
        clf.weight.copy_(scale * F.normalize(total, dim=1))
        if clf.bias is not None:
            clf.bias.zero_()
    model.train(was_training)


# ---- distributed (torchrun) ---------------------------------------------------------------------------------


def run_plan(cfg: TrainConfig, iters_per_epoch: int) -> str:
    """What a run will do, in one line: epochs per phase, SGD steps, evaluations, SWAG and BMA."""
    s = cfg.schedule
    steps = ", ".join(f"x{s.gamma:g} after {m} epochs" for m in s.milestones) or "no step"
    parts = [f"plan: {s.epochs} epochs x {iters_per_epoch} iterations (lr {s.base_lr:g}, warmup {s.warmup_epochs} "
             f"epochs, {steps})"]
    if cfg.eval_every_epochs:
        parts.append(f"evaluation every {cfg.eval_every_epochs} epochs and after the last")
    if s.swag_cycles:
        parts.append(f"then SWAG: {s.swag_cycles} cycles x {s.swag_cycle_epochs} epochs, "
                     f"{cfg.swag_bma_samples} BMA samples (each a BatchNorm refresh + an evaluation)")
    parts.append(f"{s.total_epochs * iters_per_epoch} SGD steps in all")
    return "; ".join(parts)


def _check_evaluable(dataset: ReidDataset) -> None:
    """The evaluations this run will make need a query whose identity another camera saw in the gallery."""
    from .metrics import queries_with_a_match

    labels = [[getattr(r, k) for r in split] for split in (dataset.query, dataset.gallery) for k in ("pid", "camid")]
    if not dataset.query or not dataset.gallery or not queries_with_a_match(labels[0], labels[2], labels[1], labels[3]):
        cams = sorted({r.camid for r in dataset.gallery})
        raise ValueError(f"{dataset.name}: no query has a true match (same identity, another camera) in the "
                         f"{len(dataset.gallery)}-image gallery (cameras {cams}), so no evaluation can score this "
                         "run; check the query / gallery folders")


def _check_dataset_images(dataset: ReidDataset, log: Callable[[str], None] | None) -> None:
    from .datasets import check_images

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            _progress(f"checking images {done}/{total}", total - 1 if done == total else 0, total)

    bad = check_images(dataset, progress if log is not None else None)
    if bad:
        first = ", ".join(f"{p} ({e})" for p, e in bad[:3])
        raise ValueError(f"{len(bad)} unreadable image(s) in {dataset.name}: {first}"
                         f"{' ...' if len(bad) > 3 else ''}; remove or replace them (robustreid data check lists all)")


def _setup_distributed(device: str | None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device). Under torchrun (WORLD_SIZE > 1) joins the process group: nccl on GPUs,
    gloo on CPUs; each rank takes the GPU of its LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return rank, world, dev


def _all_reduce_mean(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


# ---- one epoch ------------------------------------------------------------------------------------------------


def _progress(line: str, i: int, iters: int, stream=sys.stderr) -> None:
    """A progress line: redrawn in place on a terminal; in a log file (not a TTY) one line per tenth of the
    epoch, so logs stay readable."""
    if stream.isatty():
        stream.write("\r" + line[:150].ljust(150) + ("\n" if i + 1 == iters else ""))
    elif (i + 1) % max(1, math.ceil(iters / 10)) == 0 or i + 1 == iters:
        stream.write(line + "\n")
    stream.flush()


def param_groups(model: nn.Module, classifier_lr_factor: float = 1.0) -> list[dict]:
    """SGD's parameter groups: one group, or with ``classifier_lr_factor`` != 1 the identity classifiers
    apart, their ``lr_factor`` scaling the schedule's rate in :func:`train_step` (``OptimConfig``)."""
    params = list(model.parameters())
    if classifier_lr_factor == 1.0:
        return [{"params": params, "lr_factor": 1.0}]
    heads = {id(p) for p in unwrap(model).classifiers.parameters()}
    return [{"params": [p for p in params if id(p) not in heads], "lr_factor": 1.0},
            {"params": [p for p in params if id(p) in heads], "lr_factor": classifier_lr_factor}]


def train_step(model: nn.Module, imgs: torch.Tensor, pids: torch.Tensor, optimizer: torch.optim.Optimizer,
               criterion: ReIDCriterion, lr: float, amp_dtype: torch.dtype | None = None,
               scaler: torch.amp.GradScaler | None = None) -> tuple[torch.Tensor, dict]:
    """One SGD step at learning rate ``lr``: forward (under autocast to ``amp_dtype`` unless None), the
    objective, backward, update. Returns the loss and its parts; a non-finite loss raises ``TrainingDiverged``
    before any weight changes. ``scaler``: float16's gradient scaler (``amp.needs_grad_scaler``), else None."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_factor", 1.0)
    with torch.autocast(imgs.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        out = model(imgs)
    loss, parts = criterion(out, pids)
    if not math.isfinite(loss.item()):
        raise TrainingDiverged(f"loss became {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:  # float16 autocast (CUDA without bfloat16): scale the loss so small gradients do not underflow
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss, parts


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    criterion: ReIDCriterion,
    epoch: int,
    cfg: TrainConfig,
    device: torch.device,
    show_progress: bool = True,
    scaler: torch.amp.GradScaler | None = None,
) -> dict:
    """One pass over the PK loader; returns the epoch's mean losses, its learning rates and throughput.

    ``scaler``: a gradient scaler for float16 autocast (``amp.needs_grad_scaler``); None for float32 / bfloat16.
    """
    model.train()
    if cfg.freeze_bn:
        freeze_batchnorm_stats(model)
    loader.sampler.set_epoch(epoch)
    iters = len(loader)
    totals: dict[str, float] = {}
    seen, start = 0, time.perf_counter()
    amp_dtype = autocast_dtype(device)
    lr = lr_at(epoch, cfg.schedule)
    for i, (imgs, pids, _, _) in enumerate(loader):
        lr = lr_at(epoch + i / iters, cfg.schedule)
        imgs, pids = imgs.to(device, non_blocking=True), pids.to(device, non_blocking=True)
        try:
            loss, parts = train_step(model, imgs, pids, optimizer, criterion, lr, amp_dtype if cfg.amp else None,
                                     scaler)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"{e} at epoch {epoch} iteration {i} (lr {lr:.3g}); training stopped, the last "
                                   "checkpoint is unchanged") from None
        seen += len(imgs)
        for k, v in {"loss": loss.item(), **parts}.items():
            totals[k] = totals.get(k, 0.0) + v
        if show_progress:
            elapsed = time.perf_counter() - start
            eta = elapsed / (i + 1) * (iters - i - 1)
            _progress(
                f"epoch {epoch} [{i + 1}/{iters}] loss {loss.item():.4f} lr {lr:.2e} "
                f"{seen / elapsed:.1f} img/s ETA {eta:.0f}s", i, iters
            )
    elapsed = time.perf_counter() - start
    stats = {k: _all_reduce_mean(v / max(iters, 1), device) for k, v in totals.items()}
    stats.update(epoch=epoch, lr=lr, images_per_s=seen / elapsed, seconds=elapsed)
    return stats


# ---- evaluation, logging, checkpoints -----------------------------------------------------------------------------


def _evaluate(model: nn.Module, dataset: ReidDataset, cfg: TrainConfig, device: torch.device) -> dict:
    from .evaluate import evaluate

    net = unwrap(model)
    result = evaluate(net, dataset, batch_size=cfg.data.test_batch_size, num_workers=cfg.data.num_workers, device=device)
    return {k: result[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP", "num_query", "num_gallery")}


class _Log:
    """metrics.jsonl (one JSON object per line) + TensorBoard scalars when tensorboard is installed."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.writer = None

    def rewrite(self, records: list[dict]) -> None:
        """Replace metrics.jsonl with ``records`` (atomically)."""
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:  # one whole line per record, on disk before the run goes on
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.writer is not None:
            step = record.get("epoch", 0)
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)
            self.writer.flush()


def _versions() -> dict:
    return {"robustreid": __version__, "torch": str(torch.__version__), "python": platform.python_version()}


def config_from_checkpoint(state: dict) -> TrainConfig:
    """Rebuild the ``TrainConfig`` a checkpoint was trained with."""
    return apply_overrides(TrainConfig(), state["config"])


def _make_swag(model: nn.Module, cfg: TrainConfig):
    from .swag import SWAG

    return SWAG(model, max_rank=cfg.swag_max_rank)


# ---- the whole run -----------------------------------------------------------------------------------------------


def fit(
    cfg: TrainConfig,
    dataset: ReidDataset,
    out_dir: str | os.PathLike,
    resume: bool = False,
    device: str | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
    init_checkpoint: dict | None = None,
    final_eval: bool = True,
    check_images: bool = True,
    pretrained: dict | None = None,
) -> dict:
    """Train ``cfg`` on ``dataset`` (its ``train`` split; ``query``/``gallery`` for evaluation) into ``out_dir``.

    ``resume``: continue from ``out_dir/last.pt`` (same config required). ``init_checkpoint``: start from these
    weights at epoch ``cfg.schedule.epochs`` (the SWAG stage on a finished run: ``robustreid swag``).
    ``pretrained``: fine-tune, a checkpoint dict (``checkpoint.load_checkpoint("zoo:robustreid_1x")`` or a .pt's)
    of the run's architecture: a fresh run starts from its weights but the identity classifiers
    (``load_pretrained_weights``), at epoch 0 of ``cfg.schedule``; without it, ``cfg.init`` names the checkpoint to
    load (the config records where the run started; set it to name a ``pretrained`` dict). A resumed run
    continues from its ``last.pt`` either way.
    ``final_eval=False`` skips the closing evaluation of the main stage (for a caller that evaluates itself).
    ``check_images``: decode every training, query and gallery image before the first step, and stop with one
    line naming the unreadable ones (a bad image would otherwise end the run mid-epoch, at its first use).
    Returns the summary dict (also written to ``out_dir/summary.json``).
    """
    out_dir = Path(out_dir)
    if pretrained is not None and init_checkpoint is not None:
        raise ValueError("pass init_checkpoint (the SWAG stage of a finished run) or pretrained (fine-tuning), "
                         "not both")
    if not resume and init_checkpoint is None:  # before anything is written: a wrong architecture stops here
        pretrained = pretrained_state(cfg, pretrained)
    rank, world, dev = _setup_distributed(device)
    main_process = rank == 0
    show_progress = show_progress and main_process
    _preflight(cfg, dataset, out_dir, main_process, check_images, final_eval, log if show_progress else None)

    # 1. set up
    model, loader, optimizer, criterion, scaler = _setup(cfg, dataset, dev, rank, world)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"

    # 2. resume / initialise
    if resume:
        start_epoch, best_map, history, swag = _restore(last_path, cfg, model, optimizer, scaler)
        log(f"resumed {last_path} at epoch {start_epoch}")
    else:
        start_epoch = _initialise(cfg, model, loader, criterion, dev, init_checkpoint, pretrained, dataset)
        best_map, history = -1.0, []
        swag = None
    if cfg.schedule.swag_cycles and swag is None:
        swag = _make_swag(model, cfg)
    net = model if world == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None)
    logger = _open_run_folder(out_dir, main_process, cfg, history)
    if main_process and init_checkpoint is not None and not resume:  # the stage's start (Table 3: "before")
        history.append({"kind": "eval", "stage": "start", "epoch": start_epoch - 1,
                        **_evaluate(model, dataset, cfg, dev)})
        logger.write(history[-1])

    def checkpoint(epoch_done: int) -> dict:
        return {**model_state(model), "optimizer": optimizer.state_dict(),
                "grad_scaler": None if scaler is None else scaler.state_dict(), "epoch": epoch_done,
                "best_mAP": best_map, "history": history, "config": config_to_dict(cfg),
                "swag": None if swag is None else swag.state_dict(), "versions": _versions()}

    # 3 + 4. the main stage, then the SWAG cycles
    total = cfg.schedule.total_epochs
    if main_process and start_epoch < total:
        log(run_plan(cfg, len(loader)))
    run_start = time.perf_counter()
    for epoch in range(start_epoch, total):
        stats = train_one_epoch(net, loader, optimizer, criterion, epoch, cfg, dev, show_progress, scaler)
        _check_finite(model, epoch)  # before SWAG collects the weights: a diverged iterate never enters its moments
        stage = "main" if epoch < cfg.schedule.epochs else "swag"
        record = {"kind": "train", "stage": stage, **stats}
        if stage == "swag" and swag_cycle_end(epoch, cfg.schedule):
            swag.collect(model)
            record["swag_snapshots"] = swag.n_models
        history.append(record)
        if main_process:  # the epoch is safe before the evaluation runs; then the log line
            save_checkpoint(checkpoint(epoch + 1), last_path)
            logger.write(record)
        is_last_main = epoch == cfg.schedule.epochs - 1
        if main_process and cfg.eval_every_epochs and ((epoch + 1) % cfg.eval_every_epochs == 0 or is_last_main):
            metrics = _evaluate(model, dataset, cfg, dev)
            history.append({"kind": "eval", "epoch": epoch, **metrics})
            if metrics["mAP"] > best_map:
                best_map = metrics["mAP"]
                save_checkpoint(checkpoint(epoch + 1), best_path)
            save_checkpoint(checkpoint(epoch + 1), last_path)
            logger.write(history[-1])
            log(f"epoch {epoch}: rank-1 {metrics['rank1']:.1f} mAP {metrics['mAP']:.1f}")
        if show_progress and epoch + 1 < total:
            log(time_left(time.perf_counter() - run_start, epoch + 1 - start_epoch, total - epoch - 1))

    # 5. the end: the last iterate's scores, then (with SWAG) the averaged model's
    return _finish(model, swag, loader, dataset, cfg, dev, history, out_dir, main_process, final_eval,
                   lambda: checkpoint(total))


def time_left(elapsed: float, epochs_done: int, epochs_left: int) -> str:
    """The run's estimated time to go, at the pace of the epochs done so far (their evaluations included)."""
    return (f"{epochs_left} epoch(s) to go: ~{elapsed / epochs_done * epochs_left / 60:.1f} min at "
            f"{elapsed / epochs_done / 60:.1f} min / epoch")


def check_inputs(cfg: TrainConfig, dataset: ReidDataset, check_images: bool = True, final_eval: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
    """The dataset checks of a run, writing nothing (a caller that prepares a run folder makes them first):
    unreadable images (with ``check_images``), a query set that no evaluation of the run could score."""
    if check_images:
        _check_dataset_images(dataset, log)
    if cfg.eval_every_epochs or final_eval or cfg.schedule.swag_cycles:
        _check_evaluable(dataset)


def _preflight(cfg: TrainConfig, dataset: ReidDataset, out_dir: Path, main_process: bool, check_images: bool,
               final_eval: bool, log: Callable[[str], None] | None) -> None:
    """Everything that can fail before the first step: unreadable images, a query set that no evaluation could
    score (``check_inputs``); then the run folder."""
    check_inputs(cfg, dataset, check_images, final_eval, log)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if main_process:
        out_dir.mkdir(parents=True, exist_ok=True)


def pretrained_state(cfg: TrainConfig, pretrained: dict | None = None,
                     label: str | None = None) -> dict | None:
    """The weights a fresh run fine-tunes: ``pretrained``, else ``cfg.init``'s checkpoint, else None; checked
    against the run's architecture (``check_pretrained_arch``; ``label`` names them in its error, default
    ``init <cfg.init>``)."""
    if pretrained is None and cfg.init:
        pretrained = load_checkpoint(cfg.init, map_location="cpu")
    if pretrained is not None:
        label = label or (f"init {cfg.init}" if cfg.init else "the pretrained checkpoint")
        check_pretrained_arch(resolve_architecture(cfg.model, **cfg.model_options()), pretrained, label)
    elif cfg.classifier_init == "imprint":
        raise ValueError("classifier_init='imprint' needs weights to start from (--init): the features of an "
                         "untrained network carry no identity")
    return pretrained


def _initialise(cfg: TrainConfig, model: nn.Module, loader, criterion: ReIDCriterion, dev: torch.device,
                init_checkpoint: dict | None, pretrained: dict | None = None,
                dataset: ReidDataset | None = None) -> int:
    """A fresh run's weights; returns its first epoch. ``init_checkpoint``: a finished run's weights, the SWAG
    stage starts after its main stage. ``pretrained``: every weight but the identity classifiers (the run's own,
    freshly initialised for its dataset, or imprinted from ``dataset``'s training images:
    ``classifier_init``),
    epoch 0. Otherwise ``cfg.init_relative_update`` balances the layers'
    relative updates on the first batch (``balance_init``; not on pretrained weights, whose norms are trained)."""
    if init_checkpoint is not None:
        model.load_state_dict(model_from_checkpoint(init_checkpoint, num_classes=model.num_classes,
                                                    arch=model.arch).state_dict())
        return cfg.schedule.epochs
    if pretrained is not None:
        load_pretrained_weights(unwrap(model), pretrained, f"init {cfg.init}" if cfg.init else "pretrained")
        if cfg.classifier_init == "imprint":
            imprint_classifiers(unwrap(model), imprint_records(dataset.train, cfg.imprint_per_identity),
                                cfg.data.test_batch_size, cfg.data.num_workers, dev,
                                autocast_dtype(dev) if cfg.amp else None)
        return 0
    if cfg.init_relative_update:
        loader.sampler.set_epoch(0)
        imgs, pids, _, _ = next(iter(loader))
        model.train()
        balance_init(model, lambda: criterion(model(imgs.to(dev)), pids.to(dev))[0], cfg.schedule.base_lr,
                     cfg.init_relative_update)
    return 0


def _finish(model: nn.Module, swag, loader, dataset: ReidDataset, cfg: TrainConfig, dev: torch.device,
            history: list, out_dir: Path, main_process: bool, final_eval: bool, checkpoint: Callable[[], dict]) -> dict:
    """The last iterate's scores, then (with SWAG) the averaged model's; ``summary.json``."""
    summary: dict = {"epochs": cfg.schedule.total_epochs, "config": config_to_dict(cfg), "versions": _versions()}
    if main_process:
        if final_eval or (swag is not None and swag.n_models):
            summary["final"] = _evaluate(model, dataset, cfg, dev)
        if swag is not None and swag.n_models:
            summary.update(_swag_finish(model, swag, loader, dataset, cfg, dev, history, summary["final"]))
            save_checkpoint(checkpoint(), out_dir / "swa.pt")
        write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    if dist.is_initialized():
        dist.barrier()
    return summary


def _open_run_folder(out_dir: Path, main_process: bool, cfg: TrainConfig, history: list) -> "_Log":
    """Clear killed writers' temporary files, write ``config.json``, and open ``metrics.jsonl`` rewritten from
    ``history`` (a resumed run's log is its checkpoint's history: lines written after that save go)."""
    logger = _Log(out_dir, main_process)
    if main_process:
        remove_stale_temp_files(out_dir)
        write_text(out_dir / "config.json", json.dumps(config_to_dict(cfg), indent=2))  # the resolved recipe
        if history:
            logger.rewrite(history)
    return logger


def _setup(cfg: TrainConfig, dataset: ReidDataset, dev: torch.device, rank: int, world: int) -> tuple:
    """The network (seeded), the PK loader (this rank's share), SGD, the losses and (fp16 only) a grad scaler."""
    torch.manual_seed(cfg.seed)
    num_classes = dataset.num_train_pids
    model = build_model(cfg.model, num_classes, **cfg.model_options()).to(dev)
    loader = build_train_loader(
        dataset.train, model.data_config, batch_p=cfg.data.batch_p, batch_k=cfg.data.batch_k,
        num_workers=cfg.data.num_workers, seed=cfg.seed, num_replicas=world, rank=rank,
        erasing=RandomErasing(probability=cfg.data.random_erasing), pad=cfg.data.pad,
        color_jitter=cfg.data.color_jitter,
    )
    groups = param_groups(model, cfg.optim.classifier_lr_factor)
    optimizer = torch.optim.SGD(groups, lr=lr_at(0, cfg.schedule), momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
    criterion = ReIDCriterion(cfg.loss, num_classes)
    scaler = torch.amp.GradScaler(dev.type) if cfg.amp and needs_grad_scaler(dev) else None
    return model, loader, optimizer, criterion, scaler


def _restore(last_path: Path, cfg: TrainConfig, model: nn.Module, optimizer, scaler) -> tuple:
    """Load ``last_path`` into the model, optimizer and grad scaler (same config required); returns
    ``(start_epoch, best_mAP, history, swag or None)``."""
    state = load_checkpoint(last_path, map_location="cpu")
    if config_from_checkpoint(state) != cfg:
        raise ValueError(f"{last_path} was trained with another config; resume with the config stored in it")
    model.load_state_dict(model_from_checkpoint(state, num_classes=model.num_classes, arch=model.arch,
                                                source=str(last_path)).state_dict())
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    swag = None
    if state.get("swag") is not None:
        swag = _make_swag(model, cfg)
        swag.load_state_dict(state["swag"])
    return state["epoch"], state["best_mAP"], list(state["history"]), swag


def _swag_finish(model, swag, loader, dataset, cfg, dev, history, last_sgd: dict) -> dict:
    """The SWA mean put into ``model`` (BatchNorm refreshed) and scored, then the SWAG BMA: summary entries."""
    from .swag import update_bn

    # BN statistics from the training pipeline itself (PK batches, the train augmentation), as in SWA
    # (Izmailov et al.; torch.optim.swa_utils.update_bn(train_loader, ...)): the layers after each BN were
    # trained on activations normalised with the augmented data's statistics. Refreshing with the test
    # transform instead moved the stem BN mean from 75 to 22 and cut rank-1 from 45.6 to 20.8 on the
    # synthetic set (README, SWAG section).
    swag.mean_into(model)
    update_bn(model, loader, device=dev)
    out: dict = {}
    start = [r for r in history if r.get("stage") == "start"]
    if start:
        out["start"] = {k: v for k, v in start[0].items() if k not in ("kind", "stage", "epoch")}
    out["sgd_last"] = last_sgd  # the last SGD iterate of the cycles (no averaging)
    out["swa_mean"] = out["final"] = _evaluate(model, dataset, cfg, dev)
    if cfg.swag_bma_samples:
        out["bma"] = _bma(model, swag, dataset, cfg, dev, loader)
    return out


def _bma(model, swag, dataset, cfg, dev, bn_loader) -> dict:
    """Bayesian model averaging (SWAG, Section 3.1): mean of the S sampled models' unit descriptors."""
    from .evaluate import extract_features
    from .datasets import labels
    from .metrics import SUMMARY_KEYS, score
    from .swag import bma_embed

    def extract(m):
        q, _, _ = extract_features(m, dataset.query, cfg.data.test_batch_size, cfg.data.num_workers, dev)
        g, _, _ = extract_features(m, dataset.gallery, cfg.data.test_batch_size, cfg.data.num_workers, dev)
        return torch.cat([q, g])

    feats = bma_embed(model, swag, extract, num_samples=cfg.swag_bma_samples, bn_batches=bn_loader,
                      scale=cfg.swag_scale, seed=cfg.seed, device=dev)
    nq = len(dataset.query)
    (q_pids, q_cams), (g_pids, g_cams) = labels(dataset.query), labels(dataset.gallery)
    scores = score(feats[:nq], feats[nq:], q_pids, g_pids, q_cams, g_cams)
    return {**{key: scores[key] for key in SUMMARY_KEYS}, "samples": cfg.swag_bma_samples, "scale": cfg.swag_scale}
