"""tlflow.disk: rows written through the file, and mapped pages released."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlflow import disk


def _resident_file_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("RssFile")) / 1024


def test_rows_written_in_blocks_load_as_one_array_and_a_short_count_fails(tmp_path):
    rows = np.arange(10 * 3 * 4, dtype=np.float32).reshape(10, 3, 4)
    path = tmp_path / "odd name [1].npy"
    disk.write_rows(path, np.float32, rows.shape, (rows[a : a + 4] for a in range(0, 10, 4)))
    np.testing.assert_array_equal(np.load(path), rows)
    with pytest.raises(ValueError, match=r"short\.npy: 8 rows written for 10"):
        disk.write_rows(tmp_path / "short.npy", np.float32, rows.shape, [rows[:8]])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_released_pages_leave_the_resident_memory(tmp_path):
    path = tmp_path / "rows.npy"
    np.save(path, np.ones((1024, 16384), np.float32))  # 64 MB
    mapped = np.load(path, mmap_mode="r")
    before = _resident_file_mb()
    assert float(mapped[:, ::1024].sum()) == 1024 * 16  # touches every page
    read = _resident_file_mb()
    disk.release(mapped[5])  # a row's view names the whole map
    after = _resident_file_mb()
    assert read - before > 50 and read - after > 50, (before, read, after)
    assert float(mapped[7].sum()) == 16384  # still readable: mapped again on demand
