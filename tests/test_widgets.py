"""The widgets, driven through their own callbacks, against a real queue service."""

from __future__ import annotations

import numpy as np
import pytest

from labelgrid import QueueClient
from labelgrid.distributed import ClassLabeller, MultiClassLabeller, SemiSupervisor
from labelgrid.widgets.labeller import button_text, hotkeys
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query


def _labeller(service: ServiceProcess, project: str, n: int = 6, **kw) -> ClassLabeller:
    kw.setdefault("options", ["a", "b", "c"])
    widget = ClassLabeller(server=service.address, table_name=project, worker_id="tester", **kw)
    widget.add_features([f"text {i}" for i in range(n)])
    return widget


def test_construction_and_adding_twice_lease_and_insert_nothing(
    service: ServiceProcess, project_name: str, database_url: str
) -> None:
    widget = _labeller(service, project_name)
    again = ClassLabeller(server=service.address, table_name=project_name)
    again.add_features([f"text {i}" for i in range(6)])  # the same data: a no-op
    assert query(database_url, "SELECT COUNT(*) FROM items") == [(6,)]
    assert query(database_url, "SELECT COUNT(*) FROM items WHERE status = 1") == [(0,)]
    widget.start()
    # the shown item and the prefetched one are leased before any click
    widget.session.flush()
    assert query(database_url, "SELECT COUNT(*) FROM items WHERE status = 1") == [(2,)]
    assert widget.session.current.input == "text 0"


def test_buttons_label_in_order_with_prefetch(service: ServiceProcess, project_name: str) -> None:
    widget = _labeller(service, project_name)
    widget.start()
    shown = []
    for i in range(6):
        shown.append(widget.session.current.input)
        widget.option_buttons[i % 3].click()
    widget.session.flush()
    assert shown == [f"text {i}" for i in range(6)]
    assert widget.session.current is None
    assert widget.new_labels == ["a", "b", "c", "a", "b", "c"]
    assert widget.progress_bar.value == 1.0


def test_skip_releases_and_undo_reopens(
    service: ServiceProcess, project_name: str, database_url: str
) -> None:
    widget = _labeller(service, project_name, n=4)
    widget.start()
    skipped = widget.session.current
    widget.skip_button.click()
    widget.session.flush()
    status = query(database_url, f"SELECT status, leased_by FROM items WHERE id = {skipped.id}")
    assert status == [(0, None)]  # back in the pool at once
    labelled = widget.session.current
    widget.option_buttons[1].click()
    widget.undo_button.click()
    assert widget.session.current.id == labelled.id
    assert widget.new_labels.count(None) == 4
    widget.option_buttons[2].click()
    widget.session.flush()
    assert widget.new_labels[labelled.id - skipped.id] == "c"


def test_other_box_and_unknown_label(service: ServiceProcess, project_name: str) -> None:
    widget = _labeller(service, project_name, n=2)
    widget.start()
    widget.other_box.value = "zebra"  # what pressing Enter in the box does
    widget.session.flush()
    assert "zebra" in widget.new_labels
    strict = ClassLabeller(
        server=service.address,
        table_name=project_name + "-strict",
        options=["a"],
        allow_freetext=False,
        worker_id="w",
    )
    strict.add_features(["x"])
    strict.start()
    strict.submit("zebra")
    strict.session.flush()
    assert any("not an option" in m for m in strict.messages)
    assert strict.new_labels == [None]


def test_multi_label_submit(service: ServiceProcess, project_name: str) -> None:
    widget = MultiClassLabeller(
        server=service.address,
        table_name=project_name,
        options=["red", "green", "blue"],
        worker_id="w",
    )
    widget.add_features(["one", "two"])
    widget.start()
    widget.apply_button.click()  # nothing selected: refused, nothing sent
    assert widget.messages and widget.session.current.input == "one"
    widget.toggles[0].value = True
    widget.toggles[2].value = True
    widget.apply_button.click()
    widget.session.flush()
    assert widget.new_labels == [["blue", "red"], None]
    assert not any(t.value for t in widget.toggles)


