"""A new task by new files only: tests/toy_keypoints.py registers a model and a task, and the command line
trains, resumes, evaluates, predicts and exports it without a line of mobilenets naming it."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from mobilenets.cli import main


def test_a_fourth_task_runs_through_every_command(tmp_path, capsys):
    import toy_keypoints

    run = tmp_path / "run"
    argv = ["train", "-m", "toy_keypoints", "-d", "dots", "-o", str(run), "--epochs", "3", "-b", "32", "--lr", "0.1",
            "--threads", "1", "--no-progress", "--no-tensorboard", "--checkpoint-every", "2"]  # fmt: skip
    assert main([*argv, "--max-steps", "10"]) == 0  # stopped mid-epoch 2 ...
    assert "continue with `mobilenets train --resume" in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # ... and resumed to the end
    out = capsys.readouterr().out
    report = json.loads((run / "report.json").read_text())
    assert report["task"] == "keypoints" and f"val error {report['error_px']:.2f} px" in out
    assert report["error_px"] < 8  # it learned something (a random guess is ~12 px off)

    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["error_px"] == report["error_px"]

    images, xy = toy_keypoints.dots(2, seed=9)
    for k, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(tmp_path / f"dot{k}.png")
    pictures = tmp_path / "pictures"
    argv = ["predict", str(run / "best"), str(tmp_path / "dot0.png"), str(tmp_path / "dot1.png"), "--json"]
    assert main([*argv, "--save", str(pictures)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r["keypoints"]) for r in results] == [1, 1]
    assert np.asarray(Image.open(pictures / "dot0.png")).shape == (32, 32, 3)

    assert main(["export", str(run / "best"), "-o", str(tmp_path / "dots.onnx")]) == 0
    from mobilenets.deploy import metadata_of

    assert metadata_of(tmp_path / "dots.onnx")["task"] == "keypoints"


def test_the_commands_engine_and_predict_name_no_task():
    """Every task is reached through the task table: no task's name, nor an import of a task's module, in the
    files a new task must not need to edit."""
    import ast
    from pathlib import Path

    import mobilenets
    from mobilenets.tasks import task_names

    root = Path(mobilenets.__file__).parent
    files = [*sorted((root / "commands").glob("*.py")), root / "predict.py", root / "cli.py",
             *(root / "training" / name for name in ("engine.py", "task.py", "checkpoint.py", "report.py")),
             root / "data" / "show.py"]  # fmt: skip
    names = set(task_names())
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.ImportFrom) and node.module and "tasks." in f"{node.module}.":
                module = node.module.split("tasks", 1)[1]
                if module:  # the table itself (``from ..tasks import get_task``) is the one way in
                    found.append(f"{path.relative_to(root)}:{node.lineno} imports tasks{module}")
    assert found == []


def test_a_task_offered_by_another_package_is_found_through_its_entry_point(monkeypatch):
    import mobilenets.tasks as table
    from mobilenets.training import Task

    loaded = []

    class Offered:
        name, group = "depth", table.ENTRY_POINT_GROUP

        def load(self):  # what importing the package's module does: it registers its task
            @table.register_task
            class DepthTask(Task):
                name = "depth"

            loaded.append(DepthTask)
            return DepthTask

    monkeypatch.setattr(table, "entry_points", lambda group: [Offered()] if group == table.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(table, "_TABLE", dict(table._TABLE))
    assert "depth" in table.task_names() and not loaded  # listed without being imported
    assert table.get_task("depth") is loaded[0]
    try:
        table.get_task("nothing")
    except ValueError as err:
        assert "no task 'nothing'; the tasks are" in str(err) and "depth" in str(err)
    else:
        raise AssertionError("an unknown task must be refused")
