"""`python -m bench.redis_log` runs end to end (tiny burst; no assertion on speed)."""

from bench.redis_log import main


def test_redis_log_bench_prints_its_figures(capsys) -> None:  # type: ignore[no-untyped-def]
    main(["--events", "3000"])
    out = capsys.readouterr().out
    for line in ("MemoryEventLog", "RedisEventLog", "300 events", "10,000 events", "per 1,000 logged events"):
        assert line in out
