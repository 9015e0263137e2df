"""Embedded mode: the queue service inside the notebook's process, on SQLite or PostgreSQL."""

from __future__ import annotations

import numpy as np

from labelgrid.distributed import ClassLabeller


def test_embedded_widget_on_each_backend(database_url: str, project_name: str) -> None:
    plain = database_url.replace("+aiosqlite", "").replace("+asyncpg", "")  # as users write it
    widget = ClassLabeller(
        connection_string=plain, table_name=project_name, options=["a", "b"], worker_id="w"
    )
    widget.add_features(np.arange(10, dtype=np.int16).reshape(5, 2))
    widget.start()
    widget.option_buttons[1].click()
    widget.flush()
    with widget.queue.session() as session:
        assert session.query(widget.queue.data).count() == 5
        first = session.query(widget.queue.data).first()
        assert first.id == min(r.id for r in session.query(widget.queue.data))
        assert first.output == '["b"]' and first.input == "array <i2 [2]"
    assert widget.new_labels == ["b", None, None, None, None]
    widget.close_session()
