"""`labelgrid.v1`, kept for users: the generated contract now lives in `labelgrid_proto.v1`.

`from labelgrid.v1 import queue_pb2` and `import labelgrid.v1.queue_pb2` keep working; both
give the very modules of `labelgrid_proto.v1` (one descriptor pool, one set of classes).
"""

import sys

from labelgrid_proto.v1 import (
    arrays_pb2,
    arrays_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

for _module in (
    arrays_pb2,
    arrays_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module

__all__ = [
    "arrays_pb2",
    "arrays_pb2_grpc",
    "queue_pb2",
    "queue_pb2_grpc",
    "trainer_pb2",
    "trainer_pb2_grpc",
]
