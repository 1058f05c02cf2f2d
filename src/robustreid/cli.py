"""The ``robustreid`` command: argparse subcommands, each a thin call into the library.

Errors the user can fix (a wrong name, path or value) are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    """Raised by a subcommand for input the user can fix; printed as one line, exit status 2."""


def _writable_parent(path: Path, flag: str) -> None:
    parent = path.parent
    while not parent.exists():  # the folders that will be created
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {parent} (permission denied)")


def check_output_file(path, flag: str) -> None:
    """Before any work: ``path`` can be written as a file (it is not a folder, its folder can be made)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; expected a file name")
    _writable_parent(path, flag)


def check_output_dir(path, flag: str) -> None:
    """Before any work: ``path`` can be used as an output folder (it is not a file, it can be made)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file; expected a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path}: cannot write in it (permission denied)")
        return
    _writable_parent(path, flag)


def _cmd_profile(args: argparse.Namespace) -> int:
    from .model import build_model
    from .profile import profile_model

    model = build_model(args.model, args.num_classes)
    stats = {"model": args.model, **profile_model(model)}
    if args.json:
        print(json.dumps(stats))
    else:
        h, w = stats["input_size"]
        print(f"model                  {stats['model']}")
        print(f"params                 {stats['params'] / 1e6:.3f}M (without identity classifiers)")
        print(f"params_with_classifier {stats['params_with_classifier'] / 1e6:.3f}M ({args.num_classes} ids)")
        print(f"gmacs                  {stats['gmacs']:.3f} (multiply-accumulates at {h}x{w})")
        print(f"input_size             {h}x{w}")
        print(f"feature_dim            {stats['feature_dim']}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import write_market1501

    check_output_dir(args.out, "out")
    def progress(done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            sys.stderr.write(f"\rsynth: {done}/{total} images")
            sys.stderr.flush()

    manifest = write_market1501(
        args.out, ids_train=args.ids_train, ids_test=args.ids_test, cameras=args.cameras, seed=args.seed,
        progress=progress,
    )
    sys.stderr.write("\n")
    print(json.dumps(manifest.get("counts", manifest)))
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from .datasets import check_images, load_dataset

    dataset = load_dataset(args.name, args.root)
    print(dataset.stats_table())
    bad = check_images(dataset)
    for img_path, error in bad:
        print(f"unreadable: {img_path}: {error}")
    total = len(dataset.train) + len(dataset.query) + len(dataset.gallery)
    print(f"{total - len(bad)} of {total} images readable")
    return 1 if bad else 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    from .config import config_to_dict

    print(json.dumps(config_to_dict(_resolve_config(args)), indent=2))
    return 0


def _resolve_config(args: argparse.Namespace):
    from .config import build_config

    return build_config(args.preset, getattr(args, "config", None), getattr(args, "epochs", None),
                        getattr(args, "set", None) or [], getattr(args, "amp", False))


# What a training run writes into its folder (train.fit): removed by --overwrite before a fresh start.
_RUN_FILES = ("last.pt", "best.pt", "swa.pt", "metrics.jsonl", "summary.json", "dataset.json")


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    import shutil

    from .atomicfile import write_text
    from .checkpoint import load_checkpoint
    from .device import resolve_device
    from .train import TrainingDiverged, check_inputs, config_from_checkpoint, fit, pretrained_state

    # Every check comes before the first byte is written (or an old run removed by --overwrite). Under torchrun
    # only rank 0 checks and prepares the folder (the other ranks would see its dataset.json).
    first_rank = int(os.environ.get("RANK", "0")) == 0
    if args.resume and args.init:
        raise UsageError(f"--init starts a new run from other weights, --resume continues {args.resume} from its "
                         "last.pt: pass one of them")
    resolve_device(args.device)  # a device this machine does not have, or no device at all
    if args.resume:
        changed = [flag for flag, value in (("--preset", args.preset), ("--config", args.config), ("--set", args.set),
                                            ("--epochs", args.epochs), ("--amp", args.amp), ("--out", args.out),
                                            ("--overwrite", args.overwrite)) if value]
        if changed:
            raise UsageError(f"--resume continues {args.resume} with the config stored in its last.pt; "
                             f"{', '.join(changed)} cannot change it (start a new run with --out)")
        out = Path(args.resume)
        state = load_checkpoint(out / "last.pt")
        cfg = config_from_checkpoint(state)
    else:
        if not (args.preset and args.dataset and args.root and args.out):
            raise UsageError("train needs --preset, --dataset, --root and --out (or --resume RUN)")
        out = Path(args.out)
        check_output_dir(out, "--out")
        existing = [name for name in _RUN_FILES if name != "dataset.json" and (out / name).exists()] if first_rank else []
        if existing and not args.overwrite:
            raise UsageError(f"{out} already holds a run ({', '.join(existing)}); continue it with --resume {out}, "
                             f"or pass --overwrite to start over")
        cfg = _resolve_config(args)
        if args.init:
            cfg = dataclasses.replace(cfg, init=_init_source(args.init))
        state = None
    # a wrong --init stops here, nothing written
    label = f"--init {cfg.init}" if cfg.init else None
    pretrained = None if args.resume else pretrained_state(cfg, label=label)
    if first_rank:
        _warn_emulated_amp(cfg, args.device)
    dataset_spec = _dataset_spec(args, out)
    dataset = _load_dataset(dataset_spec)
    if state is not None and dataset.num_train_pids != state["num_classes"]:
        raise UsageError(f"{out / 'last.pt'} was trained on {state['num_classes']} identities, the dataset "
                         f"{dataset_spec['name']} at {dataset_spec['root']} has {dataset.num_train_pids}")
    print(dataset.stats_table(), file=sys.stderr)
    check_inputs(cfg, dataset, log=print if first_rank else None)  # unreadable images, no evaluable query
    if first_rank:
        if not args.resume:
            for name in _RUN_FILES:  # --overwrite: a fresh run, nothing appended to the old one
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "tensorboard", ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "dataset.json", json.dumps(dataset_spec))
    try:
        summary = fit(cfg, dataset, out, resume=bool(args.resume), device=args.device, pretrained=pretrained,
                      check_images=False)  # checked above
    except TrainingDiverged as exc:  # not the user's input: the run failed (status 1); last.pt is the last good one
        print(f"robustreid train: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "versions")}))
    return 0


def _init_source(init: str) -> str:
    """What ``--init`` records in the run's config: ``zoo:NAME`` as given, a checkpoint file as an absolute path
    (the run folder may be read from elsewhere)."""
    from .zoo import is_zoo_name

    return init if is_zoo_name(init) else str(Path(init).resolve())


AMP_EMULATED = ("--amp: this CPU has no native bfloat16 (no AVX-512 BF16 / AMX): autocast emulates it, ~10x slower "
                "than float32 here; drop --amp")


def _warn_emulated_amp(cfg, device: str | None) -> None:
    """One line on stderr when ``--amp`` would train in emulated bfloat16 (the run goes on: the user decides)."""
    from . import amp
    from .device import resolve_device

    dev = resolve_device(device)
    if cfg.amp and dev.type == "cpu" and not amp.native_bf16(dev):
        print(f"robustreid train: warning: {AMP_EMULATED}", file=sys.stderr)


def _load_dataset(spec: dict):
    from .datasets import dataset_from_spec

    return dataset_from_spec(spec)


def _dataset_spec(args: argparse.Namespace, out: Path) -> dict:
    if args.dataset and args.root:
        roots = ",".join(str(Path(r).resolve()) for r in args.root.split(","))
        return {"name": args.dataset, "root": roots}
    saved = out / "dataset.json"
    if not saved.is_file():
        raise UsageError(f"{saved} is missing: pass --dataset and --root")
    return json.loads(saved.read_text())


def _cmd_swag(args: argparse.Namespace) -> int:
    from .atomicfile import write_text
    from .checkpoint import load_checkpoint
    from .config import apply_overrides, parse_set, swag_stage_config
    from .swag import check_swag_stage
    from .train import TrainingDiverged, config_from_checkpoint, fit

    # Every check comes before the first byte is written (check_swag_stage: --out, --device, the dataset).
    source = Path(args.from_run)
    state = load_checkpoint(source / "last.pt")
    cfg = config_from_checkpoint(state)
    if state["epoch"] < cfg.schedule.epochs:
        raise UsageError(f"{source} stopped at epoch {state['epoch']} of {cfg.schedule.epochs}: finish it first")
    cfg = apply_overrides(swag_stage_config(cfg, args.cycles, args.cycle_epochs), parse_set(args.set or []))
    out = Path(args.out)
    check_output_dir(out, "--out")
    spec = _dataset_spec(args, source)
    dataset = _load_dataset(spec)
    resume = check_swag_stage(cfg, state, dataset, source, out, args.device)
    _warn_emulated_amp(cfg, args.device)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "dataset.json", json.dumps(spec))
    try:
        summary = fit(cfg, dataset, out, resume=resume, init_checkpoint=None if resume else state,
                      device=args.device, check_images=False)  # checked above
    except TrainingDiverged as exc:  # not the user's input: the run failed (status 1), as in train
        print(f"robustreid swag: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "versions")}))
    return 0


def progress_line(label: str, unit: str = "images", stream=None):
    """A ``progress(done, total)`` callback printing ``label: done/total unit, rate, ETA`` on stderr: redrawn in
    place on a terminal, one line per tenth of the work in a log file; a newline when the work is done."""
    start = time.perf_counter()
    shown = [0]

    def progress(done: int, total: int) -> None:
        out = stream or sys.stderr
        elapsed = time.perf_counter() - start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        line = f"{label}: {done}/{total} {unit}, {rate:.1f} {unit}/s, ETA {eta:.0f}s"
        if out.isatty():
            out.write("\r" + line + ("\n" if done >= total else ""))
        elif done >= total or done * 10 // max(total, 1) > shown[0]:
            shown[0] = done * 10 // max(total, 1)
            out.write(line + "\n")
        out.flush()

    return progress


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_metrics, metrics_summary

    if args.report:
        check_output_dir(args.report, "--report")
    dataset = _load_dataset({"name": args.dataset, "root": args.root})
    result = evaluate(args.checkpoint, dataset, metric=args.metric, batch_size=args.batch_size,
                      num_workers=args.num_workers, device=args.device, amp=args.amp, backend=args.backend,
                      precision="bf16" if args.amp else args.precision, progress=progress_line("eval"))
    if args.report:
        from .atomicfile import remove_stale_temp_files
        from .report import write_report

        remove_stale_temp_files(args.report)  # what a killed report writer left in the folder
        index = write_report(args.report, result, dataset, title=f"{_model_label(args.checkpoint)} on {dataset.name}")
        print(f"report: {index}", file=sys.stderr)
    print(json.dumps(metrics_summary(result)) if args.json else format_metrics(result))
    return 0


def _model_label(checkpoint: str) -> str:
    """A checkpoint's name for a title: ``zoo:NAME`` as given, a file by its name."""
    from .zoo import is_zoo_name

    return checkpoint if is_zoo_name(checkpoint) else Path(checkpoint).name


