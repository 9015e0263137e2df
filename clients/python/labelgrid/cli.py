"""The `labelgrid` command: `labelgrid queue serve …` (more subcommands as services land)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def _queue_serve(args: argparse.Namespace) -> int:
    from queue_service import logs
    from queue_service.config import Settings
    from queue_service.server import serve

    logs.configure(args.log_level)
    settings = Settings.from_env(
        address=args.address,
        database_url=args.database_url,
        max_message_bytes=args.max_message_bytes,
    )
    asyncio.run(serve(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelgrid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    queue = sub.add_parser("queue", help="the queue service")
    queue_sub = queue.add_subparsers(dest="action", required=True)
    serve = queue_sub.add_parser("serve", help="serve QueueService over gRPC")
    serve.add_argument(
        "--address", help="HOST:PORT to listen on (env LABELGRID_ADDRESS; default 127.0.0.1:50051)"
    )
    serve.add_argument(
        "--database-url",
        help="SQLAlchemy URL (env LABELGRID_DATABASE_URL; default sqlite+aiosqlite:///./labelgrid.db)",
    )
    serve.add_argument(
        "--max-message-bytes",
        type=int,
        help="largest message accepted (env LABELGRID_MAX_MESSAGE_BYTES)",
    )
    serve.add_argument("--log-level", default=os.environ.get("LABELGRID_LOG_LEVEL", "INFO"))
    serve.set_defaults(func=_queue_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
