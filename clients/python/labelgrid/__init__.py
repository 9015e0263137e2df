"""labelgrid: distributed data labelling with active learning over gRPC.

The widgets are imported lazily, so the services and plain clients never load ipywidgets.
"""

from typing import Any

from labelgrid.client import Item, QueueClient

__all__ = ["ClassLabeller", "Item", "MultiClassLabeller", "QueueClient", "SemiSupervisor"]
__version__ = "0.1.0"

_WIDGETS = {"ClassLabeller", "MultiClassLabeller", "SemiSupervisor"}


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        from labelgrid import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'labelgrid' has no attribute {name!r}")
