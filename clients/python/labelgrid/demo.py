"""The demo project: scikit-learn's handwritten digits, added once under a fixed key."""

from __future__ import annotations

from labelgrid.client import QueueClient

DEMO_PROJECT = "digits"
DEMO_KEY = "sklearn-digits-v1"
DEMO_INSTRUCTIONS = """\
**Which digit is this?** Each picture is an 8 by 8 scan of a handwritten digit.

- Press the digit's key (or click its button); the next picture is already there.
- Not sure? **Skip** gives the picture back to someone else. **Undo** takes back your last
  labels, one at a time.
- Not a digit at all? Type what it is in *Other* and press Enter.
"""


def seed_demo(client: QueueClient, project: str = DEMO_PROJECT, n: int | None = None) -> int:
    """Create the digits project (with its instructions) and add the images (a no-op when
    already added)."""
    import grpc
    from sklearn.datasets import load_digits

    images = load_digits().images[:n]
    try:
        made = client.create_project(
            project, range(10), allow_other=True, exist_ok=True, instructions=DEMO_INSTRUCTIONS
        )
    except grpc.RpcError as exc:  # made earlier with other settings: use it as it is
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        made = client.get_project(project)
    if not made.instructions:  # a project made before instructions existed
        client.set_instructions(project, DEMO_INSTRUCTIONS)
    ids = client.add_features(project, images.astype("float32"), key=f"{DEMO_KEY}-{len(images)}")
    return len(ids)
