"""The owner's view of the web app in a real browser, against a queue service with --auth on
both backends: the admin token typed, real clicks, and what the page shows or did checked
against the database, the service and `labelgrid export`."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from labelgrid import QueueClient
from labelgrid_proto.v1 import queue_pb2
from tests.support.browser import ARTIFACTS, launch_chromium
from tests.support.crowd import PLAN_3, expected_buckets, expected_workers, label_by_plan
from tests.support.servers import ServiceProcess, secured_web
from tests.test_security import make_token
from tests.test_webapp import Labeller, annotations, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
FORMATS = {"csv": "CSV", "jsonl": "JSON lines", "parquet": "Parquet"}
RUNS = [(5, 0.41, 1), (10, 0.55, 2), (15, 0.62, 3)]  # (labels, score, model version)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    yield from launch_chromium()


@pytest.fixture
def secured(database_url: str) -> Iterator[ServiceProcess]:
    proc = secured_web(database_url)
    yield proc
    proc.kill()


def cli_export(service: ServiceProcess, token: str, fmt: str, out: Path) -> bytes:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "labelgrid.cli", "export", "crowd"),
            *("--server", service.address, "--format", fmt, "--output", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LABELGRID_TOKEN": token},
    )
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def open_owner(browser, url: str, token: str, width: int = 1000) -> Labeller:
    """Open the owner's view and type the token into its box, as a person does."""
    owner = Labeller(browser, url, width=width)
    box = owner.page.get_by_label("Admin token")
    box.click()
    owner.page.keyboard.type(token)
    owner.page.keyboard.press("Enter")
    return owner


