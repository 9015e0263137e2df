"""Errors the store and handlers raise; each carries the gRPC status the caller receives."""

from __future__ import annotations

import grpc


class QueueError(Exception):
    """A request the service refuses; `code` is the gRPC status, the message says what to fix."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(QueueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(QueueError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(QueueError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(QueueError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(QueueError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(QueueError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(QueueError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(QueueError):
    """The database could not be reached; the call may be retried."""

    code = grpc.StatusCode.UNAVAILABLE
