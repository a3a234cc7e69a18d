"""The command line of docs/cli.md: ``python -m studio COMMAND [--json]``.

Exit 0 on success; exit 2 on bad input, with ``{"error": ...}`` on stdout in JSON mode or the message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from studio.cli.lora import add_lora_parser, cmd_lora
from studio.core.errors import InvalidRequest, StudioError
from studio.outputs import generate_output

log = logging.getLogger("studio.cli.main")


class _Parser(argparse.ArgumentParser):
    """argparse that raises InvalidRequest instead of exiting, so JSON mode can report it."""

    def error(self, message: str) -> NoReturn:
        raise InvalidRequest(f"{message} — see `python -m studio {self.prog.split()[-1]} --help`")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument(
        "--verbose",
        action="store_true",  # taken out by __main__ before parsing (see quiet.py)
        help="keep the libraries' warnings, logs and progress bars on stderr",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(prog="python -m studio", description="Flux Studio from the command line")
    _common(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gen = sub.add_parser("generate", help="generate images")
    _common(gen)
    add_generate_options(gen)
    replay = sub.add_parser("replay", help="regenerate a record exactly")
    _common(replay)
    replay.add_argument("id")
    hist = sub.add_parser("history", help="list records, newest first")
    _common(hist)
    hist.add_argument("--search", default=None)
    hist.add_argument("--limit", type=int, default=50)
    hist.add_argument("--offset", type=int, default=0)
    hist.add_argument("--model", default=None, help="only this model")
    hist.add_argument("--lora", default=None, help="only records using a LoRA whose name contains this")
    hist.add_argument("--tag", default=None, help="only records with this tag")
    hist.add_argument("--since", default=None, help="from this day on (YYYY-MM-DD, UTC)")
    hist.add_argument("--until", default=None, help="up to and including this day (YYYY-MM-DD, UTC)")
    hist.add_argument("--status", default=None, choices=("done", "cancelled", "failed"))
    hist.add_argument("--favourite", action="store_true", help="only favourites")
    hist.add_argument("--has-regions", default=None, choices=("yes", "no"))
    hist.add_argument("--has-controls", default=None, choices=("yes", "no"))
    hist.add_argument("--sort", default="newest", choices=("newest", "oldest"))
    for name, helptext in (
        ("show", "one record"),
        ("delete", "remove a record and its images"),
        ("share", "make a share link"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        _common(cmd)
        cmd.add_argument("id")
    unshare = sub.add_parser("unshare", help="revoke a share link")
    _common(unshare)
    unshare.add_argument("token")
    imp = sub.add_parser("import-png", help="read the request from a PNG's metadata")
    _common(imp)
    imp.add_argument("file", type=Path)
    ev = sub.add_parser("eval", help="ToyGenEval on the embedded model")
    _common(ev)
    ev.add_argument("--prompts", type=Path, default=None, help="file with one prompt a line")
    ev.add_argument("--steps", type=int, default=None)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--n", type=int, default=40, help="prompts from the held-out set when --prompts is not given")
    ev.add_argument("--kind", choices=("one", "two"), default="one")
    add_lora_parser(sub, _common, _Parser)
    model = sub.add_parser("model", help="model files")
    _common(model)
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=_Parser)
    inspect = model_sub.add_parser("inspect", help="what a model file or folder is and whether it loads (headers only)")
    _common(inspect)
    inspect.add_argument("path", type=Path)
    return parser


def add_generate_options(gen: argparse.ArgumentParser) -> None:
    """Options of ``generate`` (named like the record's request fields)."""
    gen.add_argument("--prompt")
    gen.add_argument("--prompt-file", type=Path)
    gen.add_argument("--prompt-2")
    gen.add_argument("--negative-prompt")
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--steps", type=int)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--guidance", type=float)
    gen.add_argument("--true-cfg", type=float, default=1.0)
    gen.add_argument("--schedule", help="JSON or @file")
    gen.add_argument("--batch", type=int, default=1)
    gen.add_argument("--lora", action="append", default=[], metavar="NAME_OR_PATH[:WEIGHT]")
    gen.add_argument("--control", action="append", default=[], metavar="KIND:IMAGE[:STRENGTH[:START:END]]")
    gen.add_argument("--region", action="append", default=[], metavar="MASK_PNG:PROMPT")
    gen.add_argument(
        "--region-base-ratio",
        type=float,
        default=0.0,
        metavar="R",
        help="mix this share of the main prompt into every region prompt (0..1)",
    )
    gen.add_argument("--init-image", type=Path)
    gen.add_argument("--mask", type=Path)
    gen.add_argument(
        "--reference",
        action="append",
        default=[],
        type=Path,
        metavar="IMAGE",
        help="a reference image (FLUX.1 Kontext: one; FLUX.2: repeat for several; other models refuse it)",
    )
    gen.add_argument("--strength", type=float)
    gen.add_argument("--cache", metavar="KIND[:THRESHOLD]")
    gen.add_argument("--model")
    gen.add_argument("--out", type=Path, help="also copy the PNGs here")


# ---- command implementations -----------------------------------------------------------------------
def _studio() -> Any:
    from studio.core import settings as settings_mod
    from studio.service import Studio

    return Studio(settings_mod.from_env())


