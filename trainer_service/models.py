"""Models named by import path with JSON parameters: nothing executable crosses the wire."""

from __future__ import annotations

import importlib
import json
from typing import Any

from sklearn.base import clone


def load(spec: str, params: dict[str, Any] | str | None = None) -> Any:
    """`module.path:Name` with keyword parameters -> a fresh estimator.

    `Name` may be an estimator class (`sklearn.linear_model:LogisticRegression`) or a factory
    function on the trainer's path (`mypkg.models:make_model`) returning one.
    """
    if ":" not in spec:
        raise ValueError(f"model {spec!r} must look like 'package.module:Name'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import model {spec!r}: {exc}") from None
    if isinstance(params, str):
        params = json.loads(params) if params else {}
    if not isinstance(params or {}, dict):
        raise ValueError("model parameters must be a JSON object")
    model = factory(**(params or {}))
    for method in ("fit", "predict_proba"):
        if not hasattr(model, method):
            raise ValueError(f"model {spec!r} has no {method}(); active learning needs both")
    return model


def fresh(model: Any) -> Any:
    """An unfitted copy, so a failed fit never leaves a half-trained shared model behind."""
    try:
        return clone(model)
    except (TypeError, RuntimeError):
        return model
