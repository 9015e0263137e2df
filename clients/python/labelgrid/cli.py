"""The `labelgrid` command: queue serve, trainer serve/run-once, health, demo seed, agreement,
export, page, stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from labelgrid.extras import MissingExtra, require


def number(kind: type, low: float, high: float = math.inf) -> Callable[[str], float]:
    """An argparse type: `kind` between `low` and `high` (argparse's one-line error else)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high or math.isinf(value):
            upper = "" if math.isinf(high) else f" and at most {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: give a number of {low:g} or more{upper}")
        return value

    return parse


def needs(*extras: str) -> Callable:
    """Check the extras a command needs before it imports them (one-line error otherwise)."""

    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            for extra in extras:
                require(extra, f"`labelgrid {args.command_name}`")
            return fn(args)

        return run

    return wrap


@needs("queue")
def _queue_serve(args: argparse.Namespace) -> int:
    from queue_service import logs
    from queue_service.config import Settings
    from queue_service.server import serve

    logs.configure(args.log_level)
    from labelgrid_serving import loop as serving_loop

    settings = Settings.from_env(
        address=args.address,
        web_address=args.web_address,
        database_url=args.database_url,
        max_message_bytes=args.max_message_bytes,
        **_security_settings(args),
        metrics_address=args.metrics_address,
    )
    serving_loop.run(serve(settings))
    return 0


@needs("queue")
def _token(args: argparse.Namespace) -> int:
    """Manage API tokens directly in the database (this is how the first admin token is made)."""
    import json

    from queue_service import auth
    from queue_service.config import Settings
    from queue_service.errors import QueueError
    from queue_service.store import Store

    url = args.database_url or Settings.from_env().database_url

    async def run() -> int:
        store = await Store.open(url)
        try:
            if args.action == "create":
                token = auth.new_token()
                await store.create_token(
                    args.name,
                    args.role,
                    args.project or None,
                    args.any_worker,
                    auth.hash_token(token),
                )
                print(token)  # shown once; only its hash is stored
            elif args.action == "ensure":
                for spec in args.spec:
                    name, role, variable, *flags = spec.split(":")
                    token = os.environ.get(variable, "")
                    if role not in auth.ROLES or not token or set(flags) - {"any-worker"}:
                        print(
                            f"labelgrid: bad --spec {spec!r} (NAME:ROLE:ENV_VAR[:any-worker],"
                            f" with ${variable} set)",
                            file=sys.stderr,
                        )
                        return 2
                    known = await store.find_token(auth.hash_token(token))
                    if known is not None and known.name == name:
                        print(f"token {name!r} already present")
                        continue
                    await store.create_token(
                        name, role, None, "any-worker" in flags, auth.hash_token(token)
                    )
                    print(f"token {name!r} stored")
            elif args.action == "list":
                for row in await store.list_tokens():
                    print(json.dumps(row, default=str))
            elif args.action == "revoke":
                if not await store.revoke_token(args.name):
                    print(f"labelgrid: no live token named {args.name!r}", file=sys.stderr)
                    return 1
                print(f"revoked {args.name!r}")
            return 0
        except QueueError as exc:
            print(f"labelgrid: {exc}", file=sys.stderr)
            return 1
        finally:
            await store.close()

    return asyncio.run(run())


@needs("trainer")
def _trainer_serve(args: argparse.Namespace) -> int:
    from labelgrid_serving import loop as serving_loop
    from queue_service import logs
    from trainer_service.config import TrainerSettings
    from trainer_service.server import serve

    logs.configure(args.log_level)
    jobs = [_job_spec(text) for text in args.job]
    settings = TrainerSettings.from_env(
        address=args.address,
        queue_address=args.queue,
        **_security_settings(args),
        queue_tls_ca=args.queue_tls_ca,
        queue_tls_cert=args.queue_tls_cert,
        queue_tls_key=args.queue_tls_key,
        metrics_address=args.metrics_address,
    )
    serving_loop.run(serve(settings, jobs=jobs))
    return 0