def test_worker_id_prompt_required_before_first_item(
    service: ServiceProcess, project_name: str, database_url: str
) -> None:
    widget = ClassLabeller(
        server=service.address, table_name=project_name, options=["a"], worker_id=True
    )
    widget.add_features(["x", "y"])
    widget.start()
    assert widget.prompt in widget.children and widget.session is None
    widget.worker_button.click()  # empty id refused
    assert widget.session is None and "worker id" in widget.messages[-1]
    widget.worker_box.value = "  carol "
    widget.worker_button.click()
    assert widget.worker_id == "carol" and widget.session.current is not None
    widget.option_buttons[0].click()
    widget.session.flush()
    assert query(database_url, "SELECT worker_id FROM annotations") == [("carol",)]


def test_keyboard_shortcuts(service: ServiceProcess, project_name: str) -> None:
    widget = _labeller(service, project_name, n=4, keyboard_shortcuts=True)
    assert widget._keyboard is not None and widget._keyboard.watched_events == ["keyup"]
    widget.start()
    assert widget.keys_legend in widget.children
    widget.on_key({"key": "2"})  # second option
    widget.on_key({"key": " "})  # skip
    widget.on_key({"key": "3"})
    widget.on_key({"key": "Backspace"})  # undo the "c"
    widget.on_key({"key": "1"})
    widget.session.flush()
    labels = widget.new_labels
    assert labels[0] == "b" and labels[1] is None and labels[2] == "a"


def test_a_key_event_sent_twice_counts_once(service: ServiceProcess, project_name: str) -> None:
    widget = _labeller(service, project_name, n=3, keyboard_shortcuts=True)
    widget.start()
    press = {"type": "keyup", "key": "1", "timeStamp": 4004.4, "target": {"tagName": "BUTTON"}}
    widget._on_dom_key(press)
    widget._on_dom_key(dict(press))  # ipyevents' second copy of the same press
    widget._on_dom_key({**press, "timeStamp": 4100.0})  # the next press
    widget.session.flush()
    assert widget.new_labels == ["a", "a", None]


def test_keys_typed_into_a_text_box_are_not_shortcuts(
    service: ServiceProcess, project_name: str
) -> None:
    widget = _labeller(service, project_name, n=3, keyboard_shortcuts=True)
    widget.start()
    widget.on_key({"key": "1"})
    shown = widget.session.current
    for key in ("1", "x", " ", "Backspace"):
        widget.on_key({"key": key, "target": {"tagName": "INPUT", "className": "widget-input"}})
    widget.on_key({"key": "2", "ctrlKey": True})  # a browser chord
    assert widget.session.current is shown
    widget.session.flush()
    assert widget.new_labels == ["a", None, None]


def test_hotkeys_digits_are_themselves_else_one_to_nine_then_zero() -> None:
    digits = [str(d) for d in range(10)]
    assert hotkeys(digits) == {d: d for d in digits}
    assert hotkeys(["3", "1", "2"]) == {"3": "3", "1": "1", "2": "2"}
    assert hotkeys(["cat", "dog"]) == {"1": "cat", "2": "dog"}
    assert hotkeys(["1", "2", "10"]) == {"1": "1", "2": "2", "3": "10"}  # not all one digit
    eleven = [f"o{i}" for i in range(11)]
    assert hotkeys(eleven) == {**{str(i + 1): f"o{i}" for i in range(9)}, "0": "o9"}
    assert button_text("7", "7") == "7" and button_text("cat", "1") == "[1] cat"
    assert button_text("o10", None) == "o10"


def test_digit_keys_label_their_own_digit(service: ServiceProcess, project_name: str) -> None:
    widget = _labeller(service, project_name, n=3, options=range(10), keyboard_shortcuts=True)
    assert [b.description for b in widget.option_buttons] == [str(d) for d in range(10)]
    widget.start()
    for key in "820":
        widget.on_key({"key": key, "target": {"tagName": "BUTTON"}})
    widget.session.flush()
    assert widget.new_labels == ["8", "2", "0"]


