"""Model directories: round trip, atomic writes, clear errors on bad input."""

import json

import pytest
import torch

import mobilenets
from mobilenets import Preprocessing, create_model, load_model, save_model
from mobilenets.io import atomic_write


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


def test_round_trip_keeps_weights_labels_preprocessing(tmp_path):
    model = _randomize_bn(create_model("shufflenet_v1_g3_050", num_classes=3, in_chans=1, bn_eps=1e-3)).eval()
    prep = Preprocessing((64, 64), 0, channel_order="L", mean=(0.3,), std=(0.2,))
    save_model(model, tmp_path / "m", labels=["a", "b", "c"], preprocessing=prep)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert loaded.name == "shufflenet_v1_g3_050" and loaded.labels == ["a", "b", "c"]
    assert loaded.preprocessing == prep and not loaded.training
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["options"]["bn_eps"] == 1e-3 and config["num_classes"] == 3


def test_saving_over_a_model_replaces_it_whole(tmp_path):
    save_model(create_model("mobilenet_v3_small_075", num_classes=2), tmp_path / "m")
    save_model(create_model("mobilenet_v1_025", num_classes=4), tmp_path / "m", overwrite=True)
    assert load_model(tmp_path / "m").name == "mobilenet_v1_025"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary leftovers


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "ckpt.txt"
    target.write_text("old")

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.txt"]


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty")
    save_model(create_model("mobilenet_v2_035", num_classes=5), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        load_model(tmp_path / "m")


def test_mismatched_weights_name_the_first_key_and_both_shapes(tmp_path):
    save_model(create_model("mobilenet_v2_035", num_classes=5), tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["options"]["num_classes"] = 7
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"'classifier.weight' has shape \(5, 1280\).*\(7, 1280\)"):
        load_model(tmp_path / "m")


def test_save_rejects_foreign_models(tmp_path):
    with pytest.raises(TypeError, match="create_model"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="2 labels"):
        save_model(create_model("mobilenet_v1_025", num_classes=3), tmp_path / "y", labels=["a", "b"])
    assert not (tmp_path / "y").exists()


def test_preprocessing_transform(tmp_path):
    from PIL import Image

    prep = Preprocessing((32, 48), 40, channel_order="BGR", value_range=255.0, mean=(0, 0, 0), std=(1, 1, 1))
    image = Image.new("RGB", (100, 80), (10, 20, 30))
    x = prep.transform()(image)
    assert x.shape == (3, 32, 48)
    torch.testing.assert_close(x[:, 5, 5], torch.tensor([30.0, 20.0, 10.0]), atol=1e-3, rtol=0)
    assert mobilenets.preprocessing.default_preprocessing(1, 28).transform()(image).shape == (1, 28, 28)


def test_one_resolver_takes_a_model_dir_a_run_or_shipped_weights(tmp_path, monkeypatch):
    from mobilenets.io import resolve_model_dir
    from mobilenets.pretrained import WEIGHTS_ROOT, available

    save_model(create_model("mobilenet_v1_025", num_classes=2), tmp_path / "run" / "best")
    (tmp_path / "run" / "run.json").write_text("{}")
    assert resolve_model_dir(tmp_path / "run") == tmp_path / "run" / "best"
    assert resolve_model_dir(tmp_path / "run" / "best") == tmp_path / "run" / "best"
    shipped = next(iter(available()))
    name, _, tag = shipped.partition(".")
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir(shipped) == WEIGHTS_ROOT / tag / name
    with pytest.raises(FileNotFoundError, match="missing is neither a run directory .with best/. nor a model dir"):
        resolve_model_dir(tmp_path / "missing")
    (tmp_path / shipped).mkdir()  # a local folder of the same name wins, and the error says what it hides
    with pytest.raises(FileNotFoundError, match=f"neither a run directory .* hides the shipped weights {shipped}"):
        resolve_model_dir(shipped)
