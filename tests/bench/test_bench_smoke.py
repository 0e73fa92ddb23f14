"""`python -m bench.run --quick` runs end to end and loses nothing.

Tiny counts, no assertion on speed: performance figures live in the benchmark's output (bench/README.md).
"""

from bench.run import main


def test_quick_bench_delivers_every_event_once(capsys) -> None:  # type: ignore[no-untyped-def]
    rows = main(["--quick", "--sessions", "1,3", "--burst", "900", "--paced-seconds", "0.2"])
    assert len(rows) == 4
    for row in rows:
        assert row.lost == (0, 0), row.scenario.name
        assert row.disorder == 0, row.scenario.name
        for result in (row.gateway, row.baseline):
            assert result.delivered == row.scenario.sessions * row.scenario.burst.events
    assert "burst x3" in capsys.readouterr().out
