"""SWA and SWAG: averaging the SWAG-cycle snapshots, Gaussian weight samples, BN refresh, model averaging.

Paper Section 3.1 "SWAG" and Section 4.2 (Tables 2-3): after the main schedule (Eq. 1) the converged model is
trained for 15 cosine-annealing cycles (``robustreid.schedule``); "at the end of each cycle we average the
weights of the current model with the previous models taken from the end of each cycle" (SWA, Izmailov et al.
2018), and SWAG (Maddox et al. 2019, "A Simple Baseline for Bayesian Uncertainty in Deep Learning") "fits a
Gaussian distribution using the SWA solution and diagonal covariance [...] [and] performs a Bayesian model
averaging based on the Gaussian distribution".

What is kept (Maddox et al. Section 3), over the flattened parameter vector ``theta`` (length ``P``, in
``model.named_parameters()`` order; buffers such as BatchNorm statistics are not averaged, see below):

* the running first and second moments ``mean = 1/T sum_i theta_i`` and ``sq_mean = 1/T sum_i theta_i^2``,
  stored in float64 by default: the diagonal variance ``var = clamp(sq_mean - mean^2, min=0)`` subtracts two
  nearly equal numbers, which float32 would round to noise for weights that move little between cycles;
* optionally the deviation matrix ``D`` of the last ``K = max_rank`` snapshots, one row per snapshot,
  ``D_i = theta_i - mean_i`` where ``mean_i`` is the running mean *after* adding ``theta_i`` (Maddox et al.
  Section 3, and their reference ``collect_model``), stored in float32 (no cancellation there).

Sampling (Maddox et al. Section 3's sampling identity, as in their reference ``sample(scale, cov)``)::

    theta~ = mean + sqrt(scale) * ( sqrt(var) * z1 + D^T z2 / sqrt(K_eff - 1) )
    z1 ~ N(0, I_P),  z2 ~ N(0, I_K_eff),  Cov[theta~] = scale * ( diag(var) + D^T D / (K_eff - 1) )

with ``K_eff = min(n_models, max_rank)`` the number of deviations actually held (the reference divides by the
maximum ``K`` even before ``K`` snapshots exist; we divide by the count held, as the paper's ``K - 1`` means).
``scale = 0.5`` gives the paper's SWAG posterior ``N(mean, 1/2 (Sigma_diag + Sigma_low-rank))``; with
``max_rank = 0`` (diagonal only, what the Robust-ReID paper describes) SWAG-Diagonal's ``N(mean, Sigma_diag)``
is ``scale = 1``. The low-rank term is used only when ``K_eff >= 2``: after a single snapshot its only
deviation is exactly zero (the mean *is* that snapshot); ``max_rank = 1`` is refused (``K - 1 = 0``).
``scale = 0`` gives the SWA mean exactly.

BatchNorm. Averaged or sampled weights no longer match the BatchNorm running statistics, so after writing
weights into a model they are recomputed by a label-free pass over training images (:func:`update_bn`, a thin
wrapper around ``torch.optim.swa_utils.update_bn``), as in SWA and SWAG.

Bayesian model averaging (:func:`bma_embed`): for each of ``S`` samples, write sampled weights into the one
model, refresh BN, extract L2-normalised descriptors with a caller-given ``extract(model)`` (e.g. query +
gallery over many batches), average them over samples and renormalise. Only one extra copy of the model's
state is held (to restore it afterwards), never ``S`` models.

Memory: ``P * (2 * 8 + K * 4)`` bytes with the default float64 moments (``P * (2 + K) * 4`` with
``dtype=torch.float32``). ``robustreid_2x`` without classifiers has P = 5,759,834: 438 MB at ``K = 15``
(392 MB in float32); Market1501's two 751-class classifiers add 1,441,920 parameters (547 MB / 490 MB).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import swa_utils

from .device import unwrap

__all__ = ["SWAG", "bma_embed", "check_swag_stage", "update_bn"]

STATE_FORMAT = "robustreid.swag"
STATE_VERSION = 1
DEVIATION_DTYPE = torch.float32


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_unwrap = unwrap


def _layout_mismatch(
    names: list[str],
    shapes: list[tuple[int, ...]],
    model_names: list[str],
    model_shapes: list[tuple[int, ...]],
) -> str | None:
    """A description of the first difference between two parameter layouts, or None if they are equal."""
    for i, (name, shape, model_name, model_shape) in enumerate(zip(names, shapes, model_names, model_shapes)):
        if name != model_name or shape != model_shape:
            return (
                f"parameter #{i} is {model_name!r} {list(model_shape)} in the model, "
                f"expected {name!r} {list(shape)}"
            )
    if len(names) != len(model_names):
        return f"the model has {len(model_names)} parameter tensors, expected {len(names)}"
    return None


class SWAG:
    """Running SWA moments and SWAG low-rank deviations of a model's parameters (see the module docstring).

    ``SWAG(model, max_rank=K)`` records the model's parameter layout (names and shapes) and allocates zeroed
    moments in ``dtype`` (float64 by default) and a ``(K, P)`` float32 deviation buffer on ``device``
    (default: the model's). ``max_rank = 0`` keeps the diagonal only; otherwise ``max_rank >= 2``. Call
    :meth:`collect` at each SWAG cycle end (``robustreid.schedule.swag_cycle_end``).
    """

    def __init__(
        self,
        model: nn.Module,
        max_rank: int = 0,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ):
        if not _is_int(max_rank) or max_rank < 0 or max_rank == 1:
            raise ValueError(
                f"max_rank must be 0 (diagonal only) or an int >= 2 (the low-rank term divides by K - 1), "
                f"got {max_rank!r}"
            )
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        named = list(_unwrap(model).named_parameters())
        if not named:
            raise ValueError(f"the model {type(model).__name__} has no parameters to average")
        self.param_names = [name for name, _ in named]
        self.param_shapes = [tuple(p.shape) for _, p in named]
        self.num_params = sum(p.numel() for _, p in named)
        self.max_rank = int(max_rank)
        device = named[0][1].device if device is None else torch.device(device)
        self._n_models = 0
        self._mean = torch.zeros(self.num_params, dtype=dtype, device=device)
        self._sq_mean = torch.zeros_like(self._mean)
        # Ring buffer: snapshot number n (1-based) lives in row (n - 1) % max_rank.
        self._deviations = torch.zeros(self.max_rank, self.num_params, dtype=DEVIATION_DTYPE, device=device)

    def __repr__(self) -> str:
        return (
            f"SWAG(num_params={self.num_params}, max_rank={self.max_rank}, n_models={self.n_models}, "
            f"dtype={self.dtype}, device={self.device})"
        )

    # -- read-only views ------------------------------------------------------------------------------------

    @property
    def n_models(self) -> int:
        """Number of snapshots collected so far."""
        return self._n_models

    @property
    def rank(self) -> int:
        """``K_eff = min(n_models, max_rank)``: the number of deviations held (0 for diagonal only)."""
        return min(self._n_models, self.max_rank)

    @property
    def dtype(self) -> torch.dtype:
        return self._mean.dtype

    @property
    def device(self) -> torch.device:
        return self._mean.device

    @property
    def mean(self) -> torch.Tensor:
        """The SWA weights, flattened ``(P,)`` in ``named_parameters()`` order (live tensor: read only)."""
        return self._mean

    @property
    def variance(self) -> torch.Tensor:
        """Diagonal variance ``clamp(sq_mean - mean^2, min=0)``, ``(P,)``: the population variance."""
        return (self._sq_mean - self._mean * self._mean).clamp_(min=0.0)

    @property
    def deviations(self) -> torch.Tensor:
        """Deviation matrix ``D``, ``(K_eff, P)``, oldest snapshot first (a copy once the buffer wraps)."""
        k = self.rank
        if self._n_models <= self.max_rank or self.max_rank == 0:
            return self._deviations[:k]
        oldest = self._n_models % self.max_rank
        return torch.cat([self._deviations[oldest:], self._deviations[:oldest]])

    # -- collecting and sampling ----------------------------------------------------------------------------

    def _check_layout(self, model: nn.Module) -> list[nn.Parameter]:
        named = list(_unwrap(model).named_parameters())
        mismatch = _layout_mismatch(
            self.param_names, self.param_shapes, [n for n, _ in named], [tuple(p.shape) for _, p in named]
        )
        if mismatch is not None:
            raise ValueError(f"the model's parameters do not match this SWAG's: {mismatch}")
        return [p for _, p in named]

    def _require_models(self, action: str) -> None:
        if self._n_models == 0:
            raise ValueError(
                f"cannot {action}: no snapshot collected yet (n_models=0); call collect(model) first"
            )

    @torch.no_grad()
    def collect(self, model: nn.Module) -> None:
        """Add the model's current parameters as a snapshot (Section 3.1: at the end of each SWAG cycle).

        Updates the running moments and, with ``max_rank > 0``, stores ``theta - mean`` (deviation from the
        running mean including this snapshot) in place of the oldest of the last ``max_rank`` deviations.
        """
        params = self._check_layout(model)
        theta = torch.cat([p.detach().reshape(-1).to(self.device, self.dtype) for p in params])
        n = self._n_models + 1
        self._mean += (theta - self._mean) / n
        self._sq_mean += (theta * theta - self._sq_mean) / n
        if self.max_rank:
            self._deviations[(n - 1) % self.max_rank] = theta - self._mean
        self._n_models = n

    @torch.no_grad()
    def sample(self, scale: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
        """One SWAG weight sample, flattened ``(P,)`` in ``dtype`` (formula in the module docstring).

        Draws ``z1`` (``P`` normals in ``dtype``) then, if ``K_eff >= 2``, ``z2`` (``K_eff`` float32 normals,
        one per deviation buffer row), on ``generator``'s device (default: the state's device and the global
        RNG), so a CPU generator gives the same sample whether the state lives on CPU or CUDA.
        """
        self._require_models("sample")
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0.0 <= scale < math.inf:
            raise ValueError(f"scale must be a finite number >= 0 (0 gives the SWA mean), got {scale!r}")
        noise_device = self.device if generator is None else generator.device
        z1 = torch.randn(self.num_params, generator=generator, dtype=self.dtype, device=noise_device)
        perturbation = self.variance.sqrt_().mul_(z1.to(self.device))
        k = self.rank
        if k >= 2:
            z2 = torch.randn(k, generator=generator, dtype=DEVIATION_DTYPE, device=noise_device)
            low_rank = z2.to(self.device) @ self._deviations[:k]  # D^T z2; row order is immaterial in law
            perturbation += low_rank.to(self.dtype) / math.sqrt(k - 1)
        return self._mean + math.sqrt(float(scale)) * perturbation

    @torch.no_grad()
    def _write(self, model: nn.Module, flat: torch.Tensor) -> nn.Module:
        offset = 0
        for p in self._check_layout(model):
            p.copy_(flat[offset : offset + p.numel()].view(p.shape))  # copy_ casts to p's dtype and device
            offset += p.numel()
        return model

    def sample_into(
        self, model: nn.Module, scale: float = 0.5, generator: torch.Generator | None = None
    ) -> nn.Module:
        """Write one SWAG sample (:meth:`sample`) into ``model``'s parameters; returns ``model``.

        BatchNorm statistics are left as they are: call :func:`update_bn` next.
        """
        return self._write(model, self.sample(scale, generator))

    def mean_into(self, model: nn.Module) -> nn.Module:
        """Write the SWA mean into ``model``'s parameters; returns ``model``. Call :func:`update_bn` next."""
        self._require_models("write the SWA mean")
        return self._write(model, self._mean)

    # -- checkpointing -------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The state as tensors, ints and strings only (``torch.load(weights_only=True)`` reads it).

        Tensors are on the CPU and, like ``nn.Module.state_dict``, alias the live state when it is on the CPU:
        save them (or clone) before collecting again. ``deviations`` holds the ``K_eff`` used buffer rows in
        buffer order.
        """
        return {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "max_rank": self.max_rank,
            "n_models": self._n_models,
            "param_names": list(self.param_names),
            "param_shapes": [list(s) for s in self.param_shapes],
            "mean": self._mean.detach().cpu(),
            "sq_mean": self._sq_mean.detach().cpu(),
            "deviations": self._deviations[: self.rank].detach().cpu(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into this SWAG (same parameter layout and ``max_rank`` required).

        The tensors are copied into this SWAG's own storage, keeping its device and ``dtype``.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a SWAG state (expected a dict with format={STATE_FORMAT!r})")
        if state.get("format_version") != STATE_VERSION:
            raise ValueError(
                f"SWAG state format_version={state.get('format_version')!r}, expected {STATE_VERSION}"
            )
        if state["max_rank"] != self.max_rank:
            raise ValueError(f"SWAG state has max_rank={state['max_rank']!r}, this SWAG has {self.max_rank}")
        mismatch = _layout_mismatch(
            state["param_names"],
            [tuple(s) for s in state["param_shapes"]],
            self.param_names,
            self.param_shapes,
        )
        if mismatch is not None:
            raise ValueError(f"SWAG state was collected on other parameters: {mismatch}")
        n_models = state["n_models"]
        if not _is_int(n_models) or n_models < 0:
            raise ValueError(f"SWAG state has n_models={n_models!r}, expected an int >= 0")
        rank = min(n_models, self.max_rank)
        expected = {
            "mean": (self.num_params,),
            "sq_mean": (self.num_params,),
            "deviations": (rank, self.num_params),
        }
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(
                    f"SWAG state {key!r} has shape {list(state[key].shape)}, expected {list(shape)}"
                )
        self._mean.copy_(state["mean"])
        self._sq_mean.copy_(state["sq_mean"])
        self._deviations.zero_()
        self._deviations[:rank] = state["deviations"]
        self._n_models = int(n_models)


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def update_bn(
    model: nn.Module,
    batches: Iterable,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
) -> nn.Module:
    """Recompute BatchNorm running statistics with a label-free train-mode pass; returns ``model``.

    ``batches`` yields image tensors or tuples/lists whose first element is the images (our loaders'
    ``(imgs, pids, camids, img_paths)``); at most ``max_batches`` are used. Each BatchNorm layer gets the
    cumulative average (``momentum=None``) of the per-batch mean and unbiased variance, every batch weighing
    the same -- ``torch.optim.swa_utils.update_bn``, which this calls, with its input moved to ``device``
    (default: the model's). The model's mode and BN momenta are restored afterwards, even on error. Raises
    ``ValueError`` without touching the model if ``batches`` is empty (e.g. an exhausted iterator).
    """
    if max_batches is not None and (not _is_int(max_batches) or max_batches < 1):
        raise ValueError(f"max_batches must be None or an int >= 1, got {max_batches!r}")
    bns = _batchnorms(model)
    if not bns:
        return model
    if device is None:
        device = next((p.device for p in model.parameters()), None)
    it = iter(batches) if max_batches is None else itertools.islice(batches, max_batches)
    first = next(it, None)
    if first is None:
        raise ValueError(
            "update_bn got no batches (an exhausted iterator? pass a re-iterable loader or list when it is "
            "used more than once)"
        )
    momenta = {bn: bn.momentum for bn in bns}
    was_training = model.training
    try:
        swa_utils.update_bn(itertools.chain([first], it), model, device=device)
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        model.train(was_training)
    return model


def bma_embed(
    model: nn.Module,
    swag: SWAG,
    extract: Callable[[nn.Module], torch.Tensor],
    *,
    num_samples: int,
    bn_batches: Iterable | None,
    scale: float = 0.5,
    max_bn_batches: int | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """SWAG Bayesian model averaging of descriptors (Section 3.1; Maddox et al. Section 3), ``(N, D)``.

    For each of ``num_samples`` samples: write a SWAG sample (``scale``) into ``model``, refresh BatchNorm
    over ``bn_batches`` (training images, :func:`update_bn`; pass None only for a model without BatchNorm),
    switch to eval mode and call ``extract(model)`` under ``torch.no_grad()``, which must return the same
    ``(N, D)`` descriptors every time (e.g. query then gallery, over as many batches as needed). Each row is
    L2-normalised, the rows are averaged over samples and renormalised. ``bn_batches`` is iterated once per
    sample, so it must be re-iterable (a DataLoader or a list). ``seed`` seeds a CPU generator for the
    weight samples (None: the global RNG). The model's parameters, buffers and mode are restored afterwards.

    The number of samples is not given in the paper (the SWAG reference scripts average 50 on CamVid, 100 on
    CIFAR); each sample costs one BN pass and one extraction.
    """
    if not _is_int(num_samples) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    total = None
    try:
        for _ in range(num_samples):
            swag.sample_into(model, scale, generator)
            if bn_batches is not None:
                update_bn(model, bn_batches, device=device, max_batches=max_bn_batches)
            model.eval()
            with torch.no_grad():
                feats = extract(model)
            if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
                raise ValueError(
                    f"extract(model) must return an (N, D) tensor, got "
                    f"{tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__}"
                )
            if total is not None and feats.shape != total.shape:
                raise ValueError(
                    f"extract(model) returned shape {tuple(feats.shape)}, "
                    f"earlier samples {tuple(total.shape)}"
                )
            feats = F.normalize(feats, dim=1)
            total = feats if total is None else total.add_(feats)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    return F.normalize(total / num_samples, dim=1)


def check_swag_stage(cfg, finished: dict, dataset, source: str | Path, out: str | Path,
                     device: str | torch.device | None = None) -> bool:
    """Every check of a SWAG stage run on a finished run (``robustreid swag``) that can fail before ``out`` is
    written to; writes nothing. Returns True if ``out`` holds this stage's own ``last.pt`` (resume it), False
    for a fresh stage. Each refusal is a one-line ``ValueError`` naming the folder, file or value.

    ``cfg``: the stage's config (``config.swag_stage_config``); ``finished``: the checkpoint dict of the finished
    run in ``source`` (its ``last.pt``); ``dataset``: the ``ReidDataset`` the stage trains and evaluates on.
    Checked: ``out`` is not ``source`` (the stage writes a run of its own), the ``device`` exists, the dataset
    has the finished run's identity count (its classifiers go on training) and readable images and a query set
    an evaluation can score, and an existing ``out/last.pt`` is this stage's (same config)."""
    from .checkpoint import load_checkpoint
    from .device import resolve_device
    from .train import check_inputs, config_from_checkpoint

    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise ValueError(f"{out} is the finished run's own folder: the SWAG stage writes a run folder of its own")
    resolve_device(device)
    trained_on = finished.get("num_classes")
    if dataset.num_train_pids != trained_on:
        raise ValueError(f"{source / 'last.pt'} was trained on {trained_on} identities, the dataset {dataset.name} "
                         f"has {dataset.num_train_pids}: the SWAG stage continues its identity classifiers")
    check_inputs(cfg, dataset)  # unreadable images, a query set no evaluation could score
    last = out / "last.pt"
    if not last.is_file():
        return False
    if config_from_checkpoint(load_checkpoint(last)) != cfg:
        raise ValueError(f"{last} holds another run (its config is not this SWAG stage's): choose another output "
                         "folder, or run the stage with the settings it was started with")
    return True
