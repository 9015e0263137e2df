"""The walkthrough notebook in examples/ runs top to bottom, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

from tests.support import notebooks

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distributed-labelling.ipynb"


def test_walkthrough_notebook_runs(tmp_path: Path) -> None:
    nb = notebooks.run_file(EXAMPLE, tmp_path)
    out = [notebooks.text(c) for c in nb.cells if c.cell_type == "code"]
    assert "300 items; re-adding changed nothing: True" in out[1]
    assert "40 / 300 labelled" in out[2]
    assert out[3].startswith("40 labelled; first ten: ['0', '1', '2'")
    assert out[4].startswith("Score: 0.") and "ok - model version 1" in out[4]
    assert "Score: 0." in out[5]
    images = [o for o in nb.cells[-2].outputs if "image/png" in o.get("data", {})]
    assert images, "plot_history drew nothing"
    assert (tmp_path / "walkthrough.db").exists()
