"""What users pass as features, normalised to what the contract carries.

A numeric array (or an all-numeric DataFrame) travels as one batched array, a row per item;
anything else becomes one payload per item: PIL images as uint8 arrays, paths as URIs,
text as text, DataFrame rows of mixed types and other values as small JSON.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np


def _is_dataframe(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "to_numpy") and hasattr(x, "dtypes")


def _is_series(x: Any) -> bool:
    return type(x).__name__ == "Series" and hasattr(x, "to_numpy") and hasattr(x, "dtype")


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "mode") and hasattr(x, "size")


def as_rows(features: Any) -> np.ndarray | None:
    """The features as one array (axis 0 = items) when they are uniformly numeric."""
    if isinstance(features, np.ndarray) and features.ndim >= 1 and features.dtype.kind in "biufc":
        return features
    if _is_dataframe(features) and all(dt.kind in "biufc" for dt in features.dtypes):
        return features.to_numpy()
    return None


def as_values(features: Any) -> list[Any]:
    """One Python value per item, ready for `payloads.to_payload`."""
    if _is_dataframe(features):
        # mixed columns: each row as a JSON object (numpy scalars become Python numbers)
        return [json.loads(row.to_json()) for _, row in features.iterrows()]
    if _is_series(features):
        return [normalise_value(v) for v in features.tolist()]
    return [normalise_value(v) for v in features]


def normalise_value(value: Any) -> Any:
    if _is_pil(value):
        return np.asarray(value)
    if _is_series(value):
        return value.to_numpy() if value.dtype.kind in "biufc" else json.loads(value.to_json())
    if isinstance(value, os.PathLike):
        return value
    return value


def count(features: Any) -> int:
    return len(features)
