"""The point table annotate reads labels and cell ids from instead of payloads."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from indexer.reference._points import PointTable, id_words, int_words, points_file, points_file_name


def _table(n: int = 300) -> tuple[PointTable, list[str], list[str], list[str]]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    labels = [f"L{i % 7}" for i in range(n)]
    cells = [f"cell-{i}-é" for i in range(n)]  # non-ASCII ids survive
    return PointTable.build(ids, labels, cells), ids, labels, cells


def test_integer_ids_split_into_the_same_words_as_their_text() -> None:
    table, ids, _, _ = _table()
    # ids whose first word has the top bit set, and one whose first word is zero, as well as random ones
    edge = ["ffffffff-ffff-4fff-bfff-ffffffffffff", "00000000-0000-4000-8000-000000000001"]
    text = [*ids[:50], *edge]
    ints = [uuid.UUID(t).int for t in text]
    assert np.array_equal(int_words(ints), id_words(text))
    assert int_words([]).shape == (0, 2)
    by_text = table.lookup(ids[:50])
    by_int = table.lookup_words(int_words(ints[:50]))
    assert by_int[1] == by_text[1]
    assert np.array_equal(by_int[0], by_text[0])
    assert not by_int[2].any()
    assert table.lookup_ints(ints[:50])[1] == by_text[1]

def test_lookup_returns_each_points_label_and_cell_and_flags_unknown_ids() -> None:
    table, ids, labels, cells = _table()
    query = [*ids[::-3], str(uuid.uuid4())]
    got_labels, got_cells, missing = table.lookup(query)
    want = list(range(len(ids)))[::-3]
    assert got_labels[:-1].tolist() == [labels[i] for i in want]
    assert got_cells[:-1] == [cells[i] for i in want]
    assert missing.tolist() == [False] * len(want) + [True]
    assert got_labels[-1] == ""
    assert got_cells[-1] == ""


def test_an_id_written_twice_keeps_its_last_row() -> None:
    ids = [str(uuid.uuid4()) for _ in range(4)]
    table = PointTable.build([*ids, ids[1]], ["a", "b", "c", "d", "z"], ["0", "1", "2", "3", "again"])
    assert len(table) == 4
    labels, cells, _ = table.lookup(ids)
    assert labels.tolist() == ["a", "z", "c", "d"]
    assert cells == ["0", "again", "2", "3"]


def test_ids_sharing_their_first_word_are_told_apart() -> None:
    a = "00000000-0000-0001-0000-000000000001"
    b = "00000000-0000-0001-0000-000000000002"
    c = "00000000-0000-0001-0000-000000000003"
    table = PointTable.build([b, a], ["B", "A"], ["cb", "ca"])
    labels, cells, missing = table.lookup([a, b, c])
    assert labels.tolist() == ["A", "B", ""]
    assert cells == ["ca", "cb", ""]
    assert missing.tolist() == [False, False, True]


def test_bytes_round_trip_and_file_name() -> None:
    table, ids, _, _ = _table()
    data = table.to_bytes()
    again = PointTable.from_bytes(data)
    assert again.lookup(ids)[1] == table.lookup(ids)[1]
    assert np.array_equal(again.lookup(ids)[0], table.lookup(ids)[0])
    name = points_file_name(data)
    assert points_file(["idf.npz", name]) == name
    assert points_file(["idf.npz", "calibration.json"]) is None


def test_edits_add_keep_and_rename() -> None:
    table, ids, labels, cells = _table(20)
    new = [str(uuid.uuid4()) for _ in range(3)]
    added = table.with_table(PointTable.build([ids[0], *new], ["N", "N", "N", "N"], ["n0", "n1", "n2", "n3"]))
    assert len(added) == 23
    got, got_cells, _ = added.lookup([ids[0], ids[1], *new])
    assert got.tolist() == ["N", labels[1], "N", "N", "N"]
    assert got_cells == ["n0", cells[1], "n1", "n2", "n3"]
    kept = added.keeping([*ids[:5], str(uuid.uuid4())])
    assert len(kept) == 5
    assert kept.lookup(ids[5:6])[2].tolist() == [True]
    merged = table.renamed("L1", "L2")
    assert sorted(set(merged.labels)) == ["L0", "L2", "L3", "L4", "L5", "L6"]
    assert merged.lookup([ids[1], ids[2]])[0].tolist() == ["L2", "L2"]
    assert merged.lookup(ids)[1] == cells


def test_non_uuid_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="UUID"):
        id_words(["abc"])