def test_buttons_show_their_keys(service: ServiceProcess, project_name: str) -> None:
    options = [f"o{i}" for i in range(11)]
    widget = _labeller(service, project_name, options=options, keyboard_shortcuts=True)
    texts = [b.description for b in widget.option_buttons]
    assert texts[0] == "[1] o0" and texts[9] == "[0] o9" and texts[10] == "o10"
    assert "Space" in widget.keys_legend.value and "Backspace" in widget.keys_legend.value
    plain = ClassLabeller(server=service.address, table_name=project_name, worker_id="w")
    assert [b.description for b in plain.option_buttons] == options  # no keys, no numbers


def test_an_error_is_cleared_by_the_next_label(service: ServiceProcess, project_name: str) -> None:
    widget = _labeller(service, project_name, n=3)
    widget.start()
    widget.undo_button.click()  # nothing to undo yet
    assert "nothing to undo" in widget.message.value
    widget.option_buttons[0].click()
    assert widget.message.value == ""
    widget.undo_button.click()  # reopens the "a": no error
    assert widget.message.value == ""


def test_enter_in_the_name_box_starts(service: ServiceProcess, project_name: str) -> None:
    widget = ClassLabeller(
        server=service.address, table_name=project_name, options=["a"], worker_id=True
    )
    widget.add_features(["x"])
    widget.start()
    widget.worker_box.value = "dana"  # what Enter (or leaving the box) sends
    assert widget.worker_id == "dana" and widget.session.current is not None
    session = widget.session
    widget.worker_button.click()  # the button after Enter changes nothing
    assert widget.session is session


def test_multi_label_keys_toggle_and_enter_applies(
    service: ServiceProcess, project_name: str
) -> None:
    widget = MultiClassLabeller(
        server=service.address,
        table_name=project_name,
        options=["red", "green", "blue"],
        worker_id="w",
        keyboard_shortcuts=True,
    )
    assert [t.description for t in widget.toggles] == ["[1] red", "[2] green", "[3] blue"]
    widget.add_features(["one", "two"])
    widget.start()
    widget.on_key({"key": "Enter"})  # nothing selected: nothing happens, no error
    assert not widget.messages and widget.session.current.input == "one"
    widget.on_key({"key": "1"})
    widget.on_key({"key": "3"})
    widget.on_key({"key": "Enter", "target": {"tagName": "INPUT"}})  # the Other box's own
    assert widget.session.current.input == "one"
    widget.on_key({"key": "Enter"})
    widget.session.flush()
    assert widget.new_labels == [["blue", "red"], None]


def test_retrain_statuses_and_orchestrate_never_leases(
    service: ServiceProcess, project_name: str, database_url: str
) -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    orchestrator = SemiSupervisor(
        server=service.address,
        table_name=project_name,
        options=["0", "1"],
        classifier=LogisticRegression(),
        reorder="margin",
    )
    orchestrator.add_features(X)
    assert orchestrator.retrain().status == "not_enough_labels"
    client = QueueClient(service.address)
    for item in client.pop(project_name, "w", n=3):
        client.submit(project_name, item, "0", "w")
    one_class = orchestrator.retrain()
    assert one_class.status == "not_enough_labels" and "one class" in one_class.message
    for item in client.pop(project_name, "w", n=12):
        client.submit(project_name, item, str(y[item.id - 1]), "w")
    (result,) = orchestrator.orchestrate()
    assert result.status == "ok" and result.model_version == 1 and result.score is not None
    assert orchestrator.score_label.value.startswith("Score:")
    assert query(database_url, "SELECT COUNT(*) FROM items WHERE status = 1") == [(0,)]
    # priorities now follow the model's uncertainty: the first served is the least certain
    top = client.pop(project_name, "w2")[0]
    assert top.priority == 25.0  # 25 unlabelled items ranked 25..1
    for item in client.pop(project_name, "w", n=30):
        client.submit(project_name, item, str(y[item.id - 1]), "w")
    client.submit(project_name, top, str(y[top.id - 1]), "w2")
    final = orchestrator.retrain()
    assert final.status == "all_labelled" and final.score is not None


