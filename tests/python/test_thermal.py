"""The thermal policy's hysteresis and weights."""

from __future__ import annotations

import pytest

from exogpu.monitoring import DeviceReadings, Reading
from exogpu.placement.problem import DeviceSpec, Layer, Link, Problem
from exogpu.thermal import ThermalLimits, ThermalPolicy, ThermalState


def test_hot_is_entered_at_the_threshold_and_left_only_below_it_minus_hysteresis() -> None:
    policy = ThermalPolicy(ThermalLimits(hot_c=80.0, hysteresis_c=5.0))
    states = [policy.observe("gpu", t).state for t in (70.0, 79.9, 80.0, 77.0, 75.0, 74.9, 79.0)]
    assert states == [
        ThermalState.NORMAL,
        ThermalState.NORMAL,
        ThermalState.HOT,  # reached 80
        ThermalState.HOT,  # 77 is inside the band
        ThermalState.HOT,  # 75 is still not below 80 - 5
        ThermalState.NORMAL,  # below 75
        ThermalState.NORMAL,  # 79 does not re-enter; only 80 does
    ]


def test_an_absent_temperature_changes_nothing() -> None:
    policy = ThermalPolicy(ThermalLimits(hot_c=80.0))
    policy.observe("gpu", 85.0)
    assert policy.observe("gpu", None).state is ThermalState.HOT
    assert policy.observe("other", None).state is ThermalState.NORMAL


def test_throttled_holds_until_several_clear_samples() -> None:
    policy = ThermalPolicy(ThermalLimits(clear_samples=3))
    assert (
        policy.observe("gpu", 60.0, throttled=True, reasons=("hw_slowdown",)).state
        is ThermalState.THROTTLED
    )
    assert policy.observe("gpu", 60.0, throttled=False).state is ThermalState.THROTTLED
    assert policy.observe("gpu", 60.0, throttled=False).state is ThermalState.THROTTLED
    assert (
        policy.observe("gpu", 60.0, throttled=True).state is ThermalState.THROTTLED
    )  # resets the run
    for _ in range(2):
        assert policy.observe("gpu", 60.0, throttled=False).state is ThermalState.THROTTLED
    last = policy.observe("gpu", 60.0, throttled=False)
    assert last.state is ThermalState.NORMAL and last.reasons == ()


def test_the_device_slowdown_temperature_lowers_the_hot_threshold_and_means_throttled() -> None:
    policy = ThermalPolicy(ThermalLimits(hot_c=90.0, slowdown_margin_c=5.0))
    assert policy.observe("gpu", 82.0, slowdown_c=87.0).state is ThermalState.HOT  # 87 - 5 = 82
    throttled = policy.observe("gpu", 87.0, slowdown_c=87.0)
    assert throttled.state is ThermalState.THROTTLED
    assert throttled.reasons == ("temperature_at_slowdown",)


def test_weights_follow_the_state() -> None:
    limits = ThermalLimits(hot_c=80.0, hot_weight=0.5, throttled_weight=0.2)
    policy = ThermalPolicy(limits)
    policy.observe("cool", 40.0)
    policy.observe("hot", 81.0)
    policy.observe("slow", 50.0, throttled=True)
    assert policy.weights() == {"cool": 1.0, "hot": 0.5, "slow": 0.2}
    assert policy.weight("never-seen") == 1.0


def test_update_reads_nvml_throttle_reasons_and_the_hottest_sensor() -> None:
    policy = ThermalPolicy(ThermalLimits(hot_c=80.0))
    gpu = DeviceReadings(
        key="pci:0000:65:00.0",
        vendor="NVIDIA",
        name="test",
        device_id="cuda:0",
        readings=(
            Reading("temperature", 70.0, "degC", "nvml", "gpu"),
            Reading(
                "throttle_reasons",
                float(0x1 | 0x20),
                "flags",
                "nvml",
                None,
                "gpu_idle,sw_thermal_slowdown",
            ),
        ),
    )
    amd = DeviceReadings(
        key="pci:0000:03:00.0",
        vendor="AMD",
        name="test",
        readings=(
            Reading("temperature", 60.0, "degC", "sysfs:hwmon", "edge"),
            Reading("temperature", 83.0, "degC", "sysfs:hwmon", "junction"),
        ),
    )
    states = policy.update([gpu, amd])
    assert states["cuda:0"].state is ThermalState.THROTTLED
    assert states["cuda:0"].reasons == ("sw_thermal_slowdown",)
    assert states["pci:0000:03:00.0"].state is ThermalState.HOT  # junction, not edge
    idle_only = DeviceReadings(
        key="k",
        vendor="NVIDIA",
        name="t",
        readings=(Reading("throttle_reasons", 1.0, "flags", "nvml", None, "gpu_idle"),),
    )
    assert policy.update([idle_only])["k"].state is ThermalState.NORMAL  # idling is not throttling


@pytest.mark.parametrize(
    "kwargs",
    [{"hysteresis_c": -1.0}, {"clear_samples": 0}, {"hot_weight": 1.5}, {"throttled_weight": 0.0}],
)
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThermalLimits(**kwargs)  # type: ignore[arg-type]


def test_derate_scales_only_hot_devices_of_the_node() -> None:
    def device(id: str, node: str) -> DeviceSpec:
        return DeviceSpec(id, node, 1 << 30, flops=1e12, memory_bandwidth=1e11)

    problem = Problem(
        layers=(Layer("l0", 1 << 20, 0, 1e9, 1 << 10),),
        devices=(device("cuda:0", "a"), device("cuda:1", "a"), device("cuda:0@b", "b")),
        default_link=Link(1e9, 1e-4),
    )
    policy = ThermalPolicy(ThermalLimits(hot_c=80.0, hot_weight=0.5, throttled_weight=0.25))
    policy.observe("cuda:0", 90.0)
    policy.observe("cuda:1", 60.0, throttled=True, reasons=("hw_slowdown",))
    policy.observe("cuda:0@b", 95.0)
    derated = policy.derate(problem, node="a")
    flops = {d.id: (d.flops, d.memory_bandwidth) for d in derated.devices}
    assert flops == {
        "cuda:0": (0.5e12, 0.5e11),
        "cuda:1": (0.25e12, 0.25e11),
        "cuda:0@b": (1e12, 1e11),  # another node's device: not this policy's to judge
    }
    assert problem.devices[0].flops == 1e12  # the original is untouched
    assert policy.derate(problem).devices[2].flops == 0.5e12  # no node: every id it has seen
    cool = ThermalPolicy()
    cool.observe("cuda:0", 40.0)
    assert cool.derate(problem) == problem
