"""`python -m bench.run --quick` runs end to end and loses nothing, on the synthetic agent and on the real path.

Tiny counts, no assertion on speed: performance figures live in the benchmark's output (bench/README.md).
"""

import pytest

from bench.run import main


def _check_lossless(rows) -> None:  # type: ignore[no-untyped-def]
    for row in rows:
        assert row.lost == (0, 0), row.scenario.name
        assert row.disorder == 0, row.scenario.name
        for result, readers in ((row.gateway, 2 if row.scenario.sse else 1), (row.baseline, 1)):
            assert result.delivered == readers * row.scenario.sessions * row.scenario.burst.events


def test_quick_bench_delivers_every_event_once(capsys) -> None:  # type: ignore[no-untyped-def]
    rows = main(["--quick", "--sessions", "1,3", "--burst", "900", "--paced-seconds", "0.2"])
    assert len(rows) == 4
    _check_lossless(rows)
    assert "burst x3" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_quick_real_path_bench_delivers_every_event_once(capsys) -> None:  # type: ignore[no-untyped-def]
    """Through SdkRunner, ClaudeSDKClient and its parser, reading the stand-in CLI (bench/standin_cli.py),
    to WebSocket clients and, in the `+sse` rows, to an SSE reader beside each."""
    rows = main(["--quick", "--real", "--sessions", "1,3", "--burst", "900", "--paced-seconds", "0.2"])
    assert [r.scenario.name for r in rows][-3:] == ["100/s each x3", "burst x1 +sse", "100/s each x3 +sse"]
    _check_lossless(rows)
    out = capsys.readouterr().out
    assert "by stage" in out and "SDK read+parse" in out and "real path" in out


def test_quick_redis_bench_delivers_every_event_once(capsys) -> None:  # type: ignore[no-untyped-def]
    """The gateway with the Redis log takes its turn beside the others and loses nothing either; the
    resume half replays from the owner and from another replica (bench/resume.py checks every seq)."""
    rows = main([
        "--quick", "--redis", "--sessions", "1", "--burst", "900", "--paced-seconds", "0.2", "--resume-sizes", "50,300", "--resume-repeats", "2",
    ])
    _check_lossless(rows)
    for row in rows:
        assert row.redis.delivered == row.scenario.sessions * row.scenario.burst.events
    out = capsys.readouterr().out
    assert "the gateway with the Redis log" in out and "bytes per 1,000 events" in out
    assert "300 events, other replica" in out
