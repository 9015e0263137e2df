"""Notebook labelling widgets (ipywidgets 8) on a labelgrid queue.

`ClassLabeller` (alias `SemiSupervisor`, as in superintendent.distributed) shows one item at
a time with a button per option, an "other" box, skip and undo, a progress bar and the
model's score; `MultiClassLabeller` lets several options be toggled before submitting.
Building a widget never leases anything: the first item is leased when the widget is
displayed (or `start()` is called), so an orchestrating widget leaves every item to the
labellers.
"""

from __future__ import annotations

import getpass
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as widgets
import numpy as np
from IPython.display import display

from labelgrid import features as features_mod
from labelgrid.connection import ProjectQueue
from labelgrid.extras import require
from labelgrid.widgets import display as show
from labelgrid.widgets.session import LabellingSession
from labelgrid_proto.exportfile import several_labels

DEFAULT_PROJECT = "superintendent"
#: shortcuts act on key release: ipyevents cancels every key event it watches (it calls
#: preventDefault on them, whatever prevent_default_action says), and a cancelled keydown types
#: nothing into the widget's text boxes; cancelling a keyup costs them nothing
SHORTCUT_EVENT = "keyup"
#: a key event on one of these is typing, never a shortcut
TEXT_FIELDS = frozenset({"INPUT", "TEXTAREA", "SELECT"})
#: rows that wrap on a narrow screen (a phone) instead of squeezing their buttons
WRAP = {"flex_flow": "row wrap", "align_items": "center"}


def _default_worker() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "worker"
    return f"{user}-{uuid.uuid4().hex[:6]}"


def content_key(features: Any, labels: Any = None) -> str:
    """An idempotency key from the data itself, so re-running an add cell adds nothing."""
    digest = hashlib.sha256()
    rows = features_mod.as_rows(features)
    if rows is not None:
        rows = np.ascontiguousarray(rows)
        digest.update(f"{rows.dtype.str}{rows.shape}".encode())
        digest.update(rows.tobytes())
    else:
        digest.update(repr(features_mod.as_values(features)).encode())
    digest.update(repr(None if labels is None else list(labels)).encode())
    return "content-" + digest.hexdigest()[:40]


def hotkeys(options: list[str]) -> dict[str, str]:
    """Key -> option. When every option is one digit the key is that digit (8 is "8" on a
    0-9 page, whatever the order); otherwise 1-9 then 0 in option order, first ten only."""
    if options and all(len(o) == 1 and o in "0123456789" for o in options):
        return {o: o for o in options}
    return {str((i + 1) % 10): o for i, o in enumerate(options[:10])}


def button_text(option: str, key: str | None) -> str:
    """An option's button text: its key in front ("[1] cat"), unless the key is the text."""
    return option if key is None or key == option else f"[{key}] {option}"


def _is_shortcut(event: dict[str, Any]) -> bool:
    """A key meant for the labeller: not typed into a text field, not a browser chord."""
    target = event.get("target") or {}
    if str(target.get("tagName", "")).upper() in TEXT_FIELDS:
        return False
    return not any(event.get(m) for m in ("ctrlKey", "altKey", "metaKey"))


