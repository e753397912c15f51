"""A log or a pipe gets at most LOG_LINES progress lines a run, however long the run."""

from sid_ray.train.progress import LOG_LINES, LogCadence


def rows(total_kimg: float, count: int) -> list[dict]:
    return [{"kimg": total_kimg * (i + 1) / count} for i in range(count)]


def test_a_long_run_logs_at_most_log_lines_evenly_spaced():
    cadence = LogCadence(12.8)
    shown = [r["kimg"] for r in rows(12.8, 400) if cadence.shows(r)]
    assert LOG_LINES - 1 <= len(shown) <= LOG_LINES
    gaps = [b - a for a, b in zip(shown, shown[1:], strict=False)]
    assert min(gaps) >= 12.8 / LOG_LINES - 1e-9


def test_a_short_run_logs_every_row():
    cadence = LogCadence(12.8)
    assert all(cadence.shows(r) for r in rows(12.8, 5))


def test_a_resumed_row_is_always_shown():
    cadence = LogCadence(10.0)
    assert cadence.shows({"kimg": 1.0})
    assert not cadence.shows({"kimg": 1.1})
    assert cadence.shows({"kimg": 1.2, "resumed_from_kimg": 1.0})
