"""Notebook widgets; importing this needs ipywidgets (the services never do)."""

from labelgrid.widgets.labeller import ClassLabeller, MultiClassLabeller, SemiSupervisor

__all__ = ["ClassLabeller", "MultiClassLabeller", "SemiSupervisor"]
