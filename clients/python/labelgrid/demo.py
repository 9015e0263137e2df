"""The demo project: scikit-learn's handwritten digits, added once under a fixed key."""

from __future__ import annotations

from labelgrid.client import QueueClient

DEMO_PROJECT = "digits"
DEMO_KEY = "sklearn-digits-v1"


def seed_demo(client: QueueClient, project: str = DEMO_PROJECT, n: int | None = None) -> int:
    """Create the digits project and add the images (a no-op when already added)."""
    import grpc
    from sklearn.datasets import load_digits

    images = load_digits().images[:n]
    try:
        client.create_project(project, range(10), allow_other=True, exist_ok=True)
    except grpc.RpcError as exc:  # made earlier with other settings: use it as it is
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    ids = client.add_features(project, images.astype("float32"), key=f"{DEMO_KEY}-{len(images)}")
    return len(ids)
