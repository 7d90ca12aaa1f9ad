"""Command line: ``python -m omni_provider.emulator serve|show``.

The API key is taken from ``--api-key`` or ``OMNI_EMULATOR_API_KEY`` and is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from uvicorn.config import LOGGING_CONFIG

from .config import FAULT_KINDS, PATCH_SEMANTICS, PUT_MODES, EmulatorConfig
from .ratelimit import RATE_WINDOW_MODES
from .recipient_store import UPSERT_MODES
from .server import EmulatorServer, is_loopback
from .state import EmulatorState, UserRecord

API_KEY_ENV = "OMNI_EMULATOR_API_KEY"


def _fault_rate(text: str) -> tuple[str, float]:
    kind, sep, prob = text.partition("=")
    if not sep or kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"expected KIND=PROBABILITY with KIND in {', '.join(FAULT_KINDS)}")
    try:
        return kind, float(prob)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad probability {prob!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omni_provider.emulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the emulator HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback host")
    serve.add_argument("--api-key", action="append", default=[], help=f"org API key (or ${API_KEY_ENV})")
    serve.add_argument("--personal-token", action="append", default=[], help="a personal access token")
    serve.add_argument("--seed-users", type=int, default=0, help="seed N users into an empty state")
    serve.add_argument("--seed", type=int, default=0, help="random seed for --seed-users")
    serve.add_argument("--seed-embed-users", type=int, default=0)
    serve.add_argument("--state-file", type=Path)
    serve.add_argument("--persist-interval", type=float, default=0.5)
    serve.add_argument("--put-mode", choices=PUT_MODES, default="replace")
    serve.add_argument("--email-only-upsert", choices=UPSERT_MODES, default="merge")
    serve.add_argument(
        "--patch-semantics",
        choices=PATCH_SEMANTICS,
        default="assumed",
        help="'other': a no-path map replace replaces the whole map; attribute paths get 400",
    )
    serve.add_argument("--no-list-attribute-maps", action="store_true", help="list users without their maps")
    serve.add_argument("--rate-limit", type=int, default=60)
    serve.add_argument("--rate-window", type=float, default=60.0)
    serve.add_argument("--rate-window-mode", choices=RATE_WINDOW_MODES, default="sliding")
    serve.add_argument("--no-rate-limit", action="store_true")
    serve.add_argument("--retry-after-header", action="store_true", help="send Retry-After on 429")
    serve.add_argument("--max-page-size", type=int, default=100)
    serve.add_argument("--lenient-attributes", action="store_true", help="skip attribute checks")
    serve.add_argument("--fault-rate", action="append", type=_fault_rate, default=[], metavar="KIND=P")
    serve.add_argument("--fault-seed", type=int)
    serve.add_argument("--fault-methods", help="comma-separated methods faults apply to")
    serve.add_argument("--burst-429-length", type=int, default=3)
    serve.add_argument("--slow-seconds", type=float, default=0.5)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--no-access-log", action="store_true")

    show = sub.add_parser("show", help="print the users in a state file")
    show.add_argument("--state-file", type=Path, required=True)
    show.add_argument("--email", help="only this user (case-insensitive)")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _config_from_args(args: argparse.Namespace, api_keys: list[str]) -> EmulatorConfig:
    methods = args.fault_methods
    return EmulatorConfig(
        api_keys=api_keys,
        personal_tokens=list(args.personal_token),
        put_mode=args.put_mode,
        email_only_upsert=args.email_only_upsert,
        patch_semantics=args.patch_semantics,
        list_attribute_maps=not args.no_list_attribute_maps,
        max_page_size=args.max_page_size,
        strict_attributes=not args.lenient_attributes,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        rate_window_mode=args.rate_window_mode,
        rate_limit_enabled=not args.no_rate_limit,
        retry_after_header=args.retry_after_header,
        faults=dict(args.fault_rate),
        fault_seed=args.fault_seed,
        fault_methods=frozenset(m.strip().upper() for m in methods.split(",")) if methods else None,
        burst_429_length=args.burst_429_length,
        slow_seconds=args.slow_seconds,
        state_file=args.state_file,
        persist_interval=args.persist_interval,
    )


def serve(args: argparse.Namespace, out: TextIO) -> int:
    api_keys = list(args.api_key) or ([os.environ[API_KEY_ENV]] if os.environ.get(API_KEY_ENV) else [])
    if not api_keys:
        print(f"error: pass --api-key or set {API_KEY_ENV}", file=sys.stderr)
        return 2
    if not args.allow_remote and not is_loopback(args.host):
        print(f"error: refusing to bind to {args.host}; pass --allow-remote to expose it", file=sys.stderr)
        return 2
    try:
        config = _config_from_args(args, api_keys)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = EmulatorState.load_or_new(config.state_file)
    if args.seed_users and state.user_count() == 0:
        state.seed_users(args.seed_users, seed=args.seed)
    for i in range(1, args.seed_embed_users + 1 if not state.embed_users() else 1):
        state.add_embed_user(f"ext-{i:05d}", email=f"embed{i:05d}@example.com")
    if config.state_file is not None:
        state.save(config.state_file)  # so `show` works before the first write

    server = EmulatorServer(
        config,
        state,
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        uvicorn_log_config=LOGGING_CONFIG,
    )
    server.bind()
    print(f"Omni emulator listening on {server.base_url}", file=out)
    print(f"  API base URL:  {server.api_url}", file=out)
    print(f"  admin routes:  {server.base_url}/_emulator/(stats|config|reset|users|save)", file=out)
    print(
        f"  users: {state.user_count()}  put_mode: {config.put_mode}  "
        f"API keys: {len(api_keys)}  personal tokens: {len(config.personal_tokens)}",
        file=out,
        flush=True,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM (flushing the state file), then re-raises
    # the signal; turn that into a clean exit instead of a traceback or a kill.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def _format_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _format_table(users: Sequence[UserRecord]) -> str:
    header = ("userName", "displayName", "active", "attributes")
    rows = [header] + [
        (
            u.user_name,
            u.display_name,
            "yes" if u.active else "no",
            ", ".join(f"{k}={_format_value(v)}" for k, v in sorted(u.attributes.items())) or "-",
        )
        for u in users
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
        if n == 0:
            lines.append("  ".join([*("-" * w for w in widths), "-" * len(header[-1])]))
    return "\n".join(lines)


def show(args: argparse.Namespace, out: TextIO) -> int:
    if not args.state_file.exists():
        print(f"error: no state file at {args.state_file}", file=sys.stderr)
        return 1
    users = EmulatorState.load(args.state_file).users()
    if args.email:
        users = [u for u in users if u.user_name.lower() == args.email.lower()]
        if not users:
            print(f"no user with email {args.email}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([u.to_json() for u in users], indent=2), file=out)
    else:
        print(_format_table(users), file=out)
        print(f"\n{len(users)} user(s)", file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    if args.command == "serve":
        return serve(args, stream)
    return show(args, stream)