def test_remote_widget_has_no_sql_session(service: ServiceProcess, project_name: str) -> None:
    widget = ClassLabeller(server=service.address, table_name=project_name, options=["a"])
    with pytest.raises(RuntimeError, match="connection_string"), widget.queue.session():
        pass


def test_a_reviewer_sees_the_other_labels_and_decides(
    service: ServiceProcess, project_name: str, capsys: pytest.CaptureFixture
) -> None:
    settings = dict(overlap=2, review_threshold=1.0, reviewers=["boss"])
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["cat", "dog"], **settings)
        client.add_features(project_name, ["<b>split</b>"])
        for worker, label in (("ann", "cat"), ("bob<x>", "dog")):
            client.submit(project_name, client.pop(project_name, worker)[0], label, worker)
    plain = ClassLabeller(server=service.address, table_name=project_name, worker_id="cy")
    plain.start()
    assert plain.session.current is None  # review items go to reviewers only
    widget = ClassLabeller(server=service.address, table_name=project_name, worker_id="boss")
    assert widget.project.overlap == 2 and list(widget.project.reviewers) == ["boss"]
    capsys.readouterr()
    widget.start()
    assert [w for w, _ in widget.session.current.others] == ["ann", "bob<x>"]
    shown = capsys.readouterr().out  # outside a kernel the Output widget prints
    assert "labelgrid-others" in shown
    assert "ann" in shown and "cat" in shown and "dog" in shown
    assert "bob&lt;x&gt;" in shown and "bob<x>" not in shown  # escaped
    assert widget.new_labels == [None]
    widget.option_buttons[1].click()
    widget.session.flush()
    assert widget.new_labels == ["dog"]


def test_new_labels_with_overlap_is_the_consensus(
    service: ServiceProcess, project_name: str
) -> None:
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["a", "b"], overlap=3)
        client.add_features(project_name, ["one", "two"])
        for worker, labels in (("w1", "aa"), ("w2", "ab"), ("w3", "bb")):
            items = sorted(client.pop(project_name, worker, n=2), key=lambda it: it.id)
            for it, label in zip(items, labels, strict=True):
                client.submit(project_name, it, label, worker)
    widget = ClassLabeller(server=service.address, table_name=project_name, worker_id="me")
    assert widget.new_labels == ["a", "b"]  # majority of (a, a, b) and (a, b, b)
    widget.consensus = None  # each item's newest annotation: w3's
    assert widget.new_labels == ["b", "b"]
    widget.consensus = "dawid_skene"
    assert len(widget.new_labels) == 2


def test_new_labels_with_more_labels_on_request(service: ServiceProcess, project_name: str) -> None:
    """Overlap 1, max_overlap 3: the majority of each item's labels; an item a model asked
    again for is None while it waits (it has labels, but no consensus yet)."""
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["a", "b"], max_overlap=3)
        x, y, _ = client.add_features(project_name, ["x", "y", "z"])
        for it in client.pop(project_name, "w1", n=2):
            client.submit(project_name, it, "a", "w1")
        client.request_relabels(project_name, [x, y], [2.0, 1.0], model_version=1)
        [again] = client.pop(project_name, "w2", n=1)
        assert again.id == x
        client.submit(project_name, again, "b", "w2")
        [leased] = client.pop(project_name, "w3", n=1)
        assert leased.id == y  # asked again, leased, not labelled yet
    widget = ClassLabeller(server=service.address, table_name=project_name, worker_id="me")
    assert widget.new_labels == ["a", None, None]  # x: (a, b) tie to the first option
