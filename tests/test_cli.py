"""The command line: list, info, zoo, and its error messages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenets.cli import main


def test_list_filters_by_pattern(capsys):
    assert main(["list", "shufflenet_v1_g8_*", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    expected = {f"shufflenet_v1_g8_{w}" for w in ("025", "050", "100", "150", "200")}
    expected |= {f"shufflenet_v1_g8_{w}_noshuffle" for w in ("025", "050", "100")}
    assert set(names) == expected and len(names) == len(expected)
    assert main(["list", "mobilenet_v1*"]) == 0
    assert "MobileNetV1, alpha 0.25" in capsys.readouterr().out


def test_info_json_has_totals_and_layers(capsys):
    assert main(["info", "mobilenet_v1_100", "--resolution", "160", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "mobilenet_v1_100" and info["resolution"] == [160, 160]
    assert info["params"] == 4_231_976 and round(info["madds"] / 1e6) == 291
    assert sum(layer["madds"] for layer in info["layers"]) == info["madds"]
    assert set(info["breakdown"]) == {"conv 1x1", "depthwise 3x3", "conv 3x3", "fully connected"}


def test_info_table_non_square(capsys):
    assert main(["info", "mobilenet_v3_small_100", "-r", "224x160"]) == 0
    out = capsys.readouterr().out
    assert "at 224x160" in out and "stages.0.0.se.fc1" in out and "SE" in out and "P-V1 Table 2" in out


def test_zoo_json_has_no_mismatch(capsys):
    assert main(["zoo", "mobilenet_v3_*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in rows} <= {"ok", "erratum"}
    assert any(r["status"] == "erratum" and r["model"] == "mobilenet_v3_small_100" for r in rows)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "mobilenet_v2_10"], "did you mean mobilenet_v2_1"),
        (["info", "mobilenet_v2_100", "-r", "16"], "too small"),
        (["info", "mobilenet_v2_100", "-r", "wide"], "224x160"),
        (["list", "nothing*"], "no model matches"),
    ],
)
def test_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "mobilenets", "list", "mobilenet_v2_1*"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.split()[0::4][:3] == ["mobilenet_v2_100", "mobilenet_v2_130", "mobilenet_v2_140"]


def test_one_resolution_parser_for_every_command(capsys):
    from mobilenets.commands import resolution_arg, square_resolution_arg

    assert resolution_arg("160x128") == (160, 128) and resolution_arg("224") == (224, 224)
    assert square_resolution_arg("56") == 56
    bad = [["info", "mobilenet_v1_025", "-r", "22x"], ["export", "m", "-r", "abc"],
           ["bench", "mobilenet_v1_025", "-r", "1x"], ["train", "-m", "mobilenet_v1_025", "-r", "28x32"]]  # fmt: skip
    for argv in bad:
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "square --resolution" in err and len(err.strip().splitlines()) == len(bad)  # one line each
    assert main(["info", "mobilenet_v1_025", "-r", "160x128", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resolution"] == [160, 128]


def test_every_module_a_test_skips_without_is_in_the_dev_extra():
    """`pip install -e .[dev]` runs every test: nothing is skipped for a missing package (e.g. torchmetrics)."""
    import re
    import tomllib

    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        found = set()
        for req in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
            chosen = re.search(r"\[(.*)\]", req)
            found |= (
                names([r for e in chosen.group(1).split(",") for r in extras[e]]) if name == "mobilenets" else {name}
            )
        return found

    installed = names(project["dependencies"]) | names(extras["dev"])
    skipped = {m for f in (root / "tests").glob("*.py") for m in re.findall(r'importorskip\("([\w.]+)"', f.read_text())}
    assert skipped and skipped - installed == set()
