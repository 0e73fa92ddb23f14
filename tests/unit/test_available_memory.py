"""Available memory for admission: the node's MemAvailable, or the cgroup's headroom when lower (v1 and v2)."""

from pathlib import Path

from gateway.sessions.admission import available_memory

MiB = 1024 * 1024


def fake_proc(tmp: Path, cgroup: str, mem_available_kb: int = 8 * 1024 * 1024) -> Path:
    proc = tmp / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal:       25000000 kB\nMemAvailable:   {mem_available_kb} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    return proc


def test_without_a_cgroup_limit_the_node_decides(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "app").mkdir(parents=True)
    (root / "app" / "memory.max").write_text("max\n")
    (root / "app" / "memory.current").write_text(str(100 * MiB))
    proc = fake_proc(tmp_path, "0::/app\n")
    assert available_memory(root, proc) == 8 * 1024 * MiB


def test_cgroup_v2_headroom_counts_usage_less_inactive_file_cache(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    group = root / "pod" / "app"
    group.mkdir(parents=True)
    (group / "memory.max").write_text(str(2048 * MiB))
    (group / "memory.current").write_text(str(1500 * MiB))
    (group / "memory.stat").write_text(f"anon {1000 * MiB}\ninactive_file {500 * MiB}\n")
    (root / "pod" / "memory.max").write_text(str(4096 * MiB))  # the parent's limit is looser
    (root / "pod" / "memory.current").write_text(str(1500 * MiB))
    proc = fake_proc(tmp_path, "0::/pod/app\n")
    assert available_memory(root, proc) == (2048 - 1000) * MiB


def test_cgroup_v1_tightest_ancestor_wins(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    group = root / "memory" / "outer" / "inner"
    group.mkdir(parents=True)
    (group / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "no limit"
    (group / "memory.usage_in_bytes").write_text(str(300 * MiB))
    (root / "memory" / "outer" / "memory.limit_in_bytes").write_text(str(1024 * MiB))
    (root / "memory" / "outer" / "memory.usage_in_bytes").write_text(str(600 * MiB))
    proc = fake_proc(tmp_path, "5:cpu:/\n4:memory:/outer/inner\n0::/\n")
    assert available_memory(root, proc) == 424 * MiB


def test_unreadable_everywhere_means_no_memory_limit(tmp_path: Path) -> None:
    assert available_memory(tmp_path / "no-cgroup", tmp_path / "no-proc") is None