class ClassLabeller(widgets.VBox):
    """Label one item at a time from a shared queue; optionally drive active learning."""

    multi_label = False

    def __init__(
        self,
        connection_string: str | None = None,
        *,
        server: str | None = None,
        features: Any = None,
        labels: Any = None,
        options: Iterable[Any] = (),
        classifier: Any = None,
        display_func: Callable[[Any], None] | None = None,
        eval_method: Callable | None = None,
        reorder: str | Callable | None = None,
        shuffle_prop: float = 0.1,
        model_preprocess: Callable | None = None,
        keyboard_shortcuts: bool = False,
        worker_id: bool | str = False,
        table_name: str = DEFAULT_PROJECT,
        allow_freetext: bool = True,
        lease_seconds: int = 0,
        token: str | None = None,
        tls_ca: str | None = None,
        overlap: int = 1,
        review_threshold: float = 0.0,
        max_overlap: int = 0,
        reviewers: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        """Arguments as superintendent's, plus the queue's: `server`, `worker_id`,
        `lease_seconds`, `token`/`tls_ca`, and for a new project `overlap` (labels per item,
        from different workers), `review_threshold`, `max_overlap` and `reviewers` (see
        `QueueClient.create_project`)."""
        super().__init__(**kwargs)
        if connection_string is None and server is None:
            connection_string = "sqlite:///labelgrid.db"
        self.queue = ProjectQueue(
            table_name,
            connection_string=connection_string,
            server=server,
            token=token,
            tls_ca=tls_ca,
        )
        self.project = self.queue.ensure_project(
            [str(o) for o in options],
            multi_label=self.multi_label,
            allow_other=allow_freetext,
            lease_seconds=lease_seconds,
            overlap=overlap,
            review_threshold=review_threshold,
            max_overlap=max_overlap,
            reviewers=reviewers,
        )
        self.options = list(self.project.options) or [str(o) for o in options]
        self.hotkeys = hotkeys(self.options)
        self.classifier = classifier
        #: how new_labels aggregates several labels per item: "majority", "dawid_skene", None
        self.consensus: str | None = "majority"
        self.display_func = display_func or show.default_display
        self.eval_method = eval_method
        self.reorder = reorder
        self.shuffle_prop = shuffle_prop
        self.model_preprocess = model_preprocess
        self.messages: list[str] = []
        self._learner = None
        self._orchestration: threading.Thread | None = None

        self._build_ui(keyboard_shortcuts)
        if features is not None:
            self.add_features(features, labels)
        self.session: LabellingSession | None = None
        if isinstance(worker_id, str) and worker_id:
            self.worker_id: str | None = worker_id
        elif worker_id is True:
            self.worker_id = None  # asked for by the prompt before any item is shown
        else:
            self.worker_id = _default_worker()
        self._render_idle()

    # -- construction helpers -----------------------------------------------------------

    @classmethod
    def from_images(cls, canvas_size: tuple[int, int] = (100, 100), **kwargs: Any) -> ClassLabeller:
        """A labeller that shows each item as an image (2-d arrays, flattened square images,
        HxWx3 arrays, PIL images or image files)."""
        kwargs.setdefault("display_func", show.image_display(tuple(canvas_size)))
        return cls(**kwargs)

    def _build_ui(self, keyboard_shortcuts: bool) -> None:
        self.progress_bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, description="Progress:"
        )
        self.progress_text = widgets.Label("")
        self.score_label = widgets.Label("")
        # built once: replacing a child re-creates the views after it, and with them the
        # focus of the Other box (where a person may type the next free-text label)
        self.header = widgets.HBox(
            [self.progress_bar, self.progress_text, self.score_label],
            layout=widgets.Layout(**WRAP),
        )
        self.message = widgets.HTML("")
        self.output = widgets.Output(layout=widgets.Layout(min_height="120px"))
        self._keys_shown = {o: k for k, o in self.hotkeys.items()} if keyboard_shortcuts else {}
        self.option_buttons = [
            self._button(self._option_text(option), lambda _b, o=option: self._on_option(o))
            for option in self.options
        ]
        self.other_box = widgets.Text(
            placeholder="Other:", continuous_update=False, layout=widgets.Layout(width="160px")
        )
        self.other_box.observe(lambda change: self._on_other(change["new"]), "value")
        self.skip_button = self._button("Skip", lambda _b: self.skip(), style="warning")
        self.undo_button = self._button("Undo", lambda _b: self.undo(), style="")
        self.controls = self._controls(self.option_buttons, [self.skip_button, self.undo_button])
        self.keys_legend = widgets.HTML(self._legend())
        self.keys_legend.add_class("labelgrid-keys")
        self.worker_box = widgets.Text(
            placeholder="your name or id", description="Worker id:", continuous_update=False
        )
        self.worker_box.observe(self._on_worker_typed, "value")
        self.worker_button = self._button("Start labelling", lambda _b: self._on_worker_id())
        self.prompt = widgets.HBox(
            [self.worker_box, self.worker_button], layout=widgets.Layout(**WRAP)
        )
        self.children = [self.header, self.output, self.message]
        self.add_class("labelgrid-labeller")
        self._keyboard = None
        self._last_key_event: tuple[Any, ...] | None = None
        if keyboard_shortcuts:
            from ipyevents import Event

            self._keyboard = Event(
                source=self, watched_events=[SHORTCUT_EVENT], ignore_modifier_key_events=True
            )
            self._keyboard.on_dom_event(self._on_dom_key)

    @staticmethod
    def _button(text: str, handler: Callable, style: str = "info") -> widgets.Button:
        # never shrunk below its text: a squeezed button shows "S..." instead of "Skip"
        button = widgets.Button(
            description=text, button_style=style, layout=widgets.Layout(width="auto", flex="none")
        )
        button.on_click(handler)
        return button

    def _option_text(self, option: str) -> str:
        return button_text(option, self._keys_shown.get(option))

    def _controls(
        self, options: list[widgets.Widget], actions: list[widgets.Widget]
    ) -> widgets.Box:
        """Option buttons (and the Other box), then the actions; rows wrap on narrow screens."""
        if self.project.allow_other or not self.project.options:
            options = [*options, self.other_box]
        return widgets.HBox(
            [widgets.HBox(options, layout=widgets.Layout(**WRAP)), *actions],
            layout=widgets.Layout(width="auto", **WRAP),
        )

    def _legend(self) -> str:
        return (
            "<div style='line-height: 1.4'><small>Keys, with the pointer over the labeller:"
            " a button's number picks it · <kbd>Space</kbd> skips · <kbd>Backspace</kbd>"
            " undoes</small></div>"
        )

    # -- data ---------------------------------------------------------------------------

    def add_features(
        self, features: Any, labels: Any = None, *, key: str | bool | None = None
    ) -> list[int]:
        """Add items to the queue, once: by default the key is the data's own digest, so
        running this again (in any widget on the same queue) adds nothing. `key=False`
        adds unconditionally."""
        if key is None:
            key = content_key(features, labels)
        ids = self.queue.client.add_features(
            self.queue.project, features, labels=labels, key=key or None
        )
        self._refresh_progress()
        return ids

    @property
    def new_labels(self) -> list[Any]:
        """Every item's label in insertion order (None where unlabelled); multi-label
        projects give lists. With several labels per item (overlap or max_overlap > 1) this
        is the consensus of completed items (`self.consensus`: "majority" by default, or
        "dawid_skene"; None gives each item's newest annotation); items still waiting for
        labels are None."""
        client, project = self.queue.client, self.queue.project
        consensus = self.consensus if several_labels(self.project) else None
        labelled = {
            it.item_id: list(it.labels) for it in client.export_labels(project, consensus=consensus)
        }
        waiting = [
            it.id
            for chunk in client.stream_unlabelled(project, ids_only=True)
            for it in chunk.items
        ]
        if consensus:  # items asked again have labels but no consensus while they wait
            waiting += [it.item_id for it in client.export_labels(project)]
        out: list[Any] = []
        for item_id in sorted(labelled.keys() | set(waiting)):
            labels = labelled.get(item_id)
            out.append(None if labels is None else labels if self.multi_label else labels[0])
        return out

    # -- labelling ----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self.start()
        return super()._repr_mimebundle_(**kwargs)

    def start(self) -> None:
        """Lease the first item and show it (after the worker-id prompt, if one is asked)."""
        if self.worker_id is None:
            self.children = [self.prompt, self.message]
            return
        if self.session is None:
            self.session = LabellingSession(
                self.queue.client, self.queue.project, self.worker_id, on_error=self._error
            )
        if not self.session.started:
            self.session.start()
        self._render()

    def _on_worker_typed(self, change: dict[str, Any]) -> None:
        """Enter in the name box starts, as the button does (an emptied box says nothing)."""
        if change["new"].strip():
            self._on_worker_id()

    def _on_worker_id(self) -> None:
        if self.session is not None:
            return  # already started (Enter, then the button)
        value = self.worker_box.value.strip()
        if not value:
            self._error("enter a worker id to start labelling")
            return
        self.worker_id = value
        self._clear_error()
        self.start()

    def _on_option(self, option: str) -> None:
        self.submit(option)

    def _on_other(self, value: str) -> None:
        value = value.strip()
        if value:
            self.other_box.value = ""
            self.submit(value)

    def submit(self, labels: str | list[str]) -> None:
        if self.session is None or self.session.current is None:
            return
        self._clear_error()
        self.session.label(labels)
        self._render()

    def skip(self) -> None:
        if self.session is not None and self.session.current is not None:
            self._clear_error()
            self.session.skip()
            self._render()

    def undo(self) -> None:
        if self.session is not None:
            self._clear_error()
            _, labels = self.session.undo()
            self._render(previous=labels)

    def _on_dom_key(self, event: dict[str, Any]) -> None:
        """Each browser key event once: under load ipyevents sometimes sends every key twice
        (its listeners attached twice as the view appears), and one press would label two
        items. The copies carry the same browser timeStamp."""
        stamp = (event.get("type"), event.get("timeStamp"), event.get("key"))
        if stamp == self._last_key_event:
            return
        self._last_key_event = stamp
        self.on_key(event)

    def on_key(self, event: dict[str, Any]) -> None:
        """A hotkey picks its option (see `hotkeys`), space skips, backspace undoes; keys
        typed into a text box are left to it."""
        if not _is_shortcut(event):
            return
        key = event.get("key", "")
        if key == " ":
            self.skip()
        elif key == "Backspace":
            self.undo()
        elif key in self.hotkeys:
            self._on_option(self.hotkeys[key])

    def flush(self) -> None:
        """Wait until every label sent so far is acknowledged, then refresh the progress."""
        if self.session is not None:
            self.session.flush()
        self._refresh_progress()

    def close_session(self) -> None:
        """Give back the leases this widget holds (the current and the prefetched item)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    # -- rendering ----------------------------------------------------------------------

    def _error(self, text: str) -> None:
        self.messages.append(text)
        self.message.value = f"<span style='color:#b00'>{show._escape(text)}</span>"

    def _clear_error(self) -> None:
        """Each action starts with a clean slate: an old error would read as this one's
        (a failure of this action shows its own)."""
        self.message.value = ""

    def _render_idle(self) -> None:
        self._refresh_progress()

    def _render(self, previous: list[str] | None = None) -> None:
        legend = [self.keys_legend] if self._keyboard is not None else []
        self.children = [self.header, self.output, self.controls, *legend, self.message]
        self.output.clear_output(wait=True)
        current = self.session.current if self.session else None
        with self.output:
            if current is None:
                display(widgets.HTML("<h3>Nothing left to label. Thank you!</h3>"))
            else:
                self.display_func(current.input)
                if current.others:
                    display(widgets.HTML(show.others_html(current.others)))
                if previous:
                    display(widgets.HTML(f"<i>previous label: {', '.join(previous)}</i>"))
        self._refresh_progress(background=True)

    def _refresh_progress(self, background: bool = False) -> None:
        """Show the queue's progress. After a click it is read on the session's network
        thread, behind the label it follows, so showing the next item never waits for it."""
        if background and self.session is not None:
            self.session.background(self._show_progress)
        else:
            self._show_progress()

    def _show_progress(self) -> None:
        try:
            progress = self.queue.client.progress(self.queue.project)
        except Exception as exc:  # progress is informative; labelling goes on without it
            self.progress_text.value = f"(progress unavailable: {exc})"
            return
        self.progress_bar.value = progress.fraction
        self.progress_text.value = f"{progress.labelled} / {progress.total} labelled"

    # -- active learning ----------------------------------------------------------------

    @property
    def learner(self) -> Any:
        if self.classifier is None:
            raise ValueError("no classifier: build the widget with classifier=... to retrain")
        if self._learner is None:
            require("trainer", "retrain() and orchestrate()")
            from trainer_service.loop import ActiveLearner

            self._learner = ActiveLearner(
                self.queue.client,
                self.queue.project,
                self.classifier,
                eval_method=self.eval_method,
                acquisition_function=self.reorder,
                shuffle_prop=self.shuffle_prop,
                model_preprocess=self.model_preprocess,
            )
        return self._learner

    def retrain(self) -> Any:
        """Fit the classifier on every label so far, score it and re-rank the queue once.

        Returns the run's result; its status says when nothing could be done (no labels,
        one class only) and the widget shows the message."""
        result = self.learner.run_once()
        self._show_result(result)
        return result

    def orchestrate(
        self,
        interval_seconds: float | None = None,
        interval_n_labels: int = 0,
        shuffle_prop: float = 0.1,
        max_runs: float = float("inf"),
    ) -> list[Any]:
        """Retrain and re-rank for the labellers: once when `interval_seconds` is None, else
        every `interval_seconds` once `interval_n_labels` new labels have arrived, up to
        `max_runs` times. Never leases an item."""
        self.learner.shuffle_prop = shuffle_prop
        return self.learner.run(
            interval_seconds=interval_seconds,
            interval_n_labels=interval_n_labels,
            max_runs=max_runs,
            on_result=self._show_result,
        )

    def _show_result(self, result: Any) -> None:
        if result.score is not None:
            text = f"Score: {result.score:.2f}"
            if result.score_std is not None:
                text += f" ± {result.score_std:.2f}"
        else:
            text = "Score: n/a"
        self.score_label.value = text
        print(text if result.ok else f"{text} — {result.message}")
        if not result.ok:
            self.message.value = show._escape(result.message)

    def plot_history(self, ax: Any = None) -> Any:
        """The learning curve: score (± spread) against labels used, for every training run
        of the project recorded in the database (this widget's, other notebooks' and the
        trainer service's)."""
        import matplotlib.pyplot as plt

        runs = [
            r
            for r in self.queue.client.list_training_runs(self.queue.project)
            if r.HasField("score")
        ]
        if ax is None:
            _, ax = plt.subplots()
        x = [r.n_labels for r in runs]
        y = np.array([r.score for r in runs])
        err = np.array([r.score_std if r.HasField("score_std") else 0.0 for r in runs])
        ax.plot(x, y, marker="o")
        ax.fill_between(x, y - err, y + err, alpha=0.2)
        ax.set_xlabel("labels")
        ax.set_ylabel("score")
        ax.set_title(f"{self.queue.project}: learning curve")
        return ax


class MultiClassLabeller(ClassLabeller):
    """Several labels per item: toggle options, then press "Apply"."""

    multi_label = True

    def _build_ui(self, keyboard_shortcuts: bool) -> None:
        super()._build_ui(keyboard_shortcuts)
        self.toggles = [
            widgets.ToggleButton(
                description=self._option_text(o), layout=widgets.Layout(width="auto", flex="none")
            )
            for o in self.options
        ]
        self.apply_button = self._button("Apply", lambda _b: self._apply(), style="success")
        self.controls = self._controls(
            self.toggles, [self.apply_button, self.skip_button, self.undo_button]
        )

    def _legend(self) -> str:
        return (
            "<div style='line-height: 1.4'><small>Keys, with the pointer over the labeller:"
            " a button's number toggles it · <kbd>Enter</kbd> applies · <kbd>Space</kbd> skips"
            " · <kbd>Backspace</kbd> undoes</small></div>"
        )

    def _on_option(self, option: str) -> None:
        toggle = self.toggles[self.options.index(option)]
        toggle.value = not toggle.value

    def _on_other(self, value: str) -> None:
        value = value.strip()
        if value:
            self.other_box.value = ""
            self.submit([*self._selected(), value])

    def _selected(self) -> list[str]:
        return [o for o, t in zip(self.options, self.toggles, strict=True) if t.value]

    def _apply(self) -> None:
        chosen = self._selected()
        if not chosen:
            self._error("select at least one option, or skip")
            return
        for toggle in self.toggles:
            toggle.value = False
        self.submit(chosen)

    def on_key(self, event: dict[str, Any]) -> None:
        """Enter applies the selection; with none it does nothing (it may be the release of
        the Enter that answered the name prompt)."""
        if event.get("key") != "Enter":
            super().on_key(event)
        elif _is_shortcut(event) and self._selected():
            self._apply()


SemiSupervisor = ClassLabeller
