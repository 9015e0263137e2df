"""The `labelgrid` command: `queue serve`, `trainer serve`, `trainer run-once`, `stack`."""

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


def _trainer_serve(args: argparse.Namespace) -> int:
    from queue_service import logs
    from trainer_service.server import serve

    logs.configure(args.log_level)
    asyncio.run(serve(args.address, args.queue))
    return 0


def _trainer_run_once(args: argparse.Namespace) -> int:
    """One training run, then exit: for cron. Exit 0 when it ran (or all is labelled),
    2 when there were not enough labels, 1 when the model failed."""
    import json

    from labelgrid.client import QueueClient
    from queue_service import logs
    from trainer_service import models
    from trainer_service.loop import ActiveLearner

    logs.configure(args.log_level)
    with QueueClient(args.queue) as client:
        learner = ActiveLearner(
            client,
            args.project,
            models.load(args.model, args.params),
            acquisition_function=args.acquisition,
            shuffle_prop=args.shuffle_prop,
            trainer_name="trainer-cli",
        )
        result = learner.run_once()
    print(
        json.dumps(
            {
                "status": result.status,
                "message": result.message,
                "score": result.score,
                "labels": result.n_labels,
                "model_version": result.model_version,
            }
        )
    )
    return 0 if result.ok else (2 if result.status == "not_enough_labels" else 1)


def _stack(args: argparse.Namespace) -> int:
    from labelgrid.stack import run_stack

    return run_stack(
        args.database_url,
        args.queue_address,
        args.trainer_address,
        args.page_port,
        demo=not args.no_demo,
        trainer=not args.no_trainer,
        page=not args.no_page,
    )


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

    trainer = sub.add_parser("trainer", help="the trainer service")
    trainer_sub = trainer.add_subparsers(dest="action", required=True)
    tserve = trainer_sub.add_parser("serve", help="serve TrainerService over gRPC")
    tserve.add_argument(
        "--address", default=os.environ.get("LABELGRID_TRAINER_ADDRESS", "127.0.0.1:50052")
    )
    tserve.add_argument(
        "--queue",
        default=os.environ.get("LABELGRID_SERVER", "127.0.0.1:50051"),
        help="the queue service's HOST:PORT (env LABELGRID_SERVER)",
    )
    tserve.add_argument("--log-level", default=os.environ.get("LABELGRID_LOG_LEVEL", "INFO"))
    tserve.set_defaults(func=_trainer_serve)
    once = trainer_sub.add_parser("run-once", help="one training run, then exit (for cron)")
    once.add_argument("--queue", default=os.environ.get("LABELGRID_SERVER", "127.0.0.1:50051"))
    once.add_argument("--project", required=True)
    once.add_argument("--model", default="sklearn.linear_model:LogisticRegression")
    once.add_argument("--params", default="{}", help="model keyword arguments as JSON")
    once.add_argument("--acquisition", default="margin")
    once.add_argument("--shuffle-prop", type=float, default=0.1)
    once.add_argument("--log-level", default=os.environ.get("LABELGRID_LOG_LEVEL", "WARNING"))
    once.set_defaults(func=_trainer_run_once)

    stack = sub.add_parser("stack", help="queue + trainer + labelling page, on this machine")
    stack.add_argument(
        "--database-url",
        default=os.environ.get("LABELGRID_DATABASE_URL", "sqlite:///./labelgrid.db"),
    )
    stack.add_argument("--queue-address", default="127.0.0.1:50051")
    stack.add_argument("--trainer-address", default="127.0.0.1:50052")
    stack.add_argument("--page-port", type=int, default=8866)
    stack.add_argument("--no-demo", action="store_true")
    stack.add_argument("--no-trainer", action="store_true")
    stack.add_argument("--no-page", action="store_true")
    stack.set_defaults(func=_stack)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
