"""``python -m ckanext.dcor_depot.client``: upload a file to a DCOR site.

Exit status: 0 done, 1 the upload or the check failed (one line on
stderr says why), 2 wrong usage, 130 interrupted (run the same command
again to resume).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ckanext.dcor_depot.client.api import ClientError
from ckanext.dcor_depot.client.progress import ProgressLine
from ckanext.dcor_depot.client.transfer import file_sha256
from ckanext.dcor_depot.client.upload import (
    UploadResult,
    upload_file,
    verify_sha256,
)

PROG = "python -m ckanext.dcor_depot.client"
TOKEN_VARIABLE = "DCOR_API_TOKEN"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
#: Suffixes of --max-rate (decimal, like the MB/s of the progress line).
RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def byte_rate(text: str) -> float:
    """``4M`` -> 4,000,000 bytes per second."""
    number, unit = text.strip(), ""
    if number and number[-1].lower() in RATE_UNITS:
        number, unit = number[:-1], number[-1].lower()
    try:
        rate = float(number) * RATE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r} (bytes per second, e.g. 500k or 4M)"
        ) from None
    if rate <= 0:
        raise argparse.ArgumentTypeError("the rate must be positive")
    return rate


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be a whole number of at least {minimum}")
        return value
    return parse


def field(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"not KEY=VALUE: {text!r}")
    return key, value


def _site_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", required=True,
                        help="the CKAN site, e.g. https://dcor.example.org")
    parser.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE),
                        help=f"your API token (default: ${TOKEN_VARIABLE})")
    parser.add_argument("--sha256-timeout", type=float, default=600.0,
                        metavar="S", help="seconds to wait for the site to "
                        "record the SHA256 (default: 600)")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog=PROG, description=(
        "Upload files straight to the object store of a DCOR site."))
    commands = main.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upload", help="upload a file as a new "
                             "resource (resumes an interrupted upload)")
    _site_options(up)
    up.add_argument("--dataset", required=True, help="dataset id or name")
    up.add_argument("file", metavar="FILE")
    up.add_argument("--name", help="resource name (default: file name)")
    up.add_argument("--field", type=field, action="append", default=[],
                    metavar="KEY=VALUE", help="another resource field "
                    "(e.g. description=...), may be repeated")
    up.add_argument("--parallel", type=at_least(1), default=4, metavar="N",
                    help="parts sent at the same time (default: 4)")
    up.add_argument("--retries", type=at_least(0), default=5, metavar="N",
                    help="how often failed parts are tried again "
                    "(default: 5)")
    up.add_argument("--no-verify", action="store_true", help="do not wait "
                    "for the site's SHA256 of the upload")
    up.add_argument("--state-dir", metavar="DIR", help="where interrupted "
                    "uploads are remembered (default: "
                    "$XDG_CACHE_HOME/dcor-depot-client)")
    up.add_argument("--max-rate", type=byte_rate, metavar="RATE",
                    help="bytes per second at most (e.g. 500k, 4M)")
    up.add_argument("--json", action="store_true",
                    help="print the result as JSON")
    up.add_argument("--quiet", action="store_true", help="no progress")
    check = commands.add_parser("verify", help="compare a file with the "
                                "SHA256 the site recorded for a resource")
    _site_options(check)
    check.add_argument("--resource-id", required=True)
    check.add_argument("file", metavar="FILE")
    return main


def summary(result: UploadResult, dataset: str) -> str:
    resumed = ", resumed" if result.resumed else ""
    checked = ("verified" if result.verified else "not verified")
    return (f"created resource {result.resource_id} "
            f"({result.resource.get('name')}, {result.size} bytes) in "
            f"dataset {dataset}: {len(result.parts_sent)} part(s) sent"
            f"{resumed}; sha256 {result.sha256} {checked}")


def run_upload(args: argparse.Namespace) -> int:
    line = None if args.quiet else ProgressLine(sys.stderr)
    try:
        result = upload_file(
            args.site, args.token, args.dataset, args.file, name=args.name,
            resource_fields=dict(args.field), parallel=args.parallel,
            retries=args.retries, verify=not args.no_verify,
            sha256_timeout=args.sha256_timeout, state_dir=args.state_dir,
            progress=line, max_rate=args.max_rate)
    finally:
        if line is not None:
            line.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=1))
    else:
        print(summary(result, args.dataset))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.file):
        raise ClientError(f"{args.file}: no such file")
    expected = file_sha256(args.file)
    assert expected is not None
    verify_sha256(args.site, args.token, args.resource_id, expected,
                  timeout=args.sha256_timeout)
    print(f"resource {args.resource_id}: sha256 {expected} verified")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser()
    args = arguments.parse_args(argv)
    if not args.token:
        arguments.error(f"give --token or set {TOKEN_VARIABLE}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("ckanext.dcor_depot.client").addHandler(handler)
    logging.getLogger("ckanext.dcor_depot.client").setLevel(logging.INFO)
    try:
        return (run_upload if args.command == "upload" else run_verify)(args)
    except (ClientError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
