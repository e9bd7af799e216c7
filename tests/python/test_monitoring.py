"""The sysfs readers against a fake tree laid out like the kernel's, and the
native vendor readers against stand-in NVML and rocm-smi libraries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exogpu.cli.monitor import _status
from exogpu.monitoring import Monitor, NvmlReader, RocmSmiReader, normalise_pci_bus_id

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    drm = tmp_path / "class" / "drm"
    # An AMD discrete GPU (amdgpu): hwmon in millidegrees and microwatts.
    amd = drm / "card0" / "device"
    write(amd / "vendor", "0x1002")
    write(amd / "device", "0x744c")
    write(amd / "uevent", "DRIVER=amdgpu\nPCI_CLASS=30000\nPCI_SLOT_NAME=0000:03:00.0")
    write(amd / "gpu_busy_percent", "37")
    write(amd / "mem_info_vram_used", str(3 * 2**30))
    write(amd / "mem_info_vram_total", str(24 * 2**30))
    hw = amd / "hwmon" / "hwmon4"
    write(hw / "name", "amdgpu")
    write(hw / "temp1_input", "54000")
    write(hw / "temp1_label", "edge")
    write(hw / "temp2_input", "61500")
    write(hw / "temp2_label", "junction")
    write(hw / "temp2_crit", "110000")
    write(hw / "power1_average", "123456789")
    write(hw / "power1_cap", "300000000")
    write(hw / "freq1_input", "2100000000")
    write(hw / "freq1_label", "sclk")
    write(drm / "card0-DP-1" / "status", "connected")  # a connector, not a GPU
    # An Intel integrated GPU (i915): an energy counter in microjoules, no power file.
    intel = drm / "card1" / "device"
    write(intel / "vendor", "0x8086")
    write(intel / "device", "0x46a6")
    write(intel / "uevent", "DRIVER=i915\nPCI_SLOT_NAME=0000:00:02.0")
    write(intel / "hwmon" / "hwmon5" / "name", "i915")
    write(intel / "hwmon" / "hwmon5" / "energy1_input", "5000000")
    write(drm / "card1" / "gt_cur_freq_mhz", "1300")
    # CPU thermal zones (millidegrees) and one RAPL package with a core subdomain.
    write(tmp_path / "class" / "thermal" / "thermal_zone0" / "type", "x86_pkg_temp")
    write(tmp_path / "class" / "thermal" / "thermal_zone0" / "temp", "48000")
    write(tmp_path / "class" / "thermal" / "thermal_zone1" / "type", "acpitz")
    write(tmp_path / "class" / "thermal" / "thermal_zone1" / "temp", "27800")
    rapl = tmp_path / "class" / "powercap" / "intel-rapl:0"
    write(rapl / "name", "package-0")
    write(rapl / "max_energy_range_uj", "262143328850")
    write(rapl / "energy_uj", "262140000000")
    write(tmp_path / "class" / "powercap" / "intel-rapl:0:0" / "name", "core")
    write(tmp_path / "class" / "powercap" / "intel-rapl:0:0" / "energy_uj", "1000")
    return tmp_path


def by_key(monitor: Monitor) -> dict[str, object]:
    return {d.key: d for d in monitor.read()}


def test_amd_gpu_readings_carry_units_and_sources(sysfs: Path) -> None:
    devices = {d.key: d for d in Monitor(sysfs, sources=("drm",), link_devices=False).read()}
    assert set(devices) == {"pci:0000:03:00.0", "pci:0000:00:02.0"}  # no connector
    amd = devices["pci:0000:03:00.0"]
    assert amd.vendor == "AMD" and amd.pci_bus_id == "0000:03:00.0"
    assert amd.name == "AMD GPU (device 0x744c)"
    edge = amd.get("temperature", "edge")
    junction = amd.get("temperature", "junction")
    assert edge is not None and (edge.value, edge.unit, edge.source) == (
        54.0,
        "degC",
        "sysfs:hwmon",
    )
    assert junction is not None and junction.value == 61.5
    crit = amd.get("temperature_critical", "junction")
    assert crit is not None and crit.value == 110.0
    power = amd.get("power")
    assert power is not None and power.unit == "W" and power.value == pytest.approx(123.456789)
    limit = amd.get("power_limit")
    assert limit is not None and limit.value == 300.0
    clock = amd.get("clock_graphics")
    assert clock is not None and (clock.value, clock.unit, clock.sensor) == (2100.0, "MHz", "sclk")
    used, total = amd.get("memory_used"), amd.get("memory_total")
    assert used is not None and total is not None
    assert (used.value, total.value, used.unit, used.source) == (
        3 * 2**30,
        24 * 2**30,
        "B",
        "sysfs:drm",
    )
    load = amd.get("utilization")
    assert load is not None and (load.value, load.unit) == (37.0, "%")
    # amdgpu has no energy counter: absent, not zero.
    assert amd.get("energy") is None


def test_intel_gpu_power_comes_from_its_energy_counter_from_the_second_sample(sysfs: Path) -> None:
    clock = Clock()
    monitor = Monitor(sysfs, sources=("drm",), clock=clock, link_devices=False)
    first = {d.key: d for d in monitor.read()}["pci:0000:00:02.0"]
    energy = first.get("energy")
    assert energy is not None and (energy.value, energy.unit) == (5.0, "J")
    assert first.get("power") is None  # one sample gives no rate
    assert first.get("temperature") is None  # i915 reports none here
    clock_reading = first.get("clock_graphics")
    assert clock_reading is not None and clock_reading.value == 1300.0
    write(
        sysfs / "class" / "drm" / "card1" / "device" / "hwmon" / "hwmon5" / "energy1_input",
        "12500000",
    )
    clock.now += 2.5
    second = {d.key: d for d in monitor.read()}["pci:0000:00:02.0"]
    power = second.get("power")
    assert power is not None and power.value == pytest.approx(3.0)  # 7.5 J over 2.5 s
    assert power.unit == "W" and power.sensor == "from energy1_input"


def test_cpu_thermal_zones_and_rapl_power_across_counter_wrap(sysfs: Path) -> None:
    clock = Clock()
    monitor = Monitor(sysfs, sources=("cpu",), clock=clock, link_devices=False)
    (cpu,) = monitor.read()
    assert cpu.key == "cpu"
    temps = {r.sensor: r.value for r in cpu.all("temperature")}
    assert temps == {"x86_pkg_temp": 48.0, "acpitz": 27.8}
    assert all(r.source == "sysfs:thermal" and r.unit == "degC" for r in cpu.all("temperature"))
    assert cpu.get("power") is None
    # Subdomains are inside their package and not reported on their own.
    assert [r.sensor for r in cpu.all("energy")] == ["package-0"]

    # The counter wraps at max_energy_range_uj: 3 328 850 uJ to the top, then 6 671 150.
    write(sysfs / "class" / "powercap" / "intel-rapl:0" / "energy_uj", "6671150")
    clock.now += 0.5
    (cpu,) = monitor.read()
    power = cpu.get("power", "package-0")
    energy = cpu.get("energy", "package-0")
    assert power is not None and energy is not None
    assert energy.value == pytest.approx(10.0)  # J since the first sample
    assert power.value == pytest.approx(20.0)  # 10 J in 0.5 s
    assert (power.unit, power.source) == ("W", "sysfs:rapl")


def test_unreadable_counters_and_missing_trees_give_no_readings(tmp_path: Path) -> None:
    assert Monitor(tmp_path, sources=("drm", "cpu"), link_devices=False).read() == []
    write(tmp_path / "class" / "powercap" / "intel-rapl:0" / "name", "package-0")
    write(tmp_path / "class" / "powercap" / "intel-rapl:0" / "energy_uj", "not a number")
    assert Monitor(tmp_path, sources=("cpu",), link_devices=False).read() == []


def test_sysfs_root_comes_from_the_environment(
    sysfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXOGPU_SYSFS_ROOT", str(sysfs))
    keys = {d.key for d in Monitor(sources=("drm", "cpu"), link_devices=False).read()}
    assert keys == {"pci:0000:03:00.0", "pci:0000:00:02.0", "cpu"}


def test_nvml_reader_says_why_it_is_unavailable() -> None:
    reader = NvmlReader("/nonexistent/libnvidia-ml.so.1")
    assert not reader.available
    assert reader.reason == "/nonexistent/libnvidia-ml.so.1 not found (install the NVIDIA driver)"
    assert reader.read(0.0) == []
    reader = NvmlReader("libm.so.6")  # a real library without NVML in it
    assert reader.reason == "libm.so.6 is missing nvmlInit_v2 (driver too old?)"


def test_pci_bus_ids_match_the_core_spelling() -> None:
    assert normalise_pci_bus_id("00000000:65:00.0") == "0000:65:00.0"
    assert normalise_pci_bus_id("0000:0A:1F.7") == "0000:0a:1f.7"
    assert normalise_pci_bus_id("0000:65:00") is None


def test_monitor_cli_json_over_a_fake_tree(sysfs: Path) -> None:
    env = {
        "EXOGPU_SYSFS_ROOT": str(sysfs),
        "EXOGPU_NVML_LIBRARY": "/nonexistent/libnvidia-ml.so.1",
        "EXOGPU_ROCM_SMI_LIBRARY": "/nonexistent/librocm_smi64.so.1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "exogpu", "monitor", "--json", "--count", "2", "--interval", "0.05"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    doc = json.loads(lines[1])
    devices = {d["key"]: d for d in doc["devices"]}
    assert devices["cpu"]["device_id"] == "cpu:0"  # linked to the exogpu device
    assert devices["cpu"]["thermal_state"] == "normal"
    amd = devices["pci:0000:03:00.0"]
    edge = next(r for r in amd["readings"] if r["name"] == "temperature" and r["sensor"] == "edge")
    assert edge == {
        "name": "temperature",
        "value": 54.0,
        "unit": "degC",
        "source": "sysfs:hwmon",
        "sensor": "edge",
    }
    for device in doc["devices"]:
        for reading in device["readings"]:
            assert reading["unit"] and reading["source"]


# ------------------------------------------------- stand-in vendor libraries


def build_stand_in(source: str, out: Path) -> Path:
    """Compiles tests/cpp/<source> (a stand-in vendor library declared from the
    reader's own symbol table) into a shared library, as the C++ suite does."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is needed to build the stand-in vendor library")
    subprocess.run(
        [
            compiler,
            "-std=c++20",
            "-shared",
            "-fPIC",
            "-I",
            str(REPO / "cpp" / "src"),
            "-o",
            str(out),
            str(REPO / "tests" / "cpp" / source),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def fake_rocm_smi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_stand_in(
        "fake_librocm_smi.cpp", tmp_path_factory.mktemp("rocm") / "librocm_smi64.so.1"
    )


@pytest.fixture(scope="session")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_stand_in(
        "fake_libnvidia_ml.cpp", tmp_path_factory.mktemp("nvml") / "libnvidia-ml.so.1"
    )


def test_nvml_reader_gives_readings_with_units_from_the_native_reader(fake_nvml: Path) -> None:
    reader = NvmlReader(str(fake_nvml))
    assert reader.available and reader.reason == ""
    (gpu,) = reader.read(7.0)
    assert (gpu.key, gpu.vendor, gpu.timestamp) == ("pci:0000:65:00.0", "NVIDIA", 7.0)
    assert gpu.uuid == "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"
    power = gpu.get("power")
    assert power is not None and (power.value, power.unit, power.source) == (123.456, "W", "nvml")
    throttle = gpu.get("throttle_reasons")
    assert throttle is not None and throttle.detail == "sw_power_cap,hw_thermal_slowdown"
    assert gpu.get("energy") is None  # the stand-in has no energy entry point


def test_rocm_smi_reader_says_why_it_is_unavailable() -> None:
    reader = RocmSmiReader("/nonexistent/librocm_smi64.so.1")
    assert not reader.available
    assert reader.reason == (
        "/nonexistent/librocm_smi64.so.1 not found (install ROCm's rocm-smi library)"
    )
    assert reader.read(0.0) == []
    reader = RocmSmiReader("libm.so.6")
    assert reader.reason == "libm.so.6 is missing rsmi_init (not a rocm-smi library?)"


def test_an_amd_gpu_rocm_smi_reports_is_listed_once_from_rocm_smi(
    sysfs: Path, fake_rocm_smi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXOGPU_ROCM_SMI_LIBRARY", str(fake_rocm_smi))
    monitor = Monitor(sysfs, sources=("rocm_smi", "drm"), link_devices=False)
    assert monitor.rocm_smi_status == ""
    assert monitor.nvml_status == "not selected"
    found = monitor.read()
    keys = [d.key for d in found]
    # The same PCI device is in the sysfs tree: one entry, not two.
    assert sorted(keys) == ["pci:0000:00:02.0", "pci:0000:03:00.0"]
    amd = next(d for d in found if d.key == "pci:0000:03:00.0")
    assert {r.source for r in amd.readings} == {"rocm_smi"}
    assert amd.name == "Radeon RX 7900 XTX (stand-in)"
    junction = amd.get("temperature", "junction")
    assert junction is not None and (junction.value, junction.unit) == (61.5, "degC")
    energy = amd.get("energy")
    assert energy is not None and (energy.value, energy.unit) == (30.5, "J")
    # The Intel GPU rocm-smi does not know is still read from sysfs.
    intel = next(d for d in found if d.key == "pci:0000:00:02.0")
    assert {r.source for r in intel.readings} <= {"sysfs:hwmon", "sysfs:drm"}


def test_without_rocm_smi_an_amd_gpu_is_read_from_sysfs(
    sysfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXOGPU_ROCM_SMI_LIBRARY", "/nonexistent/librocm_smi64.so.1")
    monitor = Monitor(sysfs, sources=("rocm_smi", "drm"), link_devices=False)
    assert monitor.rocm_smi_status.endswith("not found (install ROCm's rocm-smi library)")
    amd = {d.key: d for d in monitor.read()}["pci:0000:03:00.0"]
    assert "sysfs:hwmon" in {r.source for r in amd.readings}
    assert _status(monitor) == (
        "NVML: not selected\n"
        "rocm-smi: /nonexistent/librocm_smi64.so.1 not found (install ROCm's rocm-smi library)"
    )


def test_the_real_rocm_smi_library_says_whether_it_can_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EXOGPU_ROCM_SMI_LIBRARY", raising=False)
    reader = RocmSmiReader("librocm_smi64.so.1")
    if reader.reason.endswith("not found (install ROCm's rocm-smi library)"):
        pytest.skip("no rocm-smi library here (tools/install-deps.sh installs one)")
    if reader.available:
        assert all(d.pci_bus_id for d in reader.read(0.0))
        return
    assert re.fullmatch(
        r"librocm_smi64\.so\.1 found, but (rsmi_init failed: .+|it reports no device)",
        reader.reason,
    ), reader.reason
