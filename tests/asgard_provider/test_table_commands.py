"""``asgard tables history`` and ``asgard tables rollback`` on a real catalog: rollback restores the contents."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from asgard_provider.cli import main
from asgard_provider.engines import wap
from asgard_provider.hooks.iceberg import IcebergHook


def _ids(name: str) -> list[int]:
    return sorted(IcebergHook().load_table(name).scan().to_arrow().column("id").to_pylist())


@pytest.fixture
def two_versions(asgard_home: Path) -> tuple[int, int]:
    """silver.t written by two runs: a good one (ids 1, 2) then a bad one (id 66)."""
    hook = IcebergHook()
    hook.write("silver.t", [pa.table({"id": [1, 2]})], snapshot_properties={wap.RUN_PROPERTY: "scheduled__1"})
    good = hook.load_table("silver.t").current_snapshot().snapshot_id
    hook.write("silver.t", [pa.table({"id": [66]})], snapshot_properties={wap.RUN_PROPERTY: "scheduled__2"})
    return good, hook.load_table("silver.t").current_snapshot().snapshot_id


def test_history_lists_snapshots_refs_and_runs(
    two_versions: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = two_versions
    assert main(["tables", "history", "silver.t", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    written = [r for r in rows if r["added_records"]]
    assert [(r["snapshot_id"], r["run_id"], r["refs"]) for r in written] == [
        (good, "scheduled__1", []),
        (bad, "scheduled__2", ["branch:main"]),
    ]
    assert main(["tables", "history", "silver.t"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["snapshot_id", "committed_at", "(UTC)"]
    assert f"{bad}" in text and "scheduled__2" in text


def test_rollback_asks_then_restores_the_previous_contents(
    two_versions: tuple[int, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = two_versions
    questions: list[str] = []
    monkeypatch.setattr("builtins.input", lambda q: questions.append(q) or "n")
    assert main(["tables", "rollback", "silver.t", "--to", str(good)]) == 1
    assert f"from snapshot {bad} to {good}" in questions[0] and _ids("silver.t") == [66]
    assert "cancelled" in capsys.readouterr().out

    monkeypatch.setattr("builtins.input", lambda q: "yes")
    assert main(["tables", "rollback", "silver.t", "--to", str(good)]) == 0
    assert _ids("silver.t") == [1, 2]
    record = json.loads(IcebergHook().load_table("silver.t").properties[wap.ROLLBACK_PROPERTY])
    assert (record["from"], record["to"]) == (bad, good) and record["by"]
    assert f"main {bad} -> {good}" in capsys.readouterr().out

    # roll forward again without a prompt: the newer snapshot was kept
    monkeypatch.setattr("builtins.input", lambda q: pytest.fail("--yes must not ask"))
    assert main(["tables", "rollback", "silver.t", "--to", str(bad), "--yes"]) == 0
    assert _ids("silver.t") == [66]


def test_rollback_to_an_unknown_snapshot_names_the_table(
    two_versions: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tables", "rollback", "silver.t", "--to", "42", "--yes"]) == 1
    assert "table silver.t has no snapshot 42" in capsys.readouterr().err
    assert main(["tables", "history", "silver.nope"]) == 1
    assert "silver.nope does not exist" in capsys.readouterr().err


def test_tables_without_an_action_still_lists_tables(
    two_versions: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tables", "--json"]) == 0
    assert [r["table"] for r in json.loads(capsys.readouterr().out)] == ["silver.t"]


def test_a_tag_pins_a_snapshot_that_queries_read_as_of(
    two_versions: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = two_versions
    IcebergHook().write("silver.u", [pa.table({"id": [7]})])
    assert main(["tables", "tag", "silver.t", "release-1", "--snapshot", str(good)]) == 0
    assert f"tag release-1 -> snapshot {good}" in capsys.readouterr().out
    assert IcebergHook().load_table("silver.t").refs()["release-1"].snapshot_id == good
    assert _ids("silver.t") == [66]  # main did not move

    sql = "SELECT id FROM silver.t ORDER BY id"
    for as_of, ids in ((["release-1"], [1, 2]), ([str(bad)], [66]), (["silver.t=release-1"], [1, 2]), (None, [66])):
        assert main(["query", sql, "--json", *(a for ref in as_of or [] for a in ("--as-of", ref))]) == 0
        result = json.loads(capsys.readouterr().out)
        assert [r[0] for r in result["rows"]] == ids
    assert result["snapshots"] == {}  # no --as-of: main

    # A join: one table as of its tag, the other on main.
    join = "SELECT t.id, u.id FROM silver.t t CROSS JOIN silver.u u ORDER BY 1"
    assert main(["query", join, "--as-of", "silver.t=release-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [[1, 7], [2, 7]]
    assert main(["query", join, "--as-of", "release-1"]) == 1  # silver.u has no such tag
    assert "table silver.u has no snapshot, tag or branch 'release-1'" in capsys.readouterr().err


def test_query_refuses_duckdb_time_travel_and_unknown_refs(
    two_versions: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "SELECT * FROM silver.t AT (VERSION => 1)"]) == 1
    assert "AT (VERSION => ...) is not supported" in capsys.readouterr().err
    assert main(["query", "SELECT * FROM silver.t", "--as-of", "silver.other=x"]) == 1
    assert "as_of names silver.other, which the query does not read" in capsys.readouterr().err
    assert main(["tables", "tag", "silver.t", "main"]) == 1
    assert "already has a branch 'main'" in capsys.readouterr().err
