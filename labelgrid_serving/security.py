"""The security settings both servers take the same way: auth or loopback only, TLS, and
client certificates (flags --auth, --insecure-no-auth, --tls-cert, --tls-key,
--tls-client-ca; LABELGRID_AUTH, ... in the environment)."""

from __future__ import annotations

import grpc


class ConfigError(ValueError):
    """A server refuses to start with this configuration; the message says why."""


def is_loopback(address: str) -> bool:
    """True for addresses only this machine can reach (loopback IPs, localhost, unix sockets)."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def check_security(
    address: str,
    *,
    auth: bool,
    insecure_no_auth: bool,
    tls_cert: str,
    tls_key: str,
    tls_client_ca: str,
    how_to_auth: str,
) -> None:
    """Refuse a non-loopback address without auth (unless told --insecure-no-auth), and
    half a TLS configuration. `how_to_auth` finishes the sentence "enable it with ..."."""
    if not auth and not insecure_no_auth and not is_loopback(address):
        raise ConfigError(
            f"refusing to serve on {address} without authentication: enable it with "
            f"{how_to_auth}, or pass --insecure-no-auth if a network boundary protects "
            "this port"
        )
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if tls_client_ca and not tls_cert:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")


def server_credentials(
    tls_cert: str, tls_key: str, tls_client_ca: str
) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM paths (None without a certificate); with a client CA,
    clients must present a certificate it signed."""
    if not tls_cert:
        return None
    with open(tls_key, "rb") as key, open(tls_cert, "rb") as cert:
        pair = (key.read(), cert.read())
    ca = None
    if tls_client_ca:
        with open(tls_client_ca, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


def bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    """The token of an `authorization: Bearer <token>` header, or None."""
    header = dict(context.invocation_metadata() or ()).get("authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        return None
    return header[7:].strip()


def listen(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None
) -> int:
    """Bind `address` (TLS with `credentials`) and return the port; a taken or unusable
    address is a ConfigError naming it, not grpc's RuntimeError traceback. The servers are
    built without SO_REUSEPORT, so a second server on a taken port fails here instead of
    silently sharing the port with the first."""
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(
            f"cannot listen on {address}: the port is taken (another labelgrid?) or the "
            "address is not on this machine"
        )
    return port