def _store() -> Any:
    """The history alone, for commands that only read records (no model, no torch import)."""
    from studio.core import settings as settings_mod
    from studio.store.store import Store

    settings = settings_mod.from_env()
    try:
        return Store(settings.db_url, settings.data_dir)
    except OSError as exc:
        raise StudioError(
            f"cannot use {exc.filename or settings.data_dir} as the data folder ({exc.strerror}) — "
            "set STUDIO_DATA_DIR to a writable folder"
        ) from exc


def _generate_output(record: dict[str, Any], out: Path | None = None) -> dict[str, Any]:
    result = generate_output(record)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for path in result["images"]:
                shutil.copy2(path, out / Path(path).name)
        except OSError as exc:
            raise StudioError(
                f"could not copy the images to {out} ({exc.strerror}) — choose a writable --out"
            ) from None
    return result


def cmd_generate(args: argparse.Namespace) -> dict[str, Any]:
    from studio.cli.requests import request_from_args

    if not args.prompt and not args.prompt_file:
        raise InvalidRequest("--prompt is required (or --prompt-file with one prompt a line)")
    prompts = [args.prompt] if args.prompt else _read_prompt_file(args.prompt_file)  # refused before the model loads
    studio = _studio()
    results = []
    for prompt in prompts:
        request = request_from_args(args, prompt, studio.store.assets)
        results.append(_generate_output(studio.generate(request), args.out))
    return results[0] if args.prompt else {"results": results}


def _read_prompt_file(path: Path) -> list[str]:
    """One prompt a line; a file over ``MAX_TEXT_FILE_BYTES`` or ``MAX_TEXT_FILE_LINES`` lines is refused."""
    from studio.core.limits import MAX_TEXT_FILE_LINES, read_text_file

    lines = [line.strip() for line in read_text_file(path, "--prompt-file").splitlines()]
    prompts = [line for line in lines if line]
    if not prompts:
        raise InvalidRequest(f"--prompt-file {path} has no prompts — write one prompt a line")
    if len(prompts) > MAX_TEXT_FILE_LINES:
        raise InvalidRequest(
            f"--prompt-file {path} has {len(prompts)} prompts — at most {MAX_TEXT_FILE_LINES} a run; "
            "split it into smaller files"
        )
    return prompts


def cmd_replay(args: argparse.Namespace) -> dict[str, Any]:
    return _generate_output(_studio().replay(args.id))


def cmd_history(args: argparse.Namespace) -> dict[str, Any]:
    from studio.store.query import parse_day

    filters: dict[str, Any] = {"model": args.model, "lora": args.lora, "tag": args.tag, "status": args.status,
                               "favourite": True if args.favourite else None, "sort": args.sort,
                               "since": parse_day(args.since) if args.since else None,
                               "until": parse_day(args.until, end=True) if args.until else None}  # fmt: skip
    for name in ("has_regions", "has_controls"):
        if getattr(args, name) is not None:
            filters[name] = getattr(args, name) == "yes"
    records, total = _store().list(search=args.search, limit=args.limit, offset=args.offset, **filters)
    return {"records": [record.to_dict() for record in records], "total": total}


def cmd_show(args: argparse.Namespace) -> dict[str, Any]:
    return _studio().store.get(args.id).to_dict()


def cmd_delete(args: argparse.Namespace) -> dict[str, Any]:
    _studio().store.delete(args.id)
    return {"deleted": args.id}


def cmd_share(args: argparse.Namespace) -> dict[str, Any]:
    token = _studio().store.share(args.id)
    return {"token": token, "url": f"/share/{token}"}


def cmd_unshare(args: argparse.Namespace) -> dict[str, Any]:
    _studio().store.unshare(args.token)
    return {"revoked": args.token}


def cmd_import_png(args: argparse.Namespace) -> dict[str, Any]:
    from studio.store import pngmeta

    return pngmeta.read_png_request(args.file)


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from studio.toyeval import run_eval

    return run_eval(_studio(), prompts_file=args.prompts, steps=args.steps, seed=args.seed, n=args.n, kind=args.kind)


def cmd_model(args: argparse.Namespace) -> dict[str, Any]:
    from studio.models.inspection import report

    return report(args.path)  # the only model subcommand: inspect


COMMANDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "generate": cmd_generate,
    "replay": cmd_replay,
    "history": cmd_history,
    "show": cmd_show,
    "delete": cmd_delete,
    "share": cmd_share,
    "unshare": cmd_unshare,
    "import-png": cmd_import_png,
    "eval": cmd_eval,
    "lora": cmd_lora,
    "model": cmd_model,
}


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[Any]:
    """Keep stdout clean for the one JSON object: anything libraries print goes to stderr."""
    real = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = real


def _print_human(result: dict[str, Any], out: Any) -> None:
    if "images" in result and "id" in result:
        print(f"{result['id']} ({result.get('status', 'done')}), seed {result['seed']}", file=out)
        for path in result["images"]:
            print(path, file=out)
    else:
        print(json.dumps(result, indent=2), file=out)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    with _stdout_to_stderr() as stdout:
        try:
            args = build_parser().parse_args(argv)
            result = COMMANDS[args.command](args)
        except StudioError as exc:
            if json_mode:
                print(json.dumps({"error": str(exc)}), file=stdout)
            else:
                print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        if json_mode:
            print(json.dumps(result), file=stdout)
        else:
            _print_human(result, stdout)
    return 0
