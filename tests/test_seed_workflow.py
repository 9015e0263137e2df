"""superintendent's distributed-labelling page, run cell by cell with only the import changed."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import notebooks, seed

# Labelling as a person would: click the button of the digit shown, through the widget's
# own button callbacks (the seed page leaves this to the reader).
LABEL_THIRTY = """
from sklearn.datasets import load_digits as _load
_d = _load()
for _ in range(30):
    _x = widget.session.current.input
    _i = int(np.where((digits[:500] == _x).all(axis=1))[0][0])
    widget.option_buttons[widget.options.index(str(_d.target[_i]))].click()
widget.session.flush()
"""


def test_seed_copy_matches_shared() -> None:
    if seed.SHARED.exists():
        assert seed.SHARED.read_text() == seed.COPY.read_text()


def test_seed_page_runs_with_only_the_import_changed(tmp_path: Path) -> None:
    cells = seed.cells()
    assert len(cells) == 10 and "superintendent.distributed" in cells[2]
    changed = [
        c.replace("from superintendent.distributed import", "from labelgrid.distributed import")
        for c in cells
    ]
    assert sum(a != b for a, b in zip(cells, changed, strict=True)) == 1
    program = [*changed[:5], LABEL_THIRTY, *changed[5:]]
    nb = notebooks.run(program, tmp_path)
    out = [notebooks.text(c) for c in nb.cells]

    assert (tmp_path / "demo.db").exists()
    assert "Progress:" in out[4]  # the widget displayed (and so leased its first item)
    assert out[6].strip() == "500"
    first = out[7]
    for field in (
        "'id': 1",
        "'input':",
        "'output':",
        "'priority':",
        "'inserted_at':",
        "'completed_at':",
        "'worker_id':",
    ):
        assert field in first, repr(first)
    labels = ast.literal_eval(out[8].strip())
    assert labels == [str(d % 10) for d in range(30)]  # digits' targets run 0..9 in order
    assert out[10].startswith("Score: 0."), out[10]
    score = float(out[10].split()[1])
    assert 0.3 < score <= 1.0
