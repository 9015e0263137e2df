"""Two people label one project at once, from two processes, on a PostgreSQL-backed service."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labelgrid.distributed import ClassLabeller
from tests.support.servers import ServiceProcess

LABELLER = """
import json, sys
from labelgrid.distributed import ClassLabeller
address, project, worker = sys.argv[1:4]
widget = ClassLabeller(server=address, table_name=project, worker_id=worker)
widget.start()
shown = []
while widget.session.current is not None:
    item = widget.session.current
    shown.append(item.id)
    widget.option_buttons[item.input % 2].click()
widget.session.flush()
print(json.dumps({"shown": shown, "errors": widget.messages}))
"""


@pytest.mark.parametrize("backend", ["postgres"])
def test_two_widget_processes_share_one_project(service: ServiceProcess, project_name: str) -> None:
    setup = ClassLabeller(server=service.address, table_name=project_name, options=["even", "odd"])
    ids = setup.add_features(list(range(300)))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LABELLER, service.address, project_name, w],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in ("ann", "bob")
    ]
    results = [json.loads(p.communicate(timeout=300)[0].splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ann, bob = (set(r["shown"]) for r in results)
    assert not ann & bob, "an item was shown to both labellers"
    assert ann | bob == set(ids)
    assert ann and bob  # both really labelled
    assert results[0]["errors"] == [] and results[1]["errors"] == []
    labels = setup.new_labels
    assert labels == ["even" if i % 2 == 0 else "odd" for i in range(300)]