def _cmd_robustness(args: argparse.Namespace) -> int:
    from .robustness import FAMILIES, ColourHistogramFeatures, format_summary, run_robustness

    check_output_dir(args.out, "--out")
    corruptions = None
    if args.corruptions:  # corruption or family names, e.g. --corruptions noise low_resolution
        corruptions = list(dict.fromkeys(n for name in args.corruptions for n in FAMILIES.get(name, [name])))
    dataset = _load_dataset({"name": args.dataset, "root": args.root})
    result = run_robustness(None if args.histogram else args.checkpoint, dataset, args.out,
                            corruptions=corruptions, severities=args.severities, setting=args.setting,
                            backend=args.backend, precision=args.precision, device=args.device,
                            batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
                            metric=args.metric, progress=progress_line("robustness"),
                            features_fn=ColourHistogramFeatures() if args.histogram else None)
    print(f"report: {result['report']} ({result['cells_run']} cells run in {result['seconds'] / 60:.1f} min)",
          file=sys.stderr)
    summary = result["summary"]
    if args.json:
        families = {name: {"mean": f["mean"], "relative": f["relative"]} for name, f in summary["families"].items()}
        print(json.dumps({"clean": summary["clean"], "mean": summary["mean"], "relative": summary["relative"],
                          "families": families, "report": result["report"], "cells_run": result["cells_run"]}))
    else:
        print(format_summary(summary))
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from .evaluate import extract_to_npz

    check_output_file(args.out, "--out")
    info = extract_to_npz(args.checkpoint, args.inputs, args.out, batch_size=args.batch_size,
                          num_workers=args.num_workers, device=args.device, backend=args.backend,
                          precision=args.precision, progress=progress_line("extract"))
    print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in info.items()}))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx, export_openvino, onnx_parity, quantize_onnx

    suffix = {"onnx": ".onnx", "openvino": ".xml"}[args.format]
    if Path(args.out).suffix != suffix:
        raise UsageError(f"--out {args.out}: expected a file name ending in {suffix} for --format {args.format}")
    if args.int8 is not None and args.format != "onnx":
        raise UsageError("--int8 writes an onnxruntime-quantized .onnx: use it with --format onnx (the openvino "
                         "backend can run that file too)")
    if args.int8 is not None and Path(args.int8).suffix != ".onnx":
        raise UsageError(f"--int8 {args.int8}: expected a file name ending in .onnx")
    for flag, path in (("--out", args.out), ("--int8", args.int8)):
        if path is not None:
            check_output_file(path, flag)
    if args.int8 and Path(args.int8).resolve() == Path(args.out).resolve():
        raise UsageError("--int8 and --out name the same file: the int8 model would replace the fp32 one")
    if args.int8 and not args.dataset:
        raise UsageError("--int8 needs --dataset and --root: its activation ranges are calibrated on the "
                         "dataset's training images")
    if bool(args.dataset) != bool(args.root):
        raise UsageError("pass --dataset and --root together")
    dataset = _load_dataset({"name": args.dataset, "root": args.root}) if args.dataset else None
    check_images = [r.img_path for r in dataset.train[:: max(1, len(dataset.train) // 8)][:8]] if dataset else None
    export_fn = export_openvino if args.format == "openvino" else export_onnx
    try:
        result = {"export": export_fn(args.checkpoint, args.out, opset=args.opset,
                                      dynamic_batch=not args.fixed_batch, check_images=check_images)}
        print(f"exported {args.out}: max abs difference to PyTorch "
              f"{max(result['export']['parity']['max_abs_diff'].values()):.2e}", file=sys.stderr)
        if dataset is not None:
            runtime = "OpenVINO" if args.format == "openvino" else "onnxruntime"
            print(f"ranking {dataset.name} query/gallery with PyTorch and {runtime} ...", file=sys.stderr)
            result["rankings"] = onnx_parity(args.checkpoint, args.out, dataset, topk=10)
            if args.int8:
                result["int8"] = quantize_onnx(args.out, args.int8, [r.img_path for r in dataset.train])
                print(f"ranking {dataset.name} with the int8 model ...", file=sys.stderr)
                result["int8_rankings"] = onnx_parity(args.out, args.int8, dataset, topk=10)
    except ImportError as exc:  # the optional onnx / onnxruntime / openvino packages
        raise UsageError(_one_line(exc)) from None
    except RuntimeError as exc:  # a failed parity check (nothing written), an onnxruntime failure
        print(f"robustreid export: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    check_output_dir(args.out, "--out")
    if args.epochs is not None and not args.from_scratch:
        raise UsageError("--epochs sets the length of a run from scratch: use it with --from-scratch (the demo "
                         "otherwise starts from shipped weights; --finetune-steps sets their fine-tuning)")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs}: expected an integer >= 1")
    if args.finetune_steps is not None and args.finetune_steps < 0:
        raise UsageError(f"--finetune-steps {args.finetune_steps}: expected an integer >= 0")
    # only what was given: run_demo's own defaults hold otherwise (amp: None picks bf16 where it is native)
    given = {"checkpoint": args.checkpoint, "baseline": args.baseline, "finetune_steps": args.finetune_steps,
             "epochs": args.epochs, "device": args.device}
    kwargs = {k: v for k, v in given.items() if v is not None}
    if args.from_scratch:
        kwargs["from_scratch"] = True
    if args.no_tracking:
        kwargs["tracking"] = False
    run_demo(args.out, seed=args.seed, amp=args.amp, **kwargs)
    return 0


def _cmd_zoo_list(args: argparse.Namespace) -> int:
    from .zoo import ENV_VAR, ZOO_DIR, list_zoo

    cards = list_zoo()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print(f"no models are shipped in {os.environ.get(ENV_VAR) or ZOO_DIR} (no model cards *.json there)")
        return 0
    rows = [("name", "architecture", "params", "size", "rank-1", "mAP", "evaluated on")]
    for card in cards:
        figures = _headline(card)
        rows.append((str(card["name"]), str(card["arch_name"]), f"{card['num_params'] / 1e6:.2f}M",
                     f"{card['size_bytes'] / 1e6:.1f} MB",
                     *((f"{figures[0]:.1f}", f"{figures[1]:.1f}", figures[2]) if figures else ("-", "-", "-"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _headline(card: dict) -> tuple[float, float, str] | None:
    """``(rank1, mAP, where)`` of a card's ``evaluation`` entry, None without figures. The entry is one result
    (``rank1``, ``mAP``, optional ``dataset``) or results by evaluation set: the one named by its ``headline``
    key, else the first (in key order) that has both figures."""

    def figures(entry, where: str):
        try:
            return float(entry["rank1"]), float(entry["mAP"]), str(entry.get("dataset", where))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    evaluation = card.get("evaluation")
    if not isinstance(evaluation, dict):
        return None
    if "rank1" in evaluation:
        return figures(evaluation, "-")
    named = evaluation.get("headline")
    if isinstance(named, str) and named in evaluation:
        return figures(evaluation[named], named)
    return next((f for key, entry in evaluation.items() if (f := figures(entry, key))), None)


def _cmd_zoo_show(args: argparse.Namespace) -> int:
    from .zoo import card_json, load_card

    print(card_json(load_card(args.name)), end="")
    return 0


def _cmd_synth_scene(args: argparse.Namespace) -> int:
    from .tracking.scene import write_scene

    check_output_dir(args.out, "out")
    manifest = write_scene(args.out, mode=args.mode, cameras=args.cameras, frames=args.frames, people=args.people,
                           seed=args.seed)
    print(json.dumps({k: v for k, v in manifest.items() if k != "sequences"}, default=str))
    return 0


def _cmd_track(args: argparse.Namespace) -> int:
    from .tracking.run import track_sequence
    from .tracking.tracker import TrackerConfig

    check_output_file(args.out, "--out")
    if args.reid_refresh < 1:
        raise UsageError(f"--reid-refresh {args.reid_refresh}: expected an integer >= 1")
    if args.no_reid and args.reid_refresh != 1:
        raise UsageError(f"--reid-refresh {args.reid_refresh} with --no-reid: there is no ReID model to refresh")
    config = TrackerConfig(use_reid=not args.no_reid, reid_refresh=args.reid_refresh)
    extractor = None
    if not args.no_reid:
        if not args.checkpoint:
            raise UsageError("track needs --checkpoint CKPT (a checkpoint or a shipped zoo:NAME), or --no-reid for "
                             "the motion-only tracker")
        from .evaluate import FeatureExtractor

        extractor = FeatureExtractor(args.checkpoint, device=args.device, backend=args.backend,
                                     precision=args.precision)

    def progress(frame: int, frames: int) -> None:
        if frame == frames or frame % 25 == 0:
            sys.stderr.write(f"\rtrack: frame {frame}/{frames}")
            sys.stderr.flush()

    info = track_sequence(args.seq_dir, args.out, extractor, config=config, progress=progress)
    sys.stderr.write(f"\n{info['fps']} frames/s\n")
    print(json.dumps(info))
    return 0


def _cmd_track_eval(args: argparse.Namespace) -> int:
    from .tracking.run import evaluate_tracking

    metrics = evaluate_tracking(args.gt, args.results)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key in ("mota", "idf1", "hota", "idsw"):
            value = metrics[key]
            print(f"{key.upper():<5} {value if key == 'idsw' else f'{100 * value:.1f}'}")
    return 0


# ------------------------------------------------------------------------------------- person search
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "ROBUSTREID_SEARCH_TOKEN"


def _index_sources(args: argparse.Namespace, embed) -> list:
    """Tracklets of ``--sequences`` (through the tracker) or ``--crops``, embedded; nothing written yet."""
    from .search.build import crop_tracklets, expand_sequences, sequence_tracklets

    if args.crops:
        return crop_tracklets(args.crops, embed, progress=progress_line(f"index {args.crops}"))
    sources = []
    for camera, folder in expand_sequences(args.sequences):  # every folder checked before the first frame
        sources.append(sequence_tracklets(folder, camera, embed,
                                          progress=progress_line(f"index {camera}", unit="frames")))
        print(f"index {camera}: {len(sources[-1].tracklets)} tracklets", file=sys.stderr)
    return sources


def _cmd_index_build(args: argparse.Namespace) -> int:
    from .search.build import expand_sequences
    from .search.embedding import HISTOGRAM, load_embedder
    from .search.index import build_index, is_index

    out = Path(args.out)
    if is_index(out):
        raise UsageError(f"{out} already holds an index; add cameras with `robustreid index add {out} ...`")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} is not an empty folder; expected a new folder for the index")
    check_output_dir(out, "OUT")
    if args.sequences:
        expand_sequences(args.sequences)
    elif not Path(args.crops).is_dir():
        raise UsageError(f"--crops {args.crops}: no such folder")
    embed = load_embedder(HISTOGRAM if args.histogram else args.checkpoint, device=args.device)
    sources = _index_sources(args, embed)
    index = build_index(out, sources, checkpoint=embed.name, dim=embed.dim, store=args.store,
                        model_sha256=embed.model_sha256)
    print(json.dumps(_index_summary(index.info())))
    return 0


def _cmd_index_add(args: argparse.Namespace) -> int:
    from .search.build import expand_sequences
    from .search.embedding import check_matches, load_embedder
    from .search.index import open_index

    index = open_index(args.out)
    known = index.source_paths()
    if args.sequences:  # what is indexed already is refused before any frame is tracked
        for _, folder in expand_sequences(args.sequences):
            if str(folder.resolve()) in known:
                raise UsageError(f"{folder}: already in the index {args.out}")
    elif not Path(args.crops).is_dir():
        raise UsageError(f"--crops {args.crops}: no such folder")
    elif any(p.startswith(f"{Path(args.crops).resolve()}#") for p in known):
        raise UsageError(f"--crops {args.crops}: already in the index {args.out}")
    embed = load_embedder(index.meta["checkpoint"], device=args.device)
    check_matches(embed, index.meta, args.out)
    sources = _index_sources(args, embed)
    result = index.add(sources)
    print(f"index add: {result['tracklets']} tracklets from {result['sources']} sources", file=sys.stderr)
    print(json.dumps(_index_summary(index.info())))
    return 0


def _index_summary(info: dict) -> dict:
    return {**{k: v for k, v in info.items() if k != "cameras"},
            "cameras": {c["name"]: c["tracklets"] for c in info["cameras"]}}


def _cmd_index_info(args: argparse.Namespace) -> int:
    from .search.index import open_index

    info = open_index(args.out).info()
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"index      {info['folder']}")
    print(f"model      {info['checkpoint']} ({info['dim']}-d descriptors, {info['store']} store)")
    print(f"tracklets  {info['tracklets']} from {info['sources']} sources")
    for c in info["cameras"]:
        span = (f"{c['first_time']:.1f}-{c['last_time']:.1f} s" if c["first_time"] is not None
                else f"frames {c['first_frame']}-{c['last_frame']}")
        print(f"  {c['name']:<12} {c['tracklets']:>7} tracklets  {span}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .search.embedding import check_matches, load_embedder
    from .search.index import open_index
    from .search.query import check_k, decode_image, search_image

    k = check_k(args.k)
    index = open_index(args.index)
    image = decode_image(Path(args.query).read_bytes(), name=args.query)
    embed = load_embedder(index.meta["checkpoint"], device=args.device)
    check_matches(embed, index.meta, args.index)
    hits = search_image(index, embed, image, k)
    if args.json:
        print(json.dumps({"query": args.query, "k": k, "hits": [h.as_dict() for h in hits]}))
        return 0
    print(f"{'rank':>4}  {'tracklet':>8}  {'camera':<10} {'frames':<13} {'time (s)':<15} distance")
    for rank, h in enumerate(hits, 1):
        times = f"{h.first_time:.1f}-{h.last_time:.1f}" if h.first_time is not None else "-"
        print(f"{rank:>4}  {h.tracklet_id:>8}  {h.camera:<10} {f'{h.first_frame}-{h.last_frame}':<13} "
              f"{times:<15} {h.distance:.4f}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .search.index import open_index

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.host not in _LOOPBACK and not token:
        raise UsageError(f"--host {args.host}: serving beyond this machine needs --token T (or {TOKEN_ENV}); "
                         "every API call must then carry it")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0..65535")
    open_index(args.index)  # a missing index: one line, before the web packages load
    import uvicorn

    from .search.service import create_app

    app = create_app(args.index, token=token, device=args.device)
    print(f"serving {args.index} on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="robustreid", description="Robust-ReID: person re-identification networks, training and tracking."
    )
    parser.add_argument("--version", action="version", version=f"robustreid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_commands(sub)
    _add_training_commands(sub)
    _add_inference_commands(sub)
    _add_application_commands(sub)
    _add_search_commands(sub)
    return parser


def _add_data_commands(sub) -> None:
    """``profile``, ``synth``, ``data check``, ``config show``: models, datasets and recipes."""
    from .config import list_presets
    from .model import list_models

    p = sub.add_parser("profile", help="parameters, GMACs and feature size of a model (paper Table 1)")
    p.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--num-classes", type=int, default=751, help="identity classes for params_with_classifier "
                   "(default 751, Market1501's training ids)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("synth", help="write a synthetic person dataset in the Market1501 layout")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--ids-train", type=int, default=120)
    p.add_argument("--ids-test", type=int, default=100)
    p.add_argument("--cameras", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    q = data_sub.add_parser("check", help="open every image of a dataset and report unreadable ones")
    q.add_argument("name", metavar="NAME", help="market1501, dukemtmcreid or msmt17")
    q.add_argument("root", metavar="ROOT")
    q.set_defaults(func=_cmd_data_check)

    p = sub.add_parser("config", help="training configurations")
    cfg_sub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    q = cfg_sub.add_parser("show", help="print the fully resolved config of a preset as JSON")
    q.add_argument("preset", metavar="PRESET", help=f"one of: {', '.join(list_presets())}")
    _add_override_args(q)
    q.set_defaults(func=_cmd_config_show)


def _add_training_commands(sub) -> None:
    """``train`` and ``swag``: the recipe (Section 4) and the SWAG stage (Section 3.1)."""
    from .config import list_presets

    p = sub.add_parser("train", help="train a model with a preset of the paper's recipe")
    p.add_argument("--preset", help=f"one of: {', '.join(list_presets())}")
    p.add_argument("--dataset", help="market1501, dukemtmcreid or msmt17 (comma-separated for a union)")
    p.add_argument("--root", help="dataset folder (comma-separated, one per dataset, for a union)")
    p.add_argument("--out", help="run folder (checkpoints, metrics.jsonl, summary.json)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last.pt")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out folder that holds a run")
    p.add_argument("--init", metavar="CKPT_OR_ZOO", help="start from these weights (a checkpoint .pt or a shipped "
                   "zoo:NAME) instead of a fresh init: every weight but the identity classifiers, which are new "
                   "for this dataset; epoch 0 of the preset's schedule. The architecture must be the preset's")
    p.add_argument("--device", default=None, help=_DEVICE_HELP)
    _add_override_args(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("swag", help="run the SWAG stage (Section 3.1) on a finished run")
    p.add_argument("--from", dest="from_run", required=True, metavar="RUN")
    p.add_argument("--out", required=True, metavar="RUN2")
    p.add_argument("--cycles", type=int, default=None, help="SWAG cycles (default: the run's, or 15)")
    p.add_argument("--cycle-epochs", type=int, default=None, help="epochs per cycle (default: the run's)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--root", default=None)
    p.add_argument("--device", default=None, help=_DEVICE_HELP)
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_swag)


def _add_inference_commands(sub) -> None:
    """``eval``, ``extract``, ``export``: a trained model's scores, descriptors and deployment."""
    p = sub.add_parser("eval", help="rank-1/5/10, mAP and mINP of a checkpoint on a dataset's query/gallery")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help=_MODEL_HELP)
    p.add_argument("--dataset", required=True, help="market1501, dukemtmcreid or msmt17 (comma-separated: union)")
    p.add_argument("--root", required=True)
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", metavar="DIR", help="write an HTML report (CMC curve, ranked lists) here")
    p.add_argument("--amp", action="store_true", help="run the network under autocast (bfloat16 on CPU); "
                   "the same as --precision bf16")
    _add_runtime_args(p)
    _add_backend_args(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("robustness", help="rank-1 / mAP / mINP under the 20 corruptions of CIL-ReID (ImageNet-C "
                       "style) and low resolution, at 5 severities; report.md, severity.png, contact_sheet.png")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="CKPT", help=_MODEL_HELP)
    source.add_argument("--histogram", action="store_true", help="the colour-histogram baseline instead of a model")
    p.add_argument("--dataset", required=True, help="market1501, dukemtmcreid or msmt17 (comma-separated: union)")
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="cells.jsonl, summary.json, report.md and figures; "
                   "run again on the same DIR, a killed run skips the cells it has")
    p.add_argument("--setting", choices=["query", "gallery", "both"], default="query",
                   help="the corrupted side (default query: corrupted queries against the clean gallery)")
    p.add_argument("--corruptions", nargs="+", metavar="NAME", help="corruptions or families (noise, blur, weather, "
                   "digital, low_resolution); default: all 21")
    p.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5], metavar="S",
                   help="severities from 1 to 5 (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions (default 0)")
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_runtime_args(p)
    _add_backend_args(p)
    p.set_defaults(func=_cmd_robustness)

    p = sub.add_parser("extract", help="descriptors of images (files or folders) into a .npz (features, paths)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help=_MODEL_HELP)
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_DIR")
    p.add_argument("--out", required=True, metavar="FEATS.npz")
    _add_runtime_args(p)
    _add_backend_args(p)
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("zoo", help="the shipped trained models (load one by name: --checkpoint zoo:NAME)")
    zoo_sub = p.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND", required=True)
    q = zoo_sub.add_parser("list", help="name, architecture, parameters, size and headline figures of each model")
    q.add_argument("--json", action="store_true", help="print the model cards as JSON")
    q.set_defaults(func=_cmd_zoo_list)
    q = zoo_sub.add_parser("show", help="a model's card (JSON): data, recipe, figures, checksum")
    q.add_argument("name", metavar="NAME", help="a shipped model, e.g. robustreid_1x or zoo:robustreid_1x")
    q.set_defaults(func=_cmd_zoo_show)

    p = sub.add_parser("export", help="export a checkpoint's test descriptor to ONNX or an OpenVINO IR, checked "
                       "against PyTorch")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint (.pt) or a shipped zoo:NAME")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx",
                   help="onnx: MODEL.onnx; openvino: an IR, MODEL.xml and MODEL.bin (needs robustreid[openvino])")
    p.add_argument("--out", required=True, metavar="MODEL.onnx|MODEL.xml")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--fixed-batch", action="store_true", help="batch axis fixed to 1 (default: dynamic)")
    p.add_argument("--dataset", default=None, help="with --root: compare top-10 rankings of PyTorch and ONNX "
                   "on its query/gallery, check the export on its images")
    p.add_argument("--root", default=None)
    p.add_argument("--int8", metavar="MODEL_INT8.onnx", default=None,
                   help="also write an int8 model (static quantization calibrated on the training images)")
    p.set_defaults(func=_cmd_export)


def _add_application_commands(sub) -> None:
    """``demo``, ``synth-scene``, ``track``, ``track-eval``: the offline demo and the tracker."""
    p = sub.add_parser("demo", help="offline demo: synthetic persons, the shipped networks (or one trained from "
                       "scratch) against baselines, tracking, HTML report")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", metavar="CKPT_OR_ZOO", default=None,
                   help="the network shown (default zoo:robustreid_1x, the shipped weights)")
    p.add_argument("--baseline", metavar="CKPT_OR_ZOO", default=None,
                   help="the baseline it is compared with (default zoo:hacnn)")
    p.add_argument("--finetune-steps", type=int, default=None, metavar="N",
                   help="SGD steps of fine-tuning on the demo's synthetic data (default: the demo's)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train the network from scratch at demo scale instead of starting from --checkpoint")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="with --from-scratch: demo-scale epochs (default 3: warmup, peak, decayed)")
    p.add_argument("--no-tracking", action="store_true", help="leave out the tracking part")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast (default: on where the device has native bfloat16; --no-amp: off)")
    p.add_argument("--device", default=None, help=_DEVICE_HELP)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("synth-scene", help="synthetic persons walking through a scene, in the MOTChallenge layout")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--mode", choices=["street", "room"], default="street")
    p.add_argument("--cameras", type=int, default=None)
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--people", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth_scene)

    p = sub.add_parser("track", help="online tracking of a MOTChallenge sequence (det/det.txt + img1/)")
    p.add_argument("seq_dir", metavar="SEQ_DIR")
    p.add_argument("--checkpoint", metavar="CKPT", help=_MODEL_HELP)
    p.add_argument("--out", required=True, metavar="RESULTS.txt")
    p.add_argument("--no-reid", action="store_true", help="motion-only baseline (Table 5 'No ReID')")
    p.add_argument("--reid-refresh", type=int, default=1, metavar="K",
                   help="embed a crop only where appearance decides, and refresh a track's embedding every K "
                        "frames (1, the default: every crop of every frame, as MOTDT)")
    p.add_argument("--device", default=None, help=_DEVICE_HELP)
    _add_backend_args(p)
    p.set_defaults(func=_cmd_track)

    p = sub.add_parser("track-eval", help="MOTA / IDF1 / HOTA / ID switches of a results file (trackeval)")
    p.add_argument("--gt", required=True, metavar="GT.txt")
    p.add_argument("--results", required=True, metavar="RESULTS.txt")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_track_eval)


def _add_search_commands(sub) -> None:
    """``index build|add|info``, ``search``, ``serve``: person search across cameras (docs/SEARCH.md)."""
    from .search.store import DEFAULT_STORE, STORES

    p = sub.add_parser("index", help="an index of tracklets for person search (SQLite + vector store)")
    index_sub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)
    q = index_sub.add_parser("build", help="track each camera's sequence (or read crops) and index one entry "
                             "per tracklet (crop) in a new folder OUT")
    q.add_argument("out", metavar="OUT")
    model = q.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", metavar="CKPT_OR_ZOO", help="a checkpoint (.pt) or a shipped zoo:NAME")
    model.add_argument("--histogram", action="store_true", help="the colour histogram instead of a model")
    _add_index_inputs(q)
    q.add_argument("--store", choices=list(STORES), default=DEFAULT_STORE,
                   help=f"the vector store (default {DEFAULT_STORE}; the faiss kinds need robustreid[faiss], "
                        "milvus robustreid[milvus]: Milvus Lite in OUT, or on the server "
                        "ROBUSTREID_MILVUS_URI names)")
    q.add_argument("--device", default=None, help=_DEVICE_HELP)
    q.set_defaults(func=_cmd_index_build)
    q = index_sub.add_parser("add", help="add more cameras (sequences) or crops to an index, atomically")
    q.add_argument("out", metavar="OUT")
    _add_index_inputs(q)
    q.add_argument("--device", default=None, help=_DEVICE_HELP)
    q.set_defaults(func=_cmd_index_add)
    q = index_sub.add_parser("info", help="the index's model, store and tracklets per camera")
    q.add_argument("out", metavar="OUT")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=_cmd_index_info)

    p = sub.add_parser("search", help="the tracklets nearest to the person in a query crop")
    p.add_argument("index", metavar="OUT", help="an index folder (robustreid index build)")
    p.add_argument("query", metavar="QUERY_IMAGE")
    p.add_argument("--k", type=int, default=20, help="hits (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default=None, help=_DEVICE_HELP)
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("serve", help="the search API and page over an index (FastAPI + uvicorn; "
                       "robustreid[search])")
    p.add_argument("index", metavar="OUT", help="an index folder (robustreid index build)")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; another host needs --token")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=None, help=f"bearer token every API call must carry (or {TOKEN_ENV})")
    p.add_argument("--device", default=None, help=_DEVICE_HELP)
    p.set_defaults(func=_cmd_serve)


def _add_index_inputs(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--sequences", nargs="+", metavar="SEQ_DIR",
                        help="MOTChallenge sequences (det/det.txt + img1/), one camera each, named by folder; or "
                             "scene folders (synth-scene), every camera")
    source.add_argument("--crops", metavar="DIR",
                        help="Market1501-style crops (PID_cCAM..._FRAME.jpg), one entry each")


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help=_DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-workers", type=int, default=2)


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["torch", "onnxruntime", "openvino"], default="torch",
                   help="torch runs a checkpoint; onnxruntime an exported .onnx (robustreid[onnx]); openvino an "
                        ".onnx or an IR .xml from export --format openvino (robustreid[openvino])")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bfloat16 autocast (torch) or OpenVINO's bf16 inference precision (default fp32)")


