"""``available_cores``: what 'processes auto' and 'inference_threads 0' mean under a CPU affinity mask or a
container's CPU quota (cgroup files written to a temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_worker.common.cpus import available_cores, cgroup_cpu_quota
from stream_worker.common.settings import Settings


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_rounded_up(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert available_cores(tmp_path) == min(2, len(os.sched_getaffinity(0)))


def test_no_quota_means_the_affinity_mask(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cores(tmp_path) == len(os.sched_getaffinity(0))
    assert cgroup_cpu_quota(tmp_path / "nothing-here") is None


@pytest.mark.parametrize("folder", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota(tmp_path: Path, folder: str) -> None:
    write(tmp_path, f"{folder}/cpu.cfs_quota_us", "50000\n")
    write(tmp_path, f"{folder}/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path) == 0.5
    assert available_cores(tmp_path) == 1  # never below one


def test_cgroup_v1_unlimited(tmp_path: Path) -> None:
    write(tmp_path, "cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_processes_auto_counts_the_cores_this_process_may_use() -> None:
    assert Settings(processes="auto").process_count == available_cores()
    assert Settings(processes=3).process_count == 3
