"""Input pipeline throughput: decoded + augmented images per second (Section 3.1 / 4 training transforms).

Writes a Market1501-like folder of random-content JPEGs (smooth colour blobs plus noise, quality 90) at each
source size into a temporary directory, reads it back with ``load_dataset`` and times

* ``decode``: ``read_image`` alone, one process;
* ``train_loader``: ``build_train_loader`` (PK 8x4, resize 160x64, flip, pad + crop, normalise, erasing);
* ``test_loader``: ``build_test_loader`` (resize, normalise), batch 128;

with 0 and 2 worker processes, and ``pk_sampler_epoch``: one epoch of ``PKSampler`` indices over a
Market + Duke + MSMT17-sized id list (2,500 ids, 2-59 images each). Prints one JSON object per line. The first batch (worker start-up) is timed
separately as ``startup_s``.

    python benchmarks/bench_loader.py [--images 1024] [--batches 40] [--sizes 128x64,256x128] [--workers 0,2]
"""

import argparse
import io
import json
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from robustreid.datasets import load_dataset, read_image
from robustreid.loaders import PKSampler, build_test_loader, build_train_loader

DATA_CONFIG = {"input_size": (160, 64), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def _jpeg(height: int, width: int, rng: np.random.Generator) -> bytes:
    blobs = Image.fromarray((rng.random((8, 4, 3)) * 255).astype(np.uint8)).resize((width, height),
                                                                                  Image.Resampling.BICUBIC)
    pixels = np.asarray(blobs, dtype=np.float32) + rng.normal(0, 12, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_market_like(root: str, num_images: int, height: int, width: int, seed: int = 0) -> None:
    """``num_images`` training images (8 per identity, 6 cameras) plus a small query / gallery."""
    rng = np.random.default_rng(seed)
    splits = {"bounding_box_train": num_images, "query": 8, "bounding_box_test": 16}
    for split, count in splits.items():
        os.makedirs(os.path.join(root, split))
        for i in range(count):
            pid, cam = i // 8 + 1, i % 6 + 1
            name = f"{pid:04d}_c{cam}s1_{i:06d}_01.jpg"
            with open(os.path.join(root, split, name), "wb") as f:
                f.write(_jpeg(height, width, rng))


def time_loader(loader, num_batches: int) -> tuple[float, float, int]:
    """(startup seconds for the first batch, seconds for the next ``num_batches``, images in them)."""
    epoch, images = 0, 0
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    done = 0
    while done < num_batches:
        for batch in iterator:
            images += batch[0].shape[0]
            done += 1
            if done == num_batches:
                break
        else:
            epoch += 1
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            iterator = iter(loader)
    return startup, time.perf_counter() - start, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="training images per source size")
    parser.add_argument("--batches", type=int, default=40, help="timed batches per configuration")
    parser.add_argument("--sizes", default="128x64,256x128", help="source JPEG sizes HxW, comma-separated")
    parser.add_argument("--workers", default="0,2", help="num_workers values, comma-separated")
    args = parser.parse_args()
    common = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    counts = np.random.default_rng(0).integers(2, 60, size=2500)
    sampler = PKSampler(np.repeat(np.arange(len(counts)), counts))
    start = time.perf_counter()
    num_indices = len(list(sampler))
    print(json.dumps({"bench": "pk_sampler_epoch", "num_ids": len(counts), "images": int(counts.sum()),
                      "indices": num_indices, "seconds": round(time.perf_counter() - start, 3), **common}),
          flush=True)
    for size in args.sizes.split(","):
        height, width = (int(v) for v in size.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            write_market_like(tmp, args.images, height, width)
            dataset = load_dataset("market1501", tmp)
            paths = [r.img_path for r in dataset.train]
            start = time.perf_counter()
            for path in paths:
                read_image(path)
            seconds = time.perf_counter() - start
            print(json.dumps({"bench": "decode", "src_size": [height, width], "num_workers": 0,
                              "images": len(paths), "seconds": round(seconds, 3),
                              "images_per_s": round(len(paths) / seconds, 1), **common}), flush=True)
            for num_workers in (int(v) for v in args.workers.split(",")):
                loaders = {
                    "train_loader": build_train_loader(dataset.train, DATA_CONFIG, num_workers=num_workers),
                    "test_loader": build_test_loader(dataset.train, DATA_CONFIG, batch_size=128,
                                                     num_workers=num_workers),
                }
                for bench, loader in loaders.items():
                    num_batches = args.batches if bench == "train_loader" else max(1, args.batches // 4)
                    startup, seconds, images = time_loader(loader, num_batches)
                    print(json.dumps({
                        "bench": bench, "src_size": [height, width], "num_workers": num_workers,
                        "batch_size": loader.batch_size, "batches": num_batches, "images": images,
                        "startup_s": round(startup, 3), "seconds": round(seconds, 3),
                        "images_per_s": round(images / seconds, 1), **common,
                    }), flush=True)
                    del loader
                del loaders


if __name__ == "__main__":
    main()
