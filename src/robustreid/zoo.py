"""The model zoo: trained weights shipped inside the package, loaded by name (``"zoo:robustreid_1x"``).

The idea is timm's pretrained configs (a name resolves to weights plus the data config the network needs) and
fast-reid's ``MODEL_ZOO.md`` (one row per model: data, recipe, figures, weights). Every shipped model is two
files in ``robustreid/zoo/``, package data, so ``pip install robustreid`` brings them (no download):

* ``<name>.safetensors``: the network's tensors (safetensors holds no pickle, so loading cannot run code). Its
  metadata holds JSON strings of ``arch`` (``Architecture.to_dict()``), ``arch_name``, ``num_classes``,
  ``data_config`` and ``format_version``: the file alone rebuilds the network.
* ``<name>.json``: the model card, plain JSON (indent 2, sorted keys): ``name``, ``file``, ``sha256``,
  ``size_bytes``, ``num_params`` (without the identity classifiers, as ``robustreid profile`` counts),
  ``feature_dim``, ``arch_name``, ``arch``, ``num_classes``, ``data_config``, ``format_version``, plus what
  the packer gives (the data, the command that trained the weights, an ``evaluation`` entry with ``rank1`` /
  ``mAP`` ...) and, from a training checkpoint, its ``train_config`` and ``versions``.

``load_zoo_state(name)`` returns the weights as a robustreid checkpoint dict (``checkpoint.model_state``'s
format), so every code path that takes a checkpoint takes ``"zoo:NAME"`` too: ``checkpoint.load_checkpoint``
resolves the prefix. The file's sha256 is checked against its card before its tensors are read (a damaged or
missing file is one line naming it), and the architecture is the one in the weights' own metadata: a card
that says otherwise is an error, not a guess.

``zoo_dir=None`` everywhere means ``$ROBUSTREID_ZOO_DIR`` when it is set, else ``ZOO_DIR`` (the package's
folder). This module imports only ``model`` and ``atomicfile``, so that ``checkpoint`` can import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch

from .atomicfile import write_bytes, write_text
from .model import Architecture, ReIDNet, arch_name

__all__ = ["ENV_VAR", "MARKERS", "PREFIX", "ZOO_DIR", "card_json", "cards_markdown", "continued_stages",
           "is_zoo_name", "list_zoo", "load_card", "load_pretrained", "load_zoo_state", "pack_checkpoint",
           "record_table2_ordering", "replace_between_markers", "table2_ordering"]

ZOO_DIR = Path(__file__).parent / "zoo"
ENV_VAR = "ROBUSTREID_ZOO_DIR"
PREFIX = "zoo:"
# checkpoint.FORMAT / FORMAT_VERSION, repeated here because checkpoint imports this module (tests/test_zoo.py
# checks that they agree).
FORMAT = "robustreid"
FORMAT_VERSION = 1

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a file name stem: no folders, no hidden files
_CARD_KEYS = ("name", "file", "sha256", "size_bytes", "num_params", "arch_name", "arch", "num_classes",
              "data_config")
_METADATA_KEYS = ("arch", "num_classes", "data_config", "format_version")
_FIX = "reinstall robustreid or run make weights"


def _folder(zoo_dir: str | os.PathLike | None) -> Path:
    if zoo_dir is not None:
        return Path(zoo_dir)
    return Path(os.environ.get(ENV_VAR) or ZOO_DIR)


def is_zoo_name(s) -> bool:
    """True for a shipped model's name as checkpoint arguments take it: a string starting with ``zoo:``."""
    return isinstance(s, str) and s.startswith(PREFIX)


def _bare(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"expected a model name such as 'robustreid_1x' or 'zoo:robustreid_1x', got "
                        f"{type(name).__name__}")
    return name[len(PREFIX):] if is_zoo_name(name) else name


def _card_paths(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if _NAME.fullmatch(p.stem) and p.is_file())


def _read_card(path: Path) -> dict:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable model card ({exc}); {_FIX}") from None
    if not isinstance(card, dict):
        raise ValueError(f"{path}: a model card is a JSON object, this is a {type(card).__name__}; {_FIX}")
    missing = [k for k in _CARD_KEYS if k not in card]
    if missing:
        raise ValueError(f"{path}: the model card lacks {', '.join(missing)}; {_FIX}")
    if not isinstance(card["file"], str) or not _NAME.fullmatch(card["file"]):
        raise ValueError(f"{path}: 'file' must name a file beside the card, got {card['file']!r}")
    return card


