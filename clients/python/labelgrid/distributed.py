"""Drop-in names for `superintendent.distributed`: change the import, keep the code."""

from labelgrid.widgets import ClassLabeller, MultiClassLabeller, SemiSupervisor

__all__ = ["ClassLabeller", "MultiClassLabeller", "SemiSupervisor"]
