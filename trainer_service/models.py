"""Models named by import path with JSON parameters: nothing executable crosses the wire."""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

from sklearn.base import clone

#: Modules models and hooks may come from, unless the trainer is told otherwise
#: (LABELGRID_TRAINER_MODULES, comma-separated prefixes). Anything importable could run code,
#: so a caller may only name what the trainer's operator allowed.
DEFAULT_MODULES = ("sklearn.",)


def allowed_modules() -> tuple[str, ...]:
    extra = os.environ.get("LABELGRID_TRAINER_MODULES", "")
    return DEFAULT_MODULES + tuple(p.strip() for p in extra.split(",") if p.strip())


def check_allowed(spec: str) -> None:
    module = spec.partition(":")[0]
    if not any(module == p.rstrip(".") or module.startswith(p) for p in allowed_modules()):
        raise ValueError(
            f"{spec!r} is not from an allowed module {list(allowed_modules())}; the trainer's "
            "operator can allow more with LABELGRID_TRAINER_MODULES (comma-separated prefixes)"
        )


def resolve(spec: str) -> Any:
    """The object at `package.module:Name`, if its module is allowed; ValueError otherwise."""
    if ":" not in spec:
        raise ValueError(f"{spec!r} must look like 'package.module:Name'")
    check_allowed(spec)
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {spec!r}: {exc}") from None


def load(spec: str, params: dict[str, Any] | str | None = None) -> Any:
    """`module.path:Name` with keyword parameters -> a fresh estimator.

    `Name` may be an estimator class (`sklearn.linear_model:LogisticRegression`) or a factory
    function on the trainer's path (`mypkg.models:make_model`) returning one; its module must
    be allowed (see `allowed_modules`).
    """
    factory = resolve(spec)
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