def list_zoo(zoo_dir: str | os.PathLike | None = None) -> list[dict]:
    """The model cards of the shipped models, sorted by name (``[]`` when none are shipped)."""
    return sorted((_read_card(p) for p in _card_paths(_folder(zoo_dir))), key=lambda c: str(c["name"]))


def load_card(name: str, zoo_dir: str | os.PathLike | None = None) -> dict:
    """The model card of ``name`` (``robustreid_1x`` or ``zoo:robustreid_1x``); an unknown name is a one-line
    ``ValueError`` listing the shipped ones."""
    folder = _folder(zoo_dir)
    bare = _bare(name)
    path = folder / f"{bare}.json"
    if not (_NAME.fullmatch(bare) and path.is_file()):
        shipped = [p.stem for p in _card_paths(folder)]
        listed = ", ".join(shipped) if shipped else f"none (no model cards in {folder})"
        raise ValueError(f"{PREFIX}{bare} is not a shipped model; shipped: {listed}")
    return _read_card(path)


def _metadata(data: bytes, path: Path) -> dict:
    """The ``__metadata__`` (string -> string) of the safetensors file ``data`` (read from ``path``)."""
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + size]) if 0 < size <= len(data) - 8 else None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        header = None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file; {_FIX}")
    return header.get("__metadata__") or {}


def _diff(a: Architecture, b: Architecture) -> str:
    return ", ".join(f"{k} {v} vs {getattr(b, k)}" for k, v in a.to_dict().items() if getattr(b, k) != v)


