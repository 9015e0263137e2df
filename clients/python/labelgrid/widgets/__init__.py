"""Notebook widgets (labelgrid[widgets]); the services and plain clients never import this."""

from labelgrid.extras import require

require("widgets", "the labelling widgets")

from labelgrid.widgets.labeller import (  # noqa: E402  (after the one-line extra check)
    ClassLabeller,
    MultiClassLabeller,
    SemiSupervisor,
)

__all__ = ["ClassLabeller", "MultiClassLabeller", "SemiSupervisor"]