def test_the_owners_view(browser, secured: ServiceProcess, database_url: str, tmp_path) -> None:
    admin = make_token(database_url, "root", "admin")
    tina = make_token(database_url, "tina", "labeller", "crowd")
    with QueueClient(secured.address, token=admin, retries=0) as root:
        root.create_project("crowd", ["a", "b", "c"], overlap=3)
        label_by_plan(root, "crowd", PLAN_3, pause=0.15)
        for n_labels, score, version in RUNS:
            root.record_training_run(
                "crowd",
                queue_pb2.TrainingRun(
                    status="ok",
                    score=score,
                    n_labels=n_labels,
                    model_version=version,
                    phases=[
                        queue_pb2.RunPhase(name="pull", seconds=0.25),
                        queue_pb2.RunPhase(name="score", seconds=2.0),
                    ],
                ),
            )

        # a labeller's token is refused the owner's view, in words
        wrong = open_owner(browser, f"{secured.web_url}/?view=owner&project=crowd", tina)
        error = wrong.page.locator("#error")
        error.wait_for()
        assert error.get_attribute("data-code") == "permission_denied"
        assert "needs an admin token" in error.inner_text()
        assert "labeller token (tina)" in error.inner_text()
        assert wrong.page.get_by_label("Admin token").is_visible()
        assert wrong.page.locator("#dashboard").is_hidden()
        assert wrong.page.evaluate("localStorage.getItem('labelgrid.admin')") is None
        wrong.close()

        owner = open_owner(browser, f"{secured.web_url}/?view=owner&project=crowd", admin)
        page = owner.page
        page.locator("#dashboard").wait_for()
        assert page.locator("#owner-name").inner_text() == "root"
        assert page.locator("#owner-project-list a").all_inner_texts() == ["crowd"]
        assert "token" not in page.url

        # per-worker statistics: what the labels given and their recorded times imply
        rows = page.locator("#o-workers-body tr[data-worker]")
        wait_for(lambda: rows.count() == 3, what="three workers")
        want = expected_workers(database_url, "crowd", PLAN_3)
        for row in rows.all():
            name = row.get_attribute("data-worker")
            e = want[name]
            assert int(row.get_attribute("data-labels")) == e.labels == 5
            assert int(row.get_attribute("data-compared")) == e.compared
            assert int(row.get_attribute("data-agreed")) == e.agreed
            assert float(row.get_attribute("data-active-seconds")) == pytest.approx(
                e.active_seconds, abs=1e-6
            )
            assert float(row.get_attribute("data-per-minute")) == pytest.approx(
                e.labels_per_minute, rel=1e-6
            )
        ann = page.locator("#o-workers-body tr[data-worker='ann']")
        assert "80.0% of 5" in ann.inner_text()  # a a b a b against a a b (tie) b

        # labels over time: the bars hold what the database recorded, bucket by bucket
        chart = page.locator("#o-time-chart svg")
        width = int(chart.get_attribute("data-bucket-seconds"))
        bars = {
            int(float(r.get_attribute("data-start"))): int(r.get_attribute("data-labels"))
            for r in chart.locator("rect.bar").all()
        }
        assert bars == expected_buckets(database_url, "crowd", width)
        assert sum(bars.values()) == 15

        # agreement: what GetAgreement says
        found = root.agreement("crowd")
        body = page.locator("#o-agreement-body")
        # the panel fills in when the page's own GetAgreement answers, which can come after
        # the worker rows (its first call in a server imports scikit-learn)
        wait_for(lambda: body.get_attribute("data-items") is not None, 30, what="agreement")
        assert body.get_attribute("data-items") == str(found.items) == "5"
        assert "ann / bob" in body.inner_text()

        # the learning curve: one point per recorded run (drawn after the agreement panel's
        # call returns, so it may come a moment later)
        points = page.locator("#o-curve-chart circle.point")
        wait_for(lambda: points.count() == len(RUNS), 30, what="the learning curve")
        assert [
            (int(p.get_attribute("data-labels")), float(p.get_attribute("data-score")))
            for p in points.all()
        ] == [(n, s) for n, s, _ in RUNS]
        # and where each run's time went
        assert "pull 0.3 s · score 2.0 s" in page.locator("#o-curve-chart").inner_text()

        # live: a new label elsewhere shows up in the progress and the statistics
        (extra,) = root.add_features("crowd", ["one more"])
        (item,) = root.pop("crowd", "dan")
        assert item.id == extra
        root.submit("crowd", item, "c", "dan")
        page.locator("#o-progress-text[data-annotations='16']").wait_for()
        page.locator("#o-workers-body tr[data-worker='dan'][data-labels='1']").wait_for()

        # instructions: typed, previewed, saved, and what GetProject returns
        page.get_by_label("Markdown shown to labellers").click()
        page.keyboard.type("# Birds\n\nLook for **beaks**.")
        page.locator("#o-instructions-preview h3", has_text="Birds").wait_for()  # h1 -> h3
        assert page.locator("#o-instructions-preview strong").inner_text() == "beaks"
        page.get_by_role("button", name="Save instructions").click()
        page.get_by_text("Saved:").wait_for()
        assert root.get_project("crowd").instructions == "# Birds\n\nLook for **beaks**."

        # a network failure is shown in words, and cleared by the next call that succeeds
        save = "**/labelgrid.v1.QueueService/SetProjectInstructions"
        page.route(save, lambda route: route.abort("connectionrefused"))
        page.get_by_role("button", name="Save instructions").click()
        page.get_by_text("Not saved.").wait_for()
        error = page.locator("#error")
        assert error.is_visible() and "fetch" in error.inner_text().lower()
        page.unroute(save)
        page.get_by_role("button", name="Save instructions").click()
        error.wait_for(state="hidden")
        page.get_by_text("Saved:").wait_for()

        # exports: each button's download is the bytes `labelgrid export` writes
        for fmt, label in FORMATS.items():
            with page.expect_download() as download:
                page.get_by_role("button", name=f"Export {label}").click()
            got = Path(download.value.path()).read_bytes()
            assert download.value.suggested_filename == f"crowd.{fmt}"
            assert got == cli_export(secured, admin, fmt, tmp_path / f"cli.{fmt}"), fmt
            assert len(got) > 100
        assert page.locator("#error").is_hidden()

        # invite a labeller: the link's token labels as them, is listed, and is revoked
        page.get_by_label("Labeller's name").click()
        page.keyboard.type("lena")
        page.keyboard.press("Enter")
        page.locator("#o-invite-result").wait_for()
        link = page.locator("#o-invite-link").input_value()
        base, _, query = link.partition("?")
        assert base == f"{secured.web_url}/"
        fields = urllib.parse.parse_qs(query)
        assert fields["project"] == ["crowd"]
        (value,) = fields["token"]
        page.locator("#o-tokens-body tr[data-token='lena'][data-state='live']").wait_for()
        with QueueClient(secured.address, token=value, retries=0) as lena:
            (mine,) = lena.pop("crowd", "")
            assert mine.id == extra
            lena.submit("crowd", mine, "c", "")
        assert annotations(database_url)[-1] == (extra, "lena", ["c"])
        assert [t.name for t in root.list_tokens() if t.name == "lena"] == ["lena"]
        # a second invite under the same name is refused in words; the next success clears it
        page.get_by_label("Labeller's name").click()
        page.keyboard.type("lena")
        page.keyboard.press("Enter")
        page.locator("#error[data-code='already_exists']").wait_for()
        page.get_by_role("button", name="Revoke lena").click()
        page.locator("#o-tokens-body tr[data-token='lena'][data-state='revoked']").wait_for()
        assert page.locator("#error").is_hidden()
        with QueueClient(secured.address, token=value, retries=0) as lena:
            with pytest.raises(grpc.RpcError) as err:
                lena.pop("crowd", "")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # an owner's link with the token: nothing to type, and the token leaves the address
        linked = Labeller(browser, f"{secured.web_url}/?view=owner&project=crowd&token={admin}")
        linked.page.locator("#dashboard").wait_for()
        assert "token" not in linked.page.url
        assert linked.page.locator("#owner-name").inner_text() == "root"
        linked.close()

        # the token is remembered; the page fits a phone
        page.reload()
        page.locator("#dashboard").wait_for()
        page.set_viewport_size({"width": 360, "height": 780})
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.screenshot(path=str(ARTIFACTS / "webapp-owner-360px.png"), full_page=True)
        assert owner.errors == []
        owner.close()


