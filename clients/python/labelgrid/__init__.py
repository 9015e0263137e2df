"""labelgrid: distributed data labelling with active learning over gRPC."""

from labelgrid.client import Item, QueueClient

__all__ = ["Item", "QueueClient"]
__version__ = "0.1.0"
