"""Client conversions (pandas, PIL, paths) and the asyncio client, against a real service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from labelgrid import QueueClient
from labelgrid.aio import AsyncQueueClient
from tests.support.servers import ServiceProcess


def _inputs(client: QueueClient, project: str) -> list:
    from labelgrid import payloads

    return [
        payloads.from_payload(i.input) for c in client.stream_unlabelled(project) for i in c.items
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_dataframes_images_and_paths(
    client: QueueClient, project_name: str, tmp_path: Path
) -> None:
    client.create_project(project_name, ["a"])
    numeric = pd.DataFrame({"x": [1.5, 2.5], "y": [3.0, 4.0]})
    client.add_features(project_name, numeric)
    mixed = pd.DataFrame({"name": ["ann", "bob"], "age": [31, 42]})
    client.add_features(project_name, mixed)
    client.add_features(project_name, pd.Series(["s1", "s2"]))
    image = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    path = tmp_path / "cat.png"
    image.save(path)
    client.add_features(project_name, [image, path])
    got = _inputs(client, project_name)
    np.testing.assert_array_equal(got[0], [1.5, 3.0])
    assert got[0].dtype == np.float64
    assert got[2:4] == [{"name": "ann", "age": 31}, {"name": "bob", "age": 42}]
    assert got[4:6] == ["s1", "s2"]
    assert got[6].dtype == np.uint8 and got[6].shape == (2, 2, 3)
    assert got[7] == str(path)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_async_client_round_trip(service: ServiceProcess, project_name: str) -> None:
    async def scenario() -> list[str]:
        async with AsyncQueueClient(service.address) as client:
            await client.create_project(project_name, ["x", "y"])
            ids = await client.add_features(project_name, np.eye(3, dtype=np.float32), key="k")
            assert ids == await client.add_features(
                project_name, np.eye(3, dtype=np.float32), key="k"
            )
            await client.update_priorities(project_name, ids, [0.0, 2.0, 1.0], model_version=1)

            async def label(worker: str) -> None:
                while items := await client.pop(project_name, worker):
                    await client.submit(project_name, items[0], "x", worker)

            order = []
            first = (await client.pop(project_name, "w0"))[0]
            order.append(first.id)
            await client.release(project_name, first, "w0")
            await asyncio.gather(label("w1"), label("w2"))
            progress = await client.progress(project_name)
            assert progress.labelled == 3
            labelled = [
                i.item_id async for c in client.stream_labelled(project_name) for i in c.items
            ]
            assert sorted(labelled) == ids and order == [ids[1]]
            return [w.worker_id for w in progress.workers]

    workers = asyncio.run(scenario())
    assert set(workers) <= {"w1", "w2"}