def post_export(service: ServiceProcess, body: dict, headers: dict | None = None, query=""):
    request = urllib.request.Request(
        f"{service.web_url}/export{query}",
        data=urllib.parse.urlencode(body).encode(),
        headers=headers or {},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read(), {k.lower(): v for k, v in reply.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_no_agreement_yet_says_why_in_the_projects_terms(
    browser, secured: ServiceProcess, database_url: str
) -> None:
    admin = make_token(database_url, "root", "admin")
    with QueueClient(secured.address, token=admin, retries=0) as root:
        root.create_project("single", ["a", "b"])
        root.create_project("relabels", ["a", "b"], max_overlap=3)
        for name in ("single", "relabels"):
            root.add_features(name, ["x", "y"])
    said = {}
    for name in ("single", "relabels"):
        owner = open_owner(browser, f"{secured.web_url}/?view=owner&project={name}", admin)
        body = owner.page.locator("#o-agreement-body")
        wait_for(lambda b=body: b.get_attribute("data-items") == "0", 30, what="agreement")
        said[name] = body.inner_text()
        owner.close()
    assert "overlap above 1, or max_overlap above 1" in said["single"]
    assert "relabel requests (up to 3 per item)" in said["relabels"]


def test_export_endpoint_takes_the_token_from_a_header_or_the_body_only(
    secured: ServiceProcess, database_url: str, tmp_path
) -> None:
    admin = make_token(database_url, "root", "admin")
    tina = make_token(database_url, "tina", "labeller", "crowd")
    with QueueClient(secured.address, token=admin, retries=0) as root:
        root.create_project("crowd", ["a", "b"])
        root.add_features("crowd", ["x", "y"], labels=["a", "b"])
    form = {"project": "crowd", "format": "csv"}
    want = cli_export(secured, admin, "csv", tmp_path / "cli.csv")
    status, body, headers = post_export(secured, form, {"Authorization": f"Bearer {admin}"})
    assert (status, body) == (200, want)
    assert headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-disposition"].startswith('attachment; filename="crowd.csv"')
    assert post_export(secured, {**form, "token": admin})[:2] == (200, want)
    # a token in the address is not taken
    status, body, _ = post_export(secured, form, query=f"?token={admin}")
    assert status == 401 and body.startswith(b"unauthenticated: ")
    status, body, _ = post_export(secured, {**form, "token": tina})
    assert (status, body) == (
        403,
        b"permission_denied: role 'labeller' may not call ExportLabels",
    )
    status, body, _ = post_export(secured, {**form, "format": "xls", "token": admin})
    assert status == 400 and b"unknown format 'xls'" in body
    status, body, _ = post_export(secured, {**form, "project": "nope", "token": admin})
    assert status == 404 and body.startswith(b"not_found: project 'nope'")
