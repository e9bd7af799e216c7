"""Hostile problem, cluster and previous-placement files: every one is a
typed error that names what is wrong; `exogpu place` prints it, exits
nonzero and never shows a traceback."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exogpu
from exogpu import cluster
from exogpu.cli import main
from exogpu.placement import Placement, Problem, solve
from test_placement_fuzz import ALL_PATHS, VALID


def place(*args: str) -> tuple[int, str, str]:
    """Runs `exogpu place` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["place", *args])
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
    # rich wraps long lines at spaces: one line, single spaces
    return code, out.getvalue(), " ".join(err.getvalue().split())


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def with_value(path: tuple[Any, ...], raw: str) -> str:
    """VALID as JSON text with the value at `path` replaced by raw text."""
    marker = "__exogpu_marker__"
    data = json.loads(json.dumps(VALID))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return json.dumps(data).replace(json.dumps(marker), raw)


HOSTILE_VALUES = st.sampled_from(
    [
        deep(5000),
        deep(40),
        "9" * 400,
        "-" + "9" * 30,
        "1e999",
        "NaN",
        "Infinity",
        '"[bold]x[/]"',
        '{"a": ' * 50 + "1" + "}" * 50,
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(ALL_PATHS), raw=HOSTILE_VALUES)
def test_place_on_hostile_problem_file_is_a_clean_error(
    tmp_path: Path, path: tuple[Any, ...], raw: str
) -> None:
    problem = tmp_path / "problem.json"
    problem.write_text(with_value(path, raw))
    code, out, err = place("--problem", str(problem), "--time-budget", "0.2", "--json")
    if code == 0:  # some replacements are legal (a name like "[bold]x[/]")
        assert json.loads(out)["stages"]
        return
    assert "Traceback" not in err and "error:" in err, err
    assert code == 2


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (with_value(("devices", 0, "flops"), "9" * 400), "devices[0].flops"),
        (with_value(("layers", 1, "weight_bytes"), "1e999"), "layers[1].weight_bytes"),
        (with_value(("workload",), deep(5000)), "nested deeper"),
        (with_value(("constraints", "memory_headroom"), "NaN"), "NaN"),
    ],
)
def test_the_error_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    problem = tmp_path / "problem.json"
    problem.write_text(text)
    code, _, err = place("--problem", str(problem))
    assert code == 2 and "Traceback" not in err
    assert field in err, err


def test_toml_problem_and_cluster_files_are_bounded(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = place("--problem", str(toml))
    assert code == 2 and "nested deeper" in err and "Traceback" not in err
    toml.write_text("[workload]\nbatch = " + "9" * 40 + "\n")
    code, _, err = place("--problem", str(toml))
    assert code == 2 and "workload.batch" in err and "too large" in err
    c = tmp_path / "c.toml"
    c.write_text("[default_link]\nbandwidth = 1e9\nlatency = " + "9" * 40 + "\n")
    with pytest.raises(exogpu.InvalidArgument, match=r"default_link\.latency"):
        cluster.Cluster.from_file(c)
    c = tmp_path / "c.json"
    c.write_text('{"devices": ' + deep(5000) + "}")
    with pytest.raises(exogpu.InvalidArgument, match="nested deeper"):
        cluster.Cluster.from_file(c)


def test_a_problem_in_toml_solves_like_its_json(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    lines = [f"version = {VALID['version']}"]
    for x in VALID["layers"]:
        lines.append("[[layers]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in x.items()]
    for d in VALID["devices"]:
        lines.append("[[devices]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in d.items()]
    for x in VALID["links"]:
        lines.append("[[links]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in x.items()]
    for table in ("default_link", "intra_node_link", "workload", "constraints", "memory_pools"):
        lines.append(f"[{table}]")
        lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in VALID[table].items()]
    lines.append("[endpoints]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in VALID["endpoints"].items() if k != "links"]
    for x in VALID["endpoints"]["links"]:
        lines.append("[[endpoints.links]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in x.items()]
    toml.write_text("\n".join(lines).replace("false", "false") + "\n")
    assert Problem.from_json(toml) == Problem.from_json(VALID)


def test_previous_naming_an_unknown_device_is_refused(tmp_path: Path) -> None:
    problem = Problem.from_json(VALID)
    first = solve(problem).to_json()
    forged = json.loads(json.dumps(first))
    forged["stages"][0]["device"] = "evil:0"
    with pytest.raises(exogpu.InvalidArgument, match="unknown device 'evil:0'"):
        solve(problem, previous=forged)
    with pytest.raises(exogpu.InvalidArgument, match="unknown device"):
        solve(problem, previous=["a", "evil:0", "b"])
    # A device that left, named as such, is fine: its layers move.
    again = solve(problem, previous=forged, departed=["evil:0"])
    assert again.moved_layers is not None
    assert set(
        range(forged["stages"][0]["first_layer"], forged["stages"][0]["last_layer"] + 1)
    ) <= set(again.moved_layers)
    # And through the CLI.
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(VALID))
    prev = tmp_path / "previous.json"
    prev.write_text(json.dumps(forged))
    code, _, err = place("--problem", str(path), "--previous", str(prev))
    assert code == 2 and "unknown device" in err and "Traceback" not in err
    code, out, err = place(
        "--problem", str(path), "--previous", str(prev), "--departed", "evil:0", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["moved_layers"]


@settings(max_examples=200, deadline=None)
@given(
    mutation=st.sampled_from(
        [
            ("stages", 0, "first_layer", -1),
            ("stages", 0, "first_layer", 2**80),
            ("stages", 0, "last_layer", True),
            ("stages", 0, "device", 7),
            ("stages", 0, "time", float("inf")),
            ("stages", 0, "memory_bytes", "many"),
            ("stages", None, None, "x"),
            ("hops", None, None, {"from": 1}),
            ("value", None, None, 10**400),
        ]
    )
)
def test_hostile_previous_placement_names_the_field(mutation: tuple[Any, ...]) -> None:
    data = solve(Problem.from_json(VALID)).to_json()
    key, index, field, value = mutation
    if index is None:
        data[key] = value if key != "stages" else [value]
        if key == "hops":
            data[key] = [value]
    else:
        data[key][index][field] = value
    with pytest.raises(exogpu.InvalidArgument, match=r"previous"):
        Placement.from_json(data)


def test_infinite_budget_on_the_command_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(VALID))
    code, _, err = place("--problem", str(path), "--time-budget", "inf")
    assert code == 2 and "time_budget" in err and "Traceback" not in err