def _add_override_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML or JSON file of overrides")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. loss.triplet_margin=0.3")
    p.add_argument("--epochs", type=int, default=None, help="scale the recipe's Eq. 1 stage to this many epochs (ScheduleConfig.scaled); a preset with SWAG "
                   "keeps a scaled SWAG stage after them (--set schedule.swag_cycles=0 drops it); the run prints its plan")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16; float16 on a GPU without bfloat16)")


_DEVICE_HELP = "cpu, cuda, cuda:1 ... (default: the GPU if there is one, else cpu)"
_MODEL_HELP = ("a checkpoint (.pt) or a shipped model zoo:NAME (robustreid zoo list), or with --backend "
               "onnxruntime / openvino the exported .onnx / .xml")

# Optional packages and the extra that installs them (pyproject.toml).
_EXTRAS = {"trackeval": "tracking", "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
           "openvino": "openvino", "fastapi": "search", "uvicorn": "search", "starlette": "search",
           "multipart": "search", "python_multipart": "search", "faiss": "faiss", "pymilvus": "milvus",
           "milvus_lite": "milvus"}


def _one_line(exc: BaseException) -> str:
    """The message of an error a user can fix, as one line (the first line names the file or value)."""
    import configparser

    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in _EXTRAS:
        package = exc.name.split(".")[0]
        return f"this needs the optional package {package}: pip install 'robustreid[{_EXTRAS[package]}]'"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, configparser.Error):
        source = getattr(exc, "source", None)
        return f"{source + ': ' if source else ''}{' '.join(exc.message.split())}"
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "Original Traceback" in str(exc):  # re-raised from a DataLoader worker: the cause is last
        return lines[-1].strip()
    return lines[0] if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    import configparser

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return 0
    except (UsageError, ValueError, OSError, configparser.Error, ModuleNotFoundError) as exc:
        if isinstance(exc, ModuleNotFoundError) and not (exc.name and exc.name.split(".")[0] in _EXTRAS):
            raise  # a broken install, not the user's input
        print(f"robustreid {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