def _job_spec(text: str):
    """`PROJECT=MODEL`, with settings from LABELGRID_TRAINER_* environment variables."""
    from labelgrid_proto.v1 import trainer_pb2

    project, sep, model = text.partition("=")
    if not sep or not project or not model:
        raise SystemExit(f"--job {text!r}: expected PROJECT=package.module:Model")
    env = os.environ.get
    return trainer_pb2.JobSpec(
        project=project,
        model=model,
        model_params_json=env("LABELGRID_TRAINER_PARAMS", "{}") or "{}",
        acquisition=env("LABELGRID_TRAINER_ACQUISITION", "margin") or "margin",
        shuffle_prop=float(env("LABELGRID_TRAINER_SHUFFLE_PROP", "0.1") or 0.1),
        interval_seconds=float(env("LABELGRID_TRAINER_INTERVAL_SECONDS", "30") or 30),
        interval_n_labels=int(env("LABELGRID_TRAINER_INTERVAL_N_LABELS", "0") or 0),
        consensus=env("LABELGRID_TRAINER_CONSENSUS", "auto") or "auto",
    )


def _health(args: argparse.Namespace) -> int:
    """Exit 0 when the gRPC service at the address reports SERVING (for container checks)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if args.tls_ca or args.tls_cert:

        def read(path: str | None) -> bytes | None:
            return open(path, "rb").read() if path else None

        credentials = grpc.ssl_channel_credentials(
            read(args.tls_ca), read(args.tls_key), read(args.tls_cert)
        )
        channel = grpc.secure_channel(args.address, credentials)
    else:
        channel = grpc.insecure_channel(args.address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if serving else 1


@needs("trainer")
def _demo_seed(args: argparse.Namespace) -> int:
    from labelgrid.client import QueueClient
    from labelgrid.demo import seed_demo
    from labelgrid.stack import wait_serving

    wait_serving(args.server, timeout=args.wait)
    with QueueClient(args.server, token=args.token) as client:
        n = seed_demo(client, args.project, args.n)
    print(f"project {args.project!r} holds the {n} demo items (added once)")
    return 0


def _agreement(args: argparse.Namespace) -> int:
    """Print a project's agreement: overall, per label, per worker pair and per worker."""
    from google.protobuf.json_format import MessageToDict

    from labelgrid.client import QueueClient

    with QueueClient(args.server, token=args.token) as client:
        found = client.agreement(args.project, consensus=args.consensus)
    if args.json:
        print(json.dumps(MessageToDict(found, preserving_proto_field_name=True), indent=2))
        return 0

    def num(msg: object, field: str) -> str:
        return f"{getattr(msg, field):.3f}" if msg.HasField(field) else "-"  # type: ignore[attr-defined]

    print(
        f"{found.items} items with several labels, {found.annotations} annotations\n"
        f"percent agreement {num(found, 'percent')}  Fleiss' kappa {num(found, 'fleiss_kappa')} "
        f"(over {found.fleiss_items} items)  Krippendorff's alpha "
        f"{num(found, 'krippendorff_alpha')}"
    )
    for label in found.labels:
        print(f"  label {label.label}: alpha {num(label, 'krippendorff_alpha')}")
    for pair in found.pairs:
        print(
            f"  {pair.worker_a} / {pair.worker_b}: {pair.items} items, "
            f"{num(pair, 'percent')} agree, Cohen's kappa {num(pair, 'cohen_kappa')}"
        )
    for w in found.workers:
        print(
            f"  {w.worker_id}: {w.labels} labels, {num(w, 'agreement_with_consensus')} with "
            f"the {args.consensus} consensus, {num(w, 'seconds_per_label')} s per label"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    """Write a project's labels as CSV, JSON lines or Parquet (labelgrid.export), streamed."""
    import grpc

    from labelgrid import export
    from labelgrid.client import QueueClient

    if args.format == "parquet":
        require("export", "`labelgrid export --format parquet`")
    to_stdout = args.output == "-"
    if to_stdout and args.format == "parquet" and sys.stdout.isatty():
        print("labelgrid: Parquet is binary; give --output FILE (or redirect)", file=sys.stderr)
        return 2
    partial = f"{args.output}.partial"
    try:
        with QueueClient(args.server, token=args.token) as client:
            if to_stdout:
                n = export.write(
                    client, args.project, args.format, sys.stdout.buffer, consensus=args.consensus
                )
                sys.stdout.buffer.flush()
            else:
                # written beside the target and renamed when complete: a broken export never
                # leaves a truncated file under the name asked for
                with open(partial, "wb") as f:
                    n = export.write(client, args.project, args.format, f, consensus=args.consensus)
                os.replace(partial, args.output)
    except grpc.RpcError as exc:
        print(f"labelgrid: export failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        if not to_stdout and os.path.exists(partial):
            os.remove(partial)
    if not to_stdout:
        print(f"exported {n} rows of {args.project!r} to {args.output}", file=sys.stderr)
    return 0


@needs("widgets", "page")
def _page(args: argparse.Namespace) -> int:
    from labelgrid.stack import page_command

    os.execv(sys.executable, page_command(args.port, ip=args.ip))
    return 0


@needs("trainer")
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


@needs("queue", "trainer")
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


def _security_flags(parser: argparse.ArgumentParser, auth_help: str) -> None:
    """The flags both servers take alike (labelgrid_serving.security reads them)."""
    parser.add_argument("--auth", action="store_true", help=auth_help)
    parser.add_argument(
        "--insecure-no-auth", action="store_true", help="allow a non-loopback address without auth"
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain (env LABELGRID_TLS_CERT)")
    parser.add_argument("--tls-key", help="PEM private key (env LABELGRID_TLS_KEY)")
    parser.add_argument(
        "--tls-client-ca", help="require client certificates signed by this CA (PEM)"
    )


def _security_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What `_security_flags` gave, as either server's settings keywords (None: from the
    environment)."""
    return {
        "auth": True if args.auth else None,
        "insecure_no_auth": True if args.insecure_no_auth else None,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
    }


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
        "--web-address",
        help="also serve the labelling web app and Connect (HTTP) on HOST:PORT "
        "(env LABELGRID_WEB_ADDRESS; default off)",
    )
    serve.add_argument(
        "--database-url",
        help="SQLAlchemy URL (env LABELGRID_DATABASE_URL; default sqlite+aiosqlite:///./labelgrid.db)",
    )
    serve.add_argument(
        "--max-message-bytes",
        type=number(int, 1),
        help="largest message accepted (env LABELGRID_MAX_MESSAGE_BYTES)",
    )
    _security_flags(serve, "require API tokens (env LABELGRID_AUTH=true)")
    serve.add_argument(
        "--metrics-address",
        help="serve Prometheus metrics over HTTP on HOST:PORT (env LABELGRID_METRICS_ADDRESS)",
    )
    serve.add_argument("--log-level", default=os.environ.get("LABELGRID_LOG_LEVEL", "INFO"))
    serve.set_defaults(func=_queue_serve)

    token = sub.add_parser("token", help="API tokens (stored as hashes in the database)")
    token_sub = token.add_subparsers(dest="action", required=True)
    create = token_sub.add_parser("create", help="make a token and print it once")
    create.add_argument("--name", required=True, help="also the worker id of a labeller token")
    create.add_argument("--role", required=True, choices=["admin", "trainer", "labeller"])
    create.add_argument("--project", action="append", help="restrict to a project (repeatable)")
    create.add_argument(
        "--any-worker",
        action="store_true",
        help="a labeller token that may name workers (trusted front ends)",
    )
    create.set_defaults(func=_token)
    ensure = token_sub.add_parser(
        "ensure", help="store tokens given in environment variables, if absent (deployments)"
    )
    ensure.add_argument(
        "--spec", action="append", required=True, metavar="NAME:ROLE:ENV_VAR[:any-worker]"
    )
    ensure.set_defaults(func=_token)
    token_sub.add_parser("list", help="list tokens (never their values)").set_defaults(func=_token)
    revoke = token_sub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    revoke.set_defaults(func=_token)
    token.add_argument("--database-url", help="default: LABELGRID_DATABASE_URL")

    trainer = sub.add_parser("trainer", help="the trainer service")
    trainer_sub = trainer.add_subparsers(dest="action", required=True)
    tserve = trainer_sub.add_parser("serve", help="serve TrainerService over gRPC")
    tserve.add_argument(
        "--address", help="HOST:PORT to listen on (env LABELGRID_TRAINER_ADDRESS; 127.0.0.1:50052)"
    )
    tserve.add_argument(
        "--queue", help="the queue service's HOST:PORT (env LABELGRID_SERVER; 127.0.0.1:50051)"
    )
    _security_flags(
        tserve, "require API tokens, checked with the queue service (env LABELGRID_AUTH=true)"
    )
    tserve.add_argument(
        "--queue-tls-ca", help="CA of the queue service's certificate (env LABELGRID_QUEUE_TLS_CA)"
    )
    tserve.add_argument("--queue-tls-cert", help="client certificate for the queue service")
    tserve.add_argument("--queue-tls-key", help="its private key")
    tserve.add_argument(
        "--metrics-address",
        help="serve Prometheus metrics on HOST:PORT (env LABELGRID_TRAINER_METRICS_ADDRESS)",
    )
    tserve.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="PROJECT=MODEL",
        help="start a job for PROJECT at startup (repeatable); settings from "
        "LABELGRID_TRAINER_PARAMS, _ACQUISITION, _SHUFFLE_PROP, "
        "_INTERVAL_SECONDS, _INTERVAL_N_LABELS, _CONSENSUS",
    )
    tserve.add_argument("--log-level", default=os.environ.get("LABELGRID_LOG_LEVEL", "INFO"))
    tserve.set_defaults(func=_trainer_serve)
    once = trainer_sub.add_parser("run-once", help="one training run, then exit (for cron)")
    once.add_argument("--queue", default=os.environ.get("LABELGRID_SERVER", "127.0.0.1:50051"))
    once.add_argument("--project", required=True)
    once.add_argument("--model", default="sklearn.linear_model:LogisticRegression")
    once.add_argument("--params", default="{}", help="model keyword arguments as JSON")
    once.add_argument("--acquisition", default="margin")
    once.add_argument("--shuffle-prop", type=number(float, 0, 1), default=0.1)
    once.add_argument("--log-level", default=os.environ.get("LABELGRID_LOG_LEVEL", "WARNING"))
    once.set_defaults(func=_trainer_run_once)

    health = sub.add_parser("health", help="check a service with the gRPC health protocol")
    health.add_argument(
        "--address", default=os.environ.get("LABELGRID_HEALTH_ADDRESS", "127.0.0.1:50051")
    )
    health.add_argument("--service", default="", help="service name ('' = the whole server)")
    health.add_argument("--timeout", type=number(float, 0), default=3.0)
    health.add_argument(
        "--tls-ca",
        default=os.environ.get("LABELGRID_HEALTH_TLS_CA") or None,
        help="CA of a TLS server's certificate (env LABELGRID_HEALTH_TLS_CA)",
    )
    health.add_argument(
        "--tls-cert",
        default=os.environ.get("LABELGRID_HEALTH_TLS_CERT") or None,
        help="client certificate, where the server asks for one (env LABELGRID_HEALTH_TLS_CERT)",
    )
    health.add_argument(
        "--tls-key",
        default=os.environ.get("LABELGRID_HEALTH_TLS_KEY") or None,
        help="the client certificate's key (env LABELGRID_HEALTH_TLS_KEY)",
    )
    health.set_defaults(func=_health)

    demo = sub.add_parser("demo", help="the demo dataset")
    demo_sub = demo.add_subparsers(dest="action", required=True)
    seed = demo_sub.add_parser("seed", help="add scikit-learn's digits once")
    seed.add_argument("--server", default=os.environ.get("LABELGRID_SERVER", "127.0.0.1:50051"))
    seed.add_argument("--project", default=os.environ.get("LABELGRID_PROJECT", "digits"))
    seed.add_argument("-n", type=number(int, 1), default=None, help="only the first n images")
    seed.add_argument(
        "--wait", type=number(float, 0), default=60.0, help="seconds to wait for the queue"
    )
    seed.add_argument("--token", default=None, help="API token (default: env LABELGRID_TOKEN)")
    seed.set_defaults(func=_demo_seed)

    agree = sub.add_parser("agreement", help="how much a project's annotators agree")
    agree.add_argument("--server", default=os.environ.get("LABELGRID_SERVER", "127.0.0.1:50051"))
    agree.add_argument("--project", required=True)
    agree.add_argument("--consensus", choices=["majority", "dawid_skene"], default="majority")
    agree.add_argument("--json", action="store_true", help="the full GetAgreement reply")
    agree.add_argument("--token", default=None, help="API token (default: env LABELGRID_TOKEN)")
    agree.set_defaults(func=_agreement)

    exp = sub.add_parser(
        "export", help="a project's labels as CSV, JSON lines or Parquet (streamed)"
    )
    exp.add_argument("project")
    exp.add_argument("--server", default=os.environ.get("LABELGRID_SERVER", "127.0.0.1:50051"))
    exp.add_argument("--token", default=None, help="API token (default: env LABELGRID_TOKEN)")
    exp.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    exp.add_argument("--output", "-o", default="-", help="a file, or - for stdout (default)")
    exp.add_argument(
        "--consensus",
        choices=["auto", "none", "majority", "dawid_skene"],
        default="auto",
        help="consensus columns: auto = majority when the project's overlap or max_overlap "
        "is above 1",
    )
    exp.set_defaults(func=_export)

    page = sub.add_parser(
        "page",
        help="serve the Voila labelling page (optional, for notebook users; one Python kernel "
        "per visitor: the web app of `queue serve --web-address` is the default)",
    )
    page.add_argument("--port", type=number(int, 0, 65535), default=8866)
    page.add_argument("--ip", default="127.0.0.1")
    page.set_defaults(func=_page)

    stack = sub.add_parser("stack", help="queue + trainer + labelling web app, on this machine")
    stack.add_argument(
        "--database-url",
        default=os.environ.get("LABELGRID_DATABASE_URL", "sqlite:///./labelgrid.db"),
    )
    stack.add_argument("--queue-address", default="127.0.0.1:50051")
    stack.add_argument("--trainer-address", default="127.0.0.1:50052")
    stack.add_argument(
        "--page-port",
        type=number(int, 0, 65535),
        default=8866,
        help="the web app's port (on 127.0.0.1)",
    )
    stack.add_argument("--no-demo", action="store_true")
    stack.add_argument("--no-trainer", action="store_true")
    stack.add_argument("--no-page", action="store_true", help="no web app")
    stack.set_defaults(func=_stack)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_name = " ".join(
        str(getattr(args, key)) for key in ("command", "action") if getattr(args, key, None)
    )
    import grpc

    from labelgrid_serving.security import ConfigError

    try:
        return args.func(args)
    except (MissingExtra, ConfigError) as exc:  # a refusal to start: one line, not a traceback
        print(f"labelgrid: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:  # a refusal or an outage: one line, not a traceback
        code = exc.code().name if callable(getattr(exc, "code", None)) else "UNKNOWN"
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        print(f"labelgrid {args.command_name}: {code}: {details}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
