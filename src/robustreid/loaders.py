"""Training and test input pipelines: transforms, random erasing, PK identity sampler, DataLoaders.

* Transforms (Pillow + torch only), sized by the model's ``data_config``
  (``{"input_size": (H, W), "mean": (r, g, b), "std": (r, g, b)}``; Section 4: "All person images are resized
  to 160x64"). Train: resize, horizontal flip (0.5), zero-pad 10 + random crop back, to tensor, normalise,
  random erasing. Test: resize, to tensor, normalise.
* Colour jitter (not in the paper; off in its presets): with probability ``color_jitter``, a random white
  balance, exposure, saturation and gamma (:func:`camera_color_jitter`), so a descriptor cannot tell the
  cameras apart by their colour cast (fast-reid offers the same idea as its ColorJitter augmentation).
* Random erasing (Section 3.1, Zhong et al. [40]): probability 0.5, erased area ``0.02 <= S_e <= 0.4`` of the
  image, aspect ratio ``0.3 <= r <= 3.3`` (``r`` = height / width). The rectangle is filled with the
  normalisation mean (0 after normalising: Zhong et al.'s ImageNet-mean fill when ``mean`` is ImageNet's) or,
  with ``fill="random"``, with standard-normal noise in normalised units.
* PK sampler (Section 4: "We randomly sample 8 identities and 4 images per person in each training batch").

Randomness: every random transform takes an optional ``torch.Generator``; without one it draws from torch's
default generator, which the DataLoader seeds per worker (``base_seed + worker_id``, ``base_seed`` drawn from
the loader's seeded generator), so workers never repeat each other and runs are reproducible. No ``random`` or
numpy RNG is used in the transforms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from .datasets import Record, read_image

__all__ = [
    "PKSampler",
    "RandomErasing",
    "ReidImageDataset",
    "TestTransform",
    "TrainTransform",
    "build_test_loader",
    "build_train_loader",
    "camera_color_jitter",
    "sample_erase_box",
]


def _check_data_config(data_config: Mapping) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]:
    """Validate ``data_config`` and return ``(input_size, mean, std)``."""
    missing = [key for key in ("input_size", "mean", "std") if key not in data_config]
    if missing:
        raise ValueError(f"data_config lacks {missing}: expected keys 'input_size' (H, W), 'mean', 'std'")
    input_size = tuple(int(v) for v in data_config["input_size"])
    mean = tuple(float(v) for v in data_config["mean"])
    std = tuple(float(v) for v in data_config["std"])
    if len(input_size) != 2 or min(input_size) < 1:
        raise ValueError(
            f"data_config['input_size'] = {data_config['input_size']}: expected (H, W), both >= 1"
        )
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(
            f"data_config mean = {data_config['mean']}, std = {data_config['std']}: expected 3 values each "
            "(RGB), std > 0"
        )
    return input_size, mean, std


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)


def _normalise(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=tensor.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=tensor.dtype).view(3, 1, 1)
    return ((tensor - mean_t) / std_t).contiguous()


def _resize(image: Image.Image, input_size: tuple[int, int]) -> Image.Image:
    height, width = input_size
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)


def sample_erase_box(
    height: int,
    width: int,
    area_range: tuple[float, float] = (0.02, 0.4),
    aspect_range: tuple[float, float] = (0.3, 3.3),
    generator: torch.Generator | None = None,
    attempts: int = 100,
) -> tuple[int, int, int, int] | None:
    """Draw a random-erasing rectangle ``(top, left, h, w)`` (Zhong et al. [40], Section 3.1).

    The target area is uniform in ``area_range`` times the image area; the aspect ratio ``h / w`` is
    log-uniform in ``aspect_range`` (so tall and wide boxes are equally likely). A draw is kept only if, after
    rounding to whole pixels, the box fits strictly inside the image and its area fraction and aspect ratio
    are still within the ranges; after ``attempts`` failures ``None`` is returned (nothing is erased).
    """
    area_lo, area_hi = area_range
    aspect_lo, aspect_hi = aspect_range
    if not 0 < area_lo <= area_hi < 1 or not 0 < aspect_lo <= aspect_hi:
        raise ValueError(
            f"area_range={area_range}, aspect_range={aspect_range}: expected 0 < lo <= hi < 1 for the area "
            "and 0 < lo <= hi for the aspect ratio"
        )
    image_area = height * width
    log_aspect_lo, log_aspect_hi = math.log(aspect_lo), math.log(aspect_hi)
    for _ in range(attempts):
        u_area, u_aspect = torch.rand(2, generator=generator).tolist()
        target_area = (area_lo + (area_hi - area_lo) * u_area) * image_area
        aspect = math.exp(log_aspect_lo + (log_aspect_hi - log_aspect_lo) * u_aspect)
        h = round(math.sqrt(target_area * aspect))
        w = round(math.sqrt(target_area / aspect))
        if not (1 <= h < height and 1 <= w < width):
            continue
        if not (area_lo <= h * w / image_area <= area_hi and aspect_lo <= h / w <= aspect_hi):
            continue
        top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
        return top, left, h, w
    return None


class RandomErasing:
    """Erase one random rectangle of a normalised (C, H, W) tensor with ``probability`` (Section 3.1).

    ``fill="mean"`` writes 0, i.e. the normalisation mean pixel (Zhong et al.'s ImageNet-mean fill);
    ``fill="random"`` writes standard-normal noise (random values in normalised units). Returns a new tensor.
    """

    def __init__(
        self,
        probability: float = 0.5,
        area_range: tuple[float, float] = (0.02, 0.4),
        aspect_range: tuple[float, float] = (0.3, 3.3),
        fill: str = "mean",
    ):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"random erasing probability={probability}: expected a value in [0, 1]")
        if fill not in ("mean", "random"):
            raise ValueError(f"random erasing fill={fill!r}: expected 'mean' or 'random'")
        sample_erase_box(10, 10, area_range, aspect_range, attempts=0)  # validates the ranges
        self.probability = probability
        self.area_range = tuple(area_range)
        self.aspect_range = tuple(aspect_range)
        self.fill = fill

    def __call__(self, tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if float(torch.rand((), generator=generator)) >= self.probability:
            return tensor
        height, width = tensor.shape[-2:]
        box = sample_erase_box(height, width, self.area_range, self.aspect_range, generator)
        if box is None:
            return tensor
        top, left, h, w = box
        tensor = tensor.clone()
        if self.fill == "mean":
            tensor[..., top:top + h, left:left + w] = 0.0
        else:
            noise = torch.randn((*tensor.shape[:-2], h, w), generator=generator, dtype=tensor.dtype)
            tensor[..., top:top + h, left:left + w] = noise
        return tensor

    def __repr__(self) -> str:
        return (f"RandomErasing(probability={self.probability}, area_range={self.area_range}, "
                f"aspect_range={self.aspect_range}, fill={self.fill!r})")


def _pad_crop(tensor: torch.Tensor, pad: int, top: int, left: int) -> torch.Tensor:
    """Zero-pad ``pad`` pixels on every side, then crop the original size at ``(top, left)`` of the padded.

    Done as one shifted copy into zeros: ``F.pad`` goes multi-threaded even on a 3x160x64 image and took
    ~8 ms instead of ~15 us per call in the main process of this busy 2-core machine.
    """
    height, width = tensor.shape[-2:]
    dy, dx = top - pad, left - pad  # output pixel (y, x) shows input pixel (y + dy, x + dx)
    y0, y1 = max(0, -dy), min(height, height - dy)
    x0, x1 = max(0, -dx), min(width, width - dx)
    out = tensor.new_zeros(tensor.shape)
    if y0 < y1 and x0 < x1:
        out[..., y0:y1, x0:x1] = tensor[..., y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    return out


def camera_color_jitter(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random camera's photometry on an RGB tensor in [0, 1] ``(3, H, W)``: returns a new tensor.

    Exposure gain in [0.7, 1.3]; white balance: a colour temperature moving red and blue by up to +-16 % in
    opposite directions and a green tint of up to +-7 %, normalised to keep the mean gain; saturation in
    [0.6, 1.2] about the grey of each pixel; gamma in [0.8, 1.25]. The ranges cover the synthetic cameras'
    (``robustreid.synthetic.camera.sample_camera``) so the augmented crops look like other cameras' crops.
    """
    u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
    gain = 0.7 + 0.6 * u[0]
    temperature, tint = 2.0 * u[1] - 1.0, 0.14 * u[2] - 0.07
    cast = torch.tensor([1.0 + 0.16 * temperature, 1.0 + tint, 1.0 - 0.16 * temperature], dtype=tensor.dtype)
    cast = cast / cast.mean()
    out = tensor * (gain * cast)[:, None, None]
    grey = out.mean(dim=0, keepdim=True)
    out = (grey + (0.6 + 0.6 * u[3]) * (out - grey)).clamp_(0.0, 1.0)
    return out.pow_(0.8 + 0.45 * u[4])


class TrainTransform:
    """Training augmentation (Section 3.1 / 4): PIL image -> normalised (3, H, W) float tensor.

    Resize to ``input_size``, colour jitter with probability ``color_jitter`` (:func:`camera_color_jitter`;
    0 = off, the paper's recipe), horizontal flip with ``flip_probability``, zero-pad ``pad`` pixels (black,
    before normalising) and randomly crop back to ``input_size``, normalise, random erasing.
    """

    def __init__(
        self,
        data_config: Mapping,
        flip_probability: float = 0.5,
        pad: int = 10,
        erasing: RandomErasing | None = None,
        color_jitter: float = 0.0,
    ):
        self.input_size, self.mean, self.std = _check_data_config(data_config)
        if not 0.0 <= color_jitter <= 1.0:
            raise ValueError(f"color_jitter={color_jitter}: expected a probability in [0, 1]")
        self.color_jitter = float(color_jitter)
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability={flip_probability}: expected a value in [0, 1]")
        if pad < 0:
            raise ValueError(f"pad={pad}: expected >= 0")
        self.flip_probability = flip_probability
        self.pad = int(pad)
        self.erasing = RandomErasing() if erasing is None else erasing

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        # Pillow for the resize only; flip and pad + crop commute with to-tensor, so they run on the tensor.
        tensor = _to_tensor(_resize(image, self.input_size))
        if self.color_jitter and float(torch.rand((), generator=generator)) < self.color_jitter:
            tensor = camera_color_jitter(tensor, generator)
        if float(torch.rand((), generator=generator)) < self.flip_probability:
            tensor = tensor.flip(-1)
        if self.pad:
            top, left = torch.randint(0, 2 * self.pad + 1, (2,), generator=generator).tolist()
            tensor = _pad_crop(tensor, self.pad, top, left)  # zeros = black, padded before normalising
        return self.erasing(_normalise(tensor, self.mean, self.std), generator)

    def __repr__(self) -> str:
        return (f"TrainTransform(input_size={self.input_size}, flip_probability={self.flip_probability}, "
                f"pad={self.pad}, erasing={self.erasing!r}, color_jitter={self.color_jitter}, mean={self.mean}, "
                f"std={self.std})")


class TestTransform:
    """Test-time transform: resize to ``input_size``, to tensor, normalise (deterministic)."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, data_config: Mapping):
        self.input_size, self.mean, self.std = _check_data_config(data_config)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        return _normalise(_to_tensor(_resize(image, self.input_size)), self.mean, self.std)

    def __repr__(self) -> str:
        return f"TestTransform(input_size={self.input_size}, mean={self.mean}, std={self.std})"


class ReidImageDataset(Dataset):
    """Records -> ``(img, pid, camid, img_path)`` with ``img`` the transformed (3, H, W) tensor.

    The default collate turns a batch into ``(imgs [B, 3, H, W], pids [B], camids [B], img_paths list[str])``.
    An unreadable image raises ``ValueError`` (missing: ``FileNotFoundError``) naming the file.
    The key may be an index, or an ``(index, sample_seed)`` pair (``PKSampler(yield_seeds=True)``): the random
    transform then draws from a generator seeded with ``sample_seed``, so the augmentation of every sample is a
    function of (seed, epoch, position) alone, whatever the number of workers, and a resumed run repeats it.
    """

    def __init__(self, records: Sequence[Record], transform):
        if len(records) == 0:
            raise ValueError("ReidImageDataset got no records: expected a non-empty list of Record")
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int, str]:
        generator = None
        if isinstance(key, tuple):
            key, sample_seed = key
            generator = torch.Generator().manual_seed(int(sample_seed))
        img_path, pid, camid = self.records[key]
        return self.transform(read_image(img_path), generator), pid, camid, img_path


class PKSampler(Sampler[int]):
    """PK identity sampler: batches of ``batch_p`` identities x ``batch_k`` images, as a flat index stream.

    Section 4: "We randomly sample 8 identities and 4 images per person in each training batch". Per epoch,
    every identity's images are shuffled and cut into chunks of ``batch_k``; the last chunk is topped up with
    other images of the same identity, and an identity with fewer than ``batch_k`` images is sampled with
    replacement, so an epoch shows every image about once. Each batch draws distinct identities with
    probability proportional to their remaining chunks (so identities run out together and few chunks are
    left over); the epoch has ``sum(chunks) // (batch_p * num_replicas)`` batches and the rare identities
    that must be topped up at the end get a fresh random chunk.

    DDP: all replicas draw the same global batches of ``batch_p * num_replicas`` distinct identities and rank
    ``r`` takes identities ``[r * batch_p, (r + 1) * batch_p)``, so ranks never share an identity in a step.
    Deterministic for ``(seed, epoch)``; call ``set_epoch(epoch)`` before each epoch (like
    ``DistributedSampler``). ``len()`` is the number of indices this rank yields per epoch (a multiple of
    ``batch_p * batch_k``). With ``yield_seeds=True`` it yields ``(index, sample_seed)`` pairs instead, the
    seeds drawn from a separate stream of ``(seed, epoch, rank)`` (see ``ReidImageDataset``).
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_p: int = 8,
        batch_k: int = 4,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        yield_seeds: bool = False,
    ):
        if batch_p < 1 or batch_k < 1:
            raise ValueError(f"batch_p={batch_p}, batch_k={batch_k}: expected both >= 1")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank}, num_replicas={num_replicas}: expected 0 <= rank < num_replicas")
        pid_array = np.asarray(pids)
        self.unique_pids, inverse = np.unique(pid_array, return_inverse=True)
        ids_per_step = batch_p * num_replicas
        if len(self.unique_pids) < ids_per_step:
            raise ValueError(
                f"PK sampling needs at least batch_p * num_replicas = {ids_per_step} identities, "
                f"the records have {len(self.unique_pids)}"
            )
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(self.unique_pids)))[:-1]
        self.indices_per_pid = np.split(order, bounds)  # dataset indices of each identity, ascending
        self.chunks_per_pid = np.array([max(1, math.ceil(len(ix) / batch_k)) for ix in self.indices_per_pid])
        self.batch_p, self.batch_k = batch_p, batch_k
        self.seed, self.epoch = int(seed), 0
        self.num_replicas, self.rank = num_replicas, rank
        self.yield_seeds = yield_seeds
        self.num_batches = int(self.chunks_per_pid.sum()) // ids_per_step

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches * self.batch_p * self.batch_k

    def _random_chunk(self, rng: np.random.Generator, indices: np.ndarray) -> np.ndarray:
        """``batch_k`` random images of one identity: each once, then repeats drawn with replacement."""
        chunk = rng.permutation(indices)[: self.batch_k]
        if len(chunk) < self.batch_k:
            chunk = np.concatenate([chunk, rng.choice(indices, size=self.batch_k - len(chunk), replace=True)])
        return chunk

    def _epoch_chunks(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        """Each identity's shuffled images cut into chunks of ``batch_k`` (the last one topped up)."""
        all_chunks = []
        for indices in self.indices_per_pid:
            if len(indices) < self.batch_k:
                all_chunks.append([self._random_chunk(rng, indices)])
                continue
            shuffled = rng.permutation(indices)
            chunks = [shuffled[i:i + self.batch_k] for i in range(0, len(shuffled), self.batch_k)]
            shortfall = self.batch_k - len(chunks[-1])
            if shortfall:
                others = shuffled[: len(shuffled) - len(chunks[-1])]
                chunks[-1] = np.concatenate([chunks[-1], rng.choice(others, size=shortfall, replace=False)])
            all_chunks.append(chunks)
        return all_chunks

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        seed_rng = np.random.default_rng([self.seed, self.epoch, self.rank, 1])
        chunks = self._epoch_chunks(rng)
        remaining = np.array([len(c) for c in chunks])
        ids_per_step = self.batch_p * self.num_replicas
        for _ in range(self.num_batches):
            available = np.flatnonzero(remaining)
            if len(available) >= ids_per_step:
                weights = remaining / remaining.sum()
                chosen = rng.choice(len(remaining), size=ids_per_step, replace=False, p=weights)
            else:  # the end of the epoch: top up with exhausted identities
                exhausted = np.flatnonzero(remaining == 0)
                extra = rng.choice(exhausted, size=ids_per_step - len(available), replace=False)
                chosen = rng.permutation(np.concatenate([available, extra]))
            batch = []
            for pid_index in chosen:
                if remaining[pid_index]:
                    remaining[pid_index] -= 1
                    batch.append(chunks[pid_index][remaining[pid_index]])
                else:
                    batch.append(self._random_chunk(rng, self.indices_per_pid[pid_index]))
            indices = np.concatenate(batch[self.rank * self.batch_p:(self.rank + 1) * self.batch_p]).tolist()
            if self.yield_seeds:
                yield from zip(indices, seed_rng.integers(0, 2**63 - 1, size=len(indices)).tolist())
            else:
                yield from indices


def _seed_for(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def build_train_loader(
    records: Sequence[Record],
    data_config: Mapping,
    batch_p: int = 8,
    batch_k: int = 4,
    num_workers: int = 2,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    erasing: RandomErasing | None = None,
    pad: int = 10,
    color_jitter: float = 0.0,
) -> DataLoader:
    """PK-sampled, augmented training batches of ``batch_p * batch_k`` images (Section 4).

    Yields ``(imgs, pids, camids, img_paths)``. Call ``loader.sampler.set_epoch(epoch)`` before each epoch.
    ``records`` should carry training pids (``dataset.train``); ``erasing`` defaults to the paper's setting;
    ``pad``: zero-padding before the random crop; ``color_jitter``: its probability (``TrainTransform``).
    """
    sampler = PKSampler([r.pid for r in records], batch_p, batch_k, seed, num_replicas, rank, yield_seeds=True)
    dataset = ReidImageDataset(records, TrainTransform(data_config, erasing=erasing, pad=pad,
                                                     color_jitter=color_jitter))
    return DataLoader(
        dataset,
        batch_size=batch_p * batch_k,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        # Augmentation draws from per-sample seeds (yield_seeds above); this only fixes the workers' own RNG.
        generator=torch.Generator().manual_seed(_seed_for(seed, rank)),
    )


def build_test_loader(
    records: Sequence[Record], data_config: Mapping, batch_size: int = 128, num_workers: int = 2
) -> DataLoader:
    """Batches of ``(imgs, pids, camids, img_paths)`` in record order, test transform, nothing dropped."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected >= 1")
    return DataLoader(
        ReidImageDataset(records, TestTransform(data_config)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