def load_zoo_state(name: str, zoo_dir: str | os.PathLike | None = None) -> dict:
    """The shipped model ``name`` as a robustreid checkpoint dict (``format``, ``format_version``, ``arch``,
    ``num_classes``, ``data_config``, ``model`` = state dict, plus ``zoo_card``), on the CPU.

    The weights file's sha256 must be the card's (``FileNotFoundError`` / ``ValueError`` naming the file
    otherwise); the architecture and class count come from the file's own metadata, and must be the card's."""
    folder = _folder(zoo_dir)
    card = load_card(name, folder)
    card_path, weights = folder / f"{_bare(name)}.json", folder / card["file"]
    try:
        # One read: the bytes checked are the bytes loaded, and the tensors own their memory (load_file maps
        # the file, so a later write to it would change a loaded network).
        data = weights.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{weights}: missing (its card {card_path.name} expects it, sha256 "
                                f"{str(card['sha256'])[:12]}...); {_FIX}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["sha256"]:
        raise ValueError(f"{weights}: sha256 {digest[:12]}... does not match its card (expected "
                         f"{str(card['sha256'])[:12]}...): the file is damaged; {_FIX}")
    meta = _metadata(data, weights)
    missing = [k for k in (*_METADATA_KEYS, "format") if k not in meta]
    if missing or meta["format"] != FORMAT:
        raise ValueError(f"{weights}: no robustreid metadata ({', '.join(missing) or 'format'}); "
                         "write zoo files with robustreid.zoo.pack_checkpoint")
    version = int(meta["format_version"])
    if version > FORMAT_VERSION:
        raise ValueError(f"{weights} has format {version}; this robustreid reads <= {FORMAT_VERSION}: "
                         "upgrade robustreid")
    arch, num_classes = json.loads(meta["arch"]), json.loads(meta["num_classes"])
    saved, said = Architecture.from_dict(arch), Architecture.from_dict(card["arch"])
    if saved != said or card["num_classes"] != num_classes:
        detail = _diff(said, saved) or f"num_classes {card['num_classes']} vs {num_classes}"
        raise ValueError(f"{card_path} does not describe {weights.name}: card vs weights: {detail}; {_FIX}")
    from safetensors.torch import load

    return {"format": FORMAT, "format_version": version, "arch": arch, "num_classes": num_classes,
            "data_config": json.loads(meta["data_config"]), "model": load(data), "zoo_card": card}


def _build(state: dict, source: str) -> ReIDNet:
    model = ReIDNet(Architecture.from_dict(dict(state["arch"])), int(state["num_classes"]))
    try:
        model.load_state_dict(state["model"], assign=True)  # the loaded tensors become the weights: no copy
    except RuntimeError as exc:  # missing / unexpected keys, wrong shapes
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        raise ValueError(f"{source}: the weights do not fit their architecture: "
                         f"{lines[1] if len(lines) > 1 else lines[0]}") from None
    return model


def load_pretrained(name: str, num_classes: int | None = None,
                    zoo_dir: str | os.PathLike | None = None) -> ReIDNet:
    """The shipped network ``name`` (``robustreid_1x`` or ``zoo:robustreid_1x``, see ``list_zoo``), eval mode.

    ``num_classes``: new identity classifiers for that many identities (``ReIDNet.reset_classifier``) when it
    differs from the shipped ones; the test descriptor (``embed``) does not use them."""
    model = _build(load_zoo_state(name, zoo_dir), f"{PREFIX}{_bare(name)}")
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    return model.eval()


def _read_state(state_or_path) -> dict:
    if isinstance(state_or_path, dict):
        state = state_or_path
    else:
        path = Path(state_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise ValueError(f"{state_or_path if not isinstance(state_or_path, dict) else 'state'} is not a "
                         f"robustreid checkpoint (no 'format': '{FORMAT}' entry with a 'model')")
    return state


def card_json(card) -> str:
    """A card as JSON text: indent 2, sorted keys, and each list without objects in it on one line (an input
    size, a mean, the stage widths), so the card reads as a table."""

    def has_object(value) -> bool:
        return isinstance(value, dict) or (isinstance(value, (list, tuple)) and any(map(has_object, value)))

    def dump(value, level: int) -> str:
        pad, end = "  " * (level + 1), "\n" + "  " * level
        if isinstance(value, dict) and value:
            items = [f"{pad}{json.dumps(str(k))}: {dump(v, level + 1)}" for k, v in sorted(value.items())]
            return "{\n" + ",\n".join(items) + end + "}"
        if isinstance(value, (list, tuple)) and has_object(value):
            return "[\n" + ",\n".join(pad + dump(v, level + 1) for v in value) + end + "]"
        return json.dumps(value, allow_nan=False)  # strict JSON: no NaN / Infinity

    return dump(card, 0) + "\n"


def pack_checkpoint(state_or_path, name: str, card: dict, zoo_dir: str | os.PathLike | None = None) -> Path:
    """Write the checkpoint ``state_or_path`` (a dict or a ``.pt`` path) into the zoo as
    ``<name>.safetensors`` and its model card ``<name>.json`` (both atomically); returns the card's path.

    ``card``: what the packer knows (data, the command that trained the weights, an ``evaluation`` entry with
    ``rank1`` / ``mAP`` ...); the fields computed here (``name``, ``file``, ``sha256``, ``size_bytes``,
    ``num_params``, ``feature_dim``, ``arch_name``, ``arch``, ``num_classes``, ``data_config``,
    ``format_version``) replace any of the same name, and an ``arch_name`` / ``arch`` that disagrees with the
    weights is a ``ValueError``. A training checkpoint's ``config`` / ``versions`` become ``train_config`` /
    ``versions`` unless ``card`` has them."""
    from safetensors.torch import save

    bare = _bare(name)
    if not _NAME.fullmatch(bare):
        raise ValueError(f"zoo name {bare!r}: expected letters, digits, '_', '.', '-' (a file name stem)")
    state = _read_state(state_or_path)
    model = _build(state, f"checkpoint for {PREFIX}{bare}")  # the tensors fit the architecture they claim
    arch = model.arch
    if "arch_name" in card and card["arch_name"] != arch_name(arch):
        raise ValueError(f"card says arch_name {card['arch_name']!r}, the weights are {arch_name(arch)!r}")
    said = Architecture.from_dict(dict(card["arch"])) if "arch" in card else arch
    if said != arch:
        raise ValueError(f"the card's arch does not match the weights' (card vs weights): "
                         f"{_diff(said, arch)}")
    data_config = {k: list(v) if isinstance(v, (tuple, list)) else v
                   for k, v in (state.get("data_config") or model.data_config).items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "arch_name": arch_name(arch),
                "arch": json.dumps(arch.to_dict()), "num_classes": json.dumps(model.num_classes),
                "data_config": json.dumps(data_config)}
    # contiguous copies with storages of their own (safetensors refuses views of shared storage)
    data = save({k: v.detach().cpu().contiguous().clone() for k, v in state["model"].items()}, metadata)
    classifier = {id(p) for p in model.classifiers.parameters()}
    full = {
        **card,
        "name": bare,
        "file": f"{bare}.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "num_params": sum(p.numel() for p in model.parameters() if id(p) not in classifier),
        "feature_dim": arch.feature_dim,
        "arch_name": arch_name(arch),
        "arch": json.loads(json.dumps(arch.to_dict())),
        "num_classes": model.num_classes,
        "data_config": data_config,
        "format_version": FORMAT_VERSION,
    }
    for key, entry in (("train_config", "config"), ("versions", "versions")):
        if key not in full and state.get(entry) is not None:
            full[key] = state[entry]
    text = card_json(full)  # before any write: a card must be JSON
    folder = _folder(zoo_dir)
    write_bytes(folder / full["file"], data)
    return write_text(folder / f"{bare}.json", text)


# ---- the model zoo page (docs/MODEL_ZOO.md): its table is rendered from the cards, never typed ------------
MARKERS = ("<!-- cards (begin): written by scripts/make_weights.py from the model cards -->",
           "<!-- cards (end) -->")


def _figures(entry: dict | None) -> str:
    if not entry:
        return "-"
    return f"{entry['rank1']:.1f} / {entry['mAP']:.1f}"


def table2_ordering(cards: list[dict], high: str = "robustreid_1x", low: str = "hacnn",
                    key: str = "demo_mean") -> dict | None:
    """Table 2's two ends side by side from their cards: is ``high`` (Robust-ReID) at least as good as ``low``
    (HA-CNN) on both rank-1 and mAP of ``evaluation[key]`` (default: the demo sets' zero-shot mean)? None
    unless both cards have those figures. Pure: cards in, a dict out (``make_weights`` stores it in both
    cards, so a card says where its model stands against the other)."""
    by_name = {c.get("name"): c.get("evaluation", {}).get(key) for c in cards}
    a, b = by_name.get(high), by_name.get(low)
    if not a or not b:
        return None
    figures = {name: {"rank1": round(m["rank1"], 2), "mAP": round(m["mAP"], 2)}
               for name, m in ((high, a), (low, b))}
    return {"on": key, "high": high, "low": low, "models": figures,
            "holds": a["rank1"] >= b["rank1"] and a["mAP"] >= b["mAP"]}


def record_table2_ordering(zoo_dir: str | os.PathLike | None = None) -> dict | None:
    """Store :func:`table2_ordering` of the shipped cards in each of the two cards it compares (key
    ``table2_ordering``), so a card says where its model stands against the other; returns it (None, and
    nothing written, unless both cards are there). Only the JSON changes: the weights and their sha256 do
    not."""
    cards = list_zoo(zoo_dir)
    ordering = table2_ordering(cards)
    if ordering is not None:
        for c in cards:
            if c["name"] in ordering["models"]:
                card = card_json({**c, "table2_ordering": ordering})
                write_text(_folder(zoo_dir) / f"{c['name']}.json", card)
    return ordering


def continued_stages(card: dict) -> list[dict]:
    """The continued stages of a model card in the order they ran: the list ``continued_stages``, or the
    single ``continued_stage`` of a card made before there were two (``scripts/make_weights.py`` reads them
    back too)."""
    single = card.get("continued_stage")
    return card.get("continued_stages") or ([single] if single else [])


def _continued(card: dict) -> list[tuple[dict, str]]:
    """:func:`continued_stages` of ``card``, each with its label ("continued", "continued 2", ...)."""
    return [(stage, "continued" if i == 0 else f"continued {i + 1}")
            for i, stage in enumerate(continued_stages(card))]


def cards_markdown(cards: list[dict]) -> str:
    """The model zoo as Markdown: one table row per card (fast-reid's MODEL_ZOO.md shape), then per model the
    commands that made its data and weights and that measure its figures. Pure: cards in, text out."""
    if not cards:
        return "No models are shipped yet.\n"
    lines = ["| model | architecture | params | file | trained on | steps (epochs) | "
             "training time, machine | "
             "demo sets 0 / 1 / 2, zero-shot: mean rank-1 / mAP | held-out test of its data | sha256 |",
             "|---|---|---:|---:|---|---:|---|---:|---:|---|"]
    for c in cards:
        t, d, e = c.get("training", {}), c.get("data", {}), c.get("evaluation", {})
        machine, swag = t.get("machine", {}), c.get("swag_stage")
        where = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {t.get('precision', '?')}"
        minutes = f"{t['wall_seconds'] / 60:.0f} min" if t.get("wall_seconds") else "?"
        steps = f"{t.get('steps', '?')} ({t.get('epochs', '?')})"
        for stage, label in ((swag, "SWAG"), *_continued(c)):  # in order of running
            if stage:
                wall = stage.get("wall_seconds")
                minutes += f" + {wall / 60:.0f} min {label}" if wall else f" + {label}"
                steps += f" + {stage.get('steps', '?')} ({stage.get('epochs', '?')}) {label}"
        lines.append(
            f"| `zoo:{c['name']}` | {c['arch_name']} | {c['num_params'] / 1e6:.2f} M | "
            f"{c['size_bytes'] / 2**20:.1f} MB | "
            f"{d.get('identities', '?')} ids, {d.get('images', '?')} images, {d.get('cameras', '?')} cameras "
            f"(synthetic seeds {', '.join(map(str, d.get('generator_seeds', [])))}) | "
            f"{steps} | {minutes}, {where} | "
            f"{_figures(e.get('demo_mean'))} | "
            f"{_figures(e.get('train_union_test'))} | `{c['sha256'][:12]}` |")
    ordering = table2_ordering(cards)
    if ordering:
        high, low, m = ordering["high"], ordering["low"], ordering["models"]
        lines += ["", f"Table 2's ordering (`{high}` at least as good as `{low}` on rank-1 and mAP), "
                  f"evaluation `{ordering['on']}`: `{high}` {_figures(m[high])} against `{low}` "
                  f"{_figures(m[low])}: "
                  + ("it holds." if ordering["holds"] else "it does not hold on this data.")]
    for c in cards:
        t, d, e = c.get("training", {}), c.get("data", {}), c.get("evaluation", {})
        lines += ["", f"### `zoo:{c['name']}`", "", f"Card: `src/robustreid/zoo/{c['name']}.json` "
                  f"(`robustreid zoo show {c['name']}`). Trained at commit `{t.get('commit', '?')}`.", "",
                  "```bash"]
        lines += [s["command"] for s in d.get("sets", {}).values() if "command" in s]
        if t.get("command"):
            lines.append(t["command"])
        swag, stages = c.get("swag_stage"), _continued(c)
        ran = (swag, *(stage for stage, _ in stages))
        lines += [stage["command"] for stage in ran if stage and stage.get("command")]
        lines += ["```", ""]
        if stages:
            (last, label), before = stages[-1], (stages[-2] if len(stages) > 1 else (swag, "SWAG"))
            start = f" (it started from the {before[1]} stage's `{before[0].get('shipped', '?')}`)" \
                if before[0] else ""
            lines += [f"Shipped: the {label} stage's `{last.get('shipped', '?')}`{start}.", ""]
        elif swag:
            lines += [f"Shipped: the SWAG stage's `{swag.get('shipped', '?')}`.", ""]
        lines += ["| evaluated on | rank-1 | rank-5 | mAP | mINP | command |",
                  "|---|---:|---:|---:|---:|---|"]
        for key, m in e.items():
            if isinstance(m, dict) and "command" in m:
                lines.append(f"| {key} | {m['rank1']:.1f} | {m['rank5']:.1f} | {m['mAP']:.1f} | "
                             f"{m.get('mINP', float('nan')):.1f} | `{m['command']}` |")
        for when, curve in (("During training", t.get("curve")),
                            *((f"During the {label} stage", stage.get("curve")) for stage, label in stages)):
            if curve:  # each on the held-out test of the data it trained on
                lines += ["", f"{when} (held-out test of its data, rank-1 / mAP): " + ", ".join(
                    f"epoch {p['epoch'] + 1}: {p['rank1']:.1f} / {p['mAP']:.1f}" for p in curve) + "."]
        table3 = (swag or {}).get("table3_train_union_test") or {}
        if table3:
            names = {"start": "before the stage", "sgd_last": "last SGD iterate", "swa_mean": "SWA mean",
                     "bma": "SWAG Bayesian model average"}
            lines += ["", "The SWAG stage on the held-out test of its data (Table 3's rows, rank-1 / mAP): "
                      + ", ".join(f"{names[k]} {table3[k]['rank1']:.1f} / {table3[k]['mAP']:.1f}"
                                  for k in names if k in table3)  # Table 3's order, whatever the JSON's
                      + "."]
    return "\n".join(lines) + "\n"


def replace_between_markers(text: str, block: str, markers: tuple[str, str] = MARKERS) -> str:
    """``text`` with what lies between the two marker lines replaced by ``block``; a page without both markers
    is
    a ``ValueError`` (the page would otherwise silently keep a stale table)."""
    begin, end = markers
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"expected the markers {begin!r} and {end!r} once each, in that order")
    head, rest = text.split(begin)
    return head + begin + "\n" + block + rest[rest.index(end):]
