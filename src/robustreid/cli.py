"""The ``robustreid`` command: argparse subcommands, each a thin call into the library.

Errors the user can fix (a wrong name, path or value) are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    """Raised by a subcommand for input the user can fix; printed as one line, exit status 2."""


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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .model import list_models

    parser = argparse.ArgumentParser(
        prog="robustreid", description="Robust-ReID: person re-identification networks, training and tracking."
    )
    parser.add_argument("--version", action="version", version=f"robustreid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("profile", help="parameters, GMACs and feature size of a model (paper Table 1)")
    p.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--num-classes", type=int, default=751, help="identity classes for params_with_classifier "
                   "(default 751, Market1501's training ids)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_profile)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"robustreid {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
