"""The figures we print: peak shares, zoo's counts and exit code, exact params, shuffle orders; --version,
--device, progress bars."""

import gzip
import io
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenets
from mobilenets import compare_published, create_model, list_models, profile, save_model
from mobilenets.cli import main
from mobilenets.complexity import Comparison, figure_met, is_exact
from mobilenets.deploy import bench, peak
from mobilenets.deploy.bench import BenchResult, format_table
from mobilenets.layers import ShuffleUnit
from mobilenets.registry import get_entry

# --- item 11: peak shares --------------------------------------------------------------------------------------


def _result(runtime, median_ms, madds=100_000_000, threads=1):
    return BenchResult("m", runtime, threads, 1, 224, median_ms, median_ms, 5, madds)


def test_peak_share_is_never_above_100_percent(monkeypatch):
    # 2 x 100M MAdds in 1 ms = 200 GFLOP/s against a (wrongly) measured 100 GFLOP/s peak.
    fast = _result("openvino", 1.0).finish(peak_per_core=100.0)
    assert fast.gflops == pytest.approx(200.0)
    assert fast.peak_share == 1.0 and fast.peak_basis == "fp32"
    assert fast.extra["peak_exceeded"] == pytest.approx(2.0)
    slow = _result("onnxruntime", 4.0, threads=2).finish(peak_per_core=100.0)
    assert slow.peak_share == pytest.approx(0.25) and "peak_exceeded" not in slow.extra
    # INT8 runtimes are measured against the int8 peak, bf16 against none.
    int8 = _result("openvino-int8", 1.0).finish(peak_per_core=100.0, int8_peak_per_core=800.0)
    assert int8.peak_basis == "int8" and int8.peak_share == pytest.approx(0.25)
    assert _result("onnxruntime-int8", 1.0).finish(100.0, None).peak_share is None
    assert _result("openvino-bf16", 1.0).finish(100.0, 800.0).peak_share is None

    monkeypatch.setattr(bench, "core_peak_gflops", lambda: (100.0, "fake loop"))
    monkeypatch.setattr(bench, "core_int8_peak_gops", lambda: (800.0, "fake int8 loop"))
    table = format_table([fast, slow, int8])
    shares = [int(line.split()[-1].rstrip("!").rstrip("%")) for line in table.splitlines()[2:5]]
    assert shares == [100, 25, 25] and max(shares) <= 100
    assert "100%!" in table and "measured too low" in table
    assert "fp32 100 GFLOP/s (fake loop), int8 800 GOP/s (fake int8 loop)" in table


def test_peaks_use_the_widest_vectors_the_cpu_has(monkeypatch):
    tried = []

    def fake_run(kernel, repeats=7):
        tried.append(kernel.name)
        return None if kernel.name in broken else 1.0

    monkeypatch.setattr(peak, "run_kernel", fake_run)
    spr = peak.CpuFeatures("SPR", ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"))
    monkeypatch.setattr(peak, "cpu_features", lambda: spr)
    for fn in (peak.core_peak_gflops, peak.core_int8_peak_gops):
        monkeypatch.setattr(peak, fn.__name__, fn.__wrapped__)  # uncached
    broken: set[str] = set()
    assert peak.core_peak_gflops() == (1.0, "AVX-512 FMA loop")
    assert peak.core_int8_peak_gops() == (1.0, "AMX-INT8 loop")
    broken = {"AVX-512 FMA", "AMX-INT8"}  # e.g. a compiler without -mamx-int8: the next widest
    assert peak.core_peak_gflops() == (1.0, "AVX2 FMA loop")
    assert peak.core_int8_peak_gops() == (1.0, "AVX512-VNNI loop")
    avx2 = peak.CpuFeatures("Zen 2", ("avx2",))
    monkeypatch.setattr(peak, "cpu_features", lambda: avx2)
    tried.clear()
    assert peak.core_peak_gflops() == (1.0, "AVX2 FMA loop") and tried == ["AVX2 FMA"]  # no AVX-512 loop on it
    assert peak.core_int8_peak_gops() == (None, "no VNNI or AMX")


def test_the_peak_loops_this_cpu_has_run():
    flags = peak.cpu_features().flags
    kernels = [k for k in peak.FP32_KERNELS + peak.INT8_KERNELS if all(f in flags for f in k.flags)]
    if not kernels:
        pytest.skip("no x86 SIMD flags on this CPU")
    measured = {k.name: peak.run_kernel(k, repeats=1) for k in kernels}
    # AMX needs the kernel's permission, so it may refuse; the vector loops always run where the flags say so.
    assert all(v is not None and v > 0 for name, v in measured.items() if name != "AMX-INT8"), measured


# --- item 12: zoo ---------------------------------------------------------------------------------------------


def test_zoo_json_and_table_exit_1_on_a_mismatch(monkeypatch, capsys):
    import mobilenets.commands.models as models_cmd

    def wrong(name):
        (comp,) = [c for c in compare_published(name) if c.published.params == "4.2M"][:1]
        return [Comparison(name, comp.published, comp.params * 2, comp.madds)]

    monkeypatch.setattr(models_cmd, "compare_published", wrong)
    assert main(["zoo", "mobilenet_v1_100", "--json"]) == 1
    out = capsys.readouterr()
    assert [r["status"] for r in json.loads(out.out)] == ["MISMATCH"]
    assert "1 MISMATCHES" in out.err
    assert main(["zoo", "mobilenet_v1_100"]) == 1
    assert "1 models, 1 with published figures, 1 comparisons (2 params/MAdds figures), 1 MISMATCHES" in (
        capsys.readouterr().out
    )


def test_zoo_says_what_it_counted(capsys):
    names = list_models("mobilenet_v3_small*")
    comparisons = {name: compare_published(name) for name in names}
    n_cmp = sum(map(len, comparisons.values()))
    n_fig = sum((c.params_text is not None) + (c.madds_text is not None) for cs in comparisons.values() for c in cs)
    with_figures = sum(bool(cs) for cs in comparisons.values())
    assert main(["zoo", "mobilenet_v3_small*"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"{len(names)} models, {with_figures} with published figures, {n_cmp} comparisons "
                    f"({n_fig} params/MAdds figures), all within tolerance")  # fmt: skip
    assert main(["zoo", "mobilenet_v3_small*", "--json"]) == 0
    assert capsys.readouterr().err.strip() == last


# --- exact counts ---------------------------------------------------------------------------------------------

EXACT = {  # torchvision / timm parameter counts, 1000 classes, BN affine included
    "mobilenet_v1_100": 4_231_976,  # timm mobilenetv1_100
    "mobilenet_v2_100": 3_504_872,  # torchvision mobilenet_v2
    "mobilenet_v3_large_100": 5_483_032,  # torchvision mobilenet_v3_large
    "mobilenet_v3_small_100": 2_542_856,  # torchvision mobilenet_v3_small
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_param_counts(name):
    assert profile(create_model(name)).params == EXACT[name]
    # The registry's exact figures for it say the same digits.
    for comp in compare_published(name):
        for text in (comp.params_text, comp.published.params):
            if text and is_exact(text) and comp.published.count_bn and comp.published.num_classes == 1000:
                assert int(text.replace(",", "")) == EXACT[name], comp.published.source


def test_exact_figures_are_compared_exactly():
    assert figure_met(3_504_872, "3,504,872", tolerance=0.01)
    assert not figure_met(3_504_873, "3,504,872", tolerance=0.01)
    assert not figure_met(3_503_872, "3,504,872", tolerance=0.01)  # without the classifier bias: 1,000 off
    assert figure_met(3_503_872, "3.5M", tolerance=0.01)  # rounded figures keep their tolerance
    # The registry's exact figures (torchvision's params, TF-slim's docstring MAdds) are our exact counts
    # under each source's convention (test_models checks them through compare_published and figure_met).
    exact = []
    for name in ["mobilenet_v1_075", "mobilenet_v1_100", "mobilenet_v2_100", "mobilenet_v3_large_100",
                 "mobilenet_v3_small_100"]:  # fmt: skip
        for pub in get_entry(name).published:
            texts = (pub.corrected_params, pub.corrected_madds) if pub.erratum else (pub.params, pub.madds)
            if any(t and is_exact(t) for t in texts):
                model = create_model(name, num_classes=pub.num_classes, **pub.options)
                counts = profile(model, pub.resolution).count(pub.count_bn, pub.count_classifier, pub.classifier_bias)
                exact += [(ours, text) for ours, text in zip(counts, texts, strict=True) if text and is_exact(text)]
    assert len(exact) == 7
    assert all(ours == int(text.replace(",", "")) for ours, text in exact)


def test_bias_free_classifier_count_is_exact():
    """megvii's ShuffleNet has a bias-free classifier: its count is ours less exactly num_classes params."""
    model = create_model("shufflenet_v1_g3_100")
    bias_free = create_model("shufflenet_v1_g3_100")
    bias_free.classifier = torch.nn.Linear(bias_free.classifier.in_features, 1000, bias=False)
    expected = sum(p.numel() for p in bias_free.parameters())
    assert profile(model).count(classifier_bias=False)[0] == expected == profile(model).params - 1000
    (megvii,) = [p for p in get_entry("shufflenet_v1_g3_100").published if p.source.startswith("megvii")]
    assert not megvii.classifier_bias  # so that zoo compares megvii's figures with the bias-free count


# --- shuffle order inside the units ---------------------------------------------------------------------------


def _unit_permutations(model):
    perms = []
    for unit in (m for m in model.modules() if isinstance(m, ShuffleUnit)):
        c = unit.dw.conv.in_channels
        x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1)
        perms.append(unit.shuffle(x).flatten().long())
    return perms


def test_units_shuffle_in_the_order_they_are_built_with():
    groups = 3
    paper = create_model("shufflenet_v1_g3_050").eval()
    megvii = create_model("shufflenet_v1_g3_050", shuffle_order="megvii").eval()
    for perm in _unit_permutations(paper):  # P-SN Sec 3.1: reshape to (groups, n), transpose, flatten
        c = len(perm)
        assert perm.tolist() == torch.arange(c).view(groups, c // groups).t().reshape(-1).tolist()
    for perm in _unit_permutations(megvii):  # the inverse: reshape to (n, groups)
        c = len(perm)
        assert perm.tolist() == torch.arange(c).view(c // groups, groups).t().reshape(-1).tolist()
    megvii.load_state_dict(paper.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(paper(x), megvii(x), atol=1e-4)


# --- item 13: --version, --device, progress -------------------------------------------------------------------


def test_version(capsys):
    assert main(["--version"]) == 0
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert capsys.readouterr().out.strip() == f"mobilenets {pyproject['project']['version']}"
    assert mobilenets.__version__ == pyproject["project"]["version"]


def _write_idx(root, split, images, labels):
    prefix = "train" if split == "train" else "t10k"
    head = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.tobytes()))
    head = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big")
    (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(head + labels.astype(np.uint8).tobytes()))


def _tiny_data_and_model(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 20), ("test", 12)):
        _write_idx(data, split, rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10)
    pre = mobilenets.Preprocessing((32, 32), 0, channel_order="L", mean=(0.5,), std=(0.5,))
    save_model(create_model("mobilenet_v1_025", num_classes=10, in_chans=1), tmp_path / "model", preprocessing=pre)
    return data, tmp_path / "model"


@pytest.mark.parametrize("command", ["train", "eval", "predict", "bench"])
def test_device_cuda_without_cuda_is_one_line(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data, model_dir = _tiny_data_and_model(tmp_path)
    argv = {
        "train": ["train", "-m", "mobilenet_v1_025", "-d", str(data), "-o", str(tmp_path / "run"), "--epochs", "1"],
        "eval": ["eval", str(model_dir), "-d", str(data)],
        "predict": ["predict", str(model_dir), str(tmp_path / "image.png")],
        "bench": ["bench", str(model_dir)],
    }[command]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda: CUDA is not available" in err and "use --device cpu" in err
    assert not (tmp_path / "run").exists()
    assert main([*argv, "--device", "tpu"]) == 2
    assert "--device takes cpu, cuda or cuda:N" in capsys.readouterr().err


def test_default_device_is_the_cpu_even_with_cuda(monkeypatch):
    from mobilenets.training import TrainConfig
    from mobilenets.training.dist import setup_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert TrainConfig(model="m", output="o").device == "cpu"
    assert setup_distributed().device == torch.device("cpu")
    assert setup_distributed("cuda").device == torch.device("cuda")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _FakeBar:
    made: list = []

    def __init__(self, iterable=None, **kwargs):
        self.iterable, self.kwargs, self.steps = iterable, kwargs, 0
        _FakeBar.made.append(self)

    def __iter__(self):
        for item in self.iterable:
            self.steps += 1
            yield item


@pytest.fixture
def fake_tqdm(monkeypatch):
    import mobilenets.progress as progress_module

    _FakeBar.made = []
    monkeypatch.setattr(progress_module, "_tqdm", lambda: _FakeBar)
    yield _FakeBar.made
    progress_module.set_quiet(False)


def test_progress_only_on_a_terminal_and_not_quiet(monkeypatch, fake_tqdm):
    from mobilenets import progress as progress_module
    from mobilenets.progress import progress

    items = [1, 2, 3]
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe or a file: no bar
    assert progress(items, "x") is items and not fake_tqdm
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert list(progress(items, "x")) == items and fake_tqdm[-1].steps == 3
    assert progress(items, "x", enabled=False) is items
    for argv in (["--quiet", "list"], ["list", "--quiet"], ["-q", "list", "mobilenet_v1_1*"]):
        assert main(argv) == 0
        assert progress(items, "x") is items, argv
    assert main(["list"]) == 0 and progress_module.enabled()


def test_eval_and_bench_show_progress_on_a_terminal(tmp_path, monkeypatch, fake_tqdm, capsys):
    data, model_dir = _tiny_data_and_model(tmp_path)
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert main(["eval", str(model_dir), "-d", str(data), "-b", "4"]) == 0
    (bar,) = fake_tqdm
    assert bar.kwargs["desc"].startswith("eval") and bar.kwargs["total"] == 3 and bar.steps == 3
    assert main(["bench", str(model_dir), "--runtimes", "eager", "--rounds", "2", "--round-seconds", "0.01"]) == 0
    assert fake_tqdm[-1].kwargs["unit"] == "round" and fake_tqdm[-1].steps == 2
    fake_tqdm.clear()
    assert main(["--quiet", "eval", str(model_dir), "-d", str(data), "-b", "4"]) == 0
    assert not fake_tqdm


def test_bench_on_cuda_takes_the_pytorch_runtimes_only(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["bench", "mobilenet_v1_025", "--device", "cuda", "--runtimes", "eager,onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "runtime 'onnxruntime' runs on the CPU only" in err and "--runtimes eager,optimized,compile" in err
    # A CUDA result has no CPU-peak share.
    assert _result("eager", 1.0).finish(100.0).peak_share is not None
    cuda = BenchResult("m", "eager", 1, 1, 224, 1.0, 1.0, 5, 10**8, device="cuda").finish(100.0)
    assert cuda.peak_share is None and cuda.peak_basis == ""


# --- item 14: pictures a person can read ----------------------------------------------------------------------


def _box_picture(side, scores=None):
    from mobilenets.data.show import draw_sample

    target = {"boxes": torch.tensor([[side * 0.25, side * 0.4, side * 0.75, side * 0.9]]), "labels": torch.tensor([1])}
    if scores is not None:
        target["scores"] = torch.tensor(scores)
    return draw_sample(torch.zeros(3, side, side, dtype=torch.uint8), target, ["background", "shirt"])


def _lit(picture, row):
    """Columns of ``row`` that are not black."""
    return (picture[:, row].sum(0) > 0).nonzero().flatten().tolist()


def test_box_lines_and_labels_grow_with_the_image():
    from mobilenets.data.show import MIN_SIDE

    widths = {}
    for side in (300, 1200):
        picture = _box_picture(side)
        assert picture.shape[1:] == (side, side)
        lit = _lit(picture, round(side * 0.65))  # a row through the box: its left and right edges
        widths[side] = sum(1 for c in lit if c < side / 2)
    assert 2 <= widths[300] < widths[1200]
    # A 64 px canvas is enlarged by a whole factor before drawing, so its label is not 10 px of a 64 px image.
    small = _box_picture(64)
    assert small.shape[1] >= MIN_SIDE and small.shape[1] % 64 == 0
    # With a score the label reads "shirt 0.87": a wider patch than "shirt" alone.
    row = round(300 * 0.4) - 5  # inside the label patch, just above the box
    assert len(_lit(_box_picture(300, [0.87]), row)) > len(_lit(_box_picture(300), row))


def test_class_colours_are_bright_and_none_is_grey():
    from mobilenets.data.show import colours

    for r, g, b in colours(40)[1:]:
        assert max(r, g, b) >= 150 and max(r, g, b) - min(r, g, b) >= 80, (r, g, b)


def test_segmentation_picture_has_a_legend_of_the_classes_present():
    from mobilenets.data.show import colours, draw_sample

    labels = ["background", "shirt", "coat", "bag"]
    mask = torch.zeros(128, 128, dtype=torch.long)
    mask[10:40, 10:40], mask[60:100, 60:100] = 1, 3
    picture = draw_sample(torch.zeros(1, 128, 128), mask, labels)
    assert picture.shape[1] > picture.shape[2] == 256  # enlarged x2, a legend strip under the image
    strip = picture[:, 256:].permute(1, 2, 0).reshape(-1, 3)
    shown = {tuple(c) for c in strip.tolist()}
    palette = colours(len(labels))
    assert palette[1] in shown and palette[3] in shown and palette[2] not in shown


def test_dense_predictions_have_prediction_and_truth_headers(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    from mobilenets.tasks.dense import DenseTask

    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[8:30, 8:30] = 2
    task = SimpleNamespace(mean=(0.5,), std=(0.5,), name="segmentation", data=SimpleNamespace(labels=["bg", "a", "b"]))
    path = DenseTask.prediction_grid(task, tmp_path, [(torch.zeros(1, 64, 64), mask, mask)] * 2)
    picture = np.asarray(Image.open(path).convert("L"))
    tile = 256  # 64 px enlarged x4
    header = picture[: picture.shape[0] - tile - 8]  # above the tiles (the legend is under them)
    assert (picture[:4] == 255).all() and (header < 128).any(axis=1).sum() >= 8  # a line of dark text on white
    # each of the 4 columns has its own header text, centred over it
    for column in range(4):
        centre = 4 + column * (tile + 4) + tile // 2
        assert (header[:, centre - 30 : centre + 30] < 128).any()


def _axes_lines(fig):
    return [[line for line in ax.get_lines()] for ax in fig.axes]


def test_one_epoch_curves_show_points_and_name_the_split():
    from mobilenets.training.report import curves_figure, pyplot

    plt = pyplot()
    history = [{"epoch": 1, "train_loss": 0.6, "train_top1": 80.0, "val_loss": 0.45, "val_top1": 85.2}]
    fig = curves_figure(plt, history, "top1", "top-1 (%)", "test")
    for ax in fig.axes:
        assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test (held out)"]
    assert fig.axes[1].get_title() == "top-1 (%) on test"
    plt.close(fig)
    # no held-out loss where the evaluation computed none (the dense tasks)
    fig = curves_figure(plt, [{"epoch": 1, "train_loss": 2.0, "val_map": 0.1}], "map", "mAP")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train"]
    plt.close(fig)


def test_bench_plot_joins_no_two_models():
    import matplotlib.pyplot as plt

    results = [BenchResult(model, runtime, 1, 1, 224, ms, ms, 5, madds, top1=top1)
               for model, madds, top1 in (("a", 10**8, 60.0), ("b", 3 * 10**8, 70.0))
               for runtime, ms in (("eager", 2.0 * madds / 10**8), ("onnxruntime", 1.0 * madds / 10**8))]  # fmt: skip
    fig = bench._figure(results, plt)
    latency, accuracy = fig.axes
    for line in latency.get_lines():  # one model: one MAdds count
        assert len(set(line.get_xdata())) == 1
    for line in accuracy.get_lines():  # one model: one top-1
        assert len(set(line.get_ydata())) == 1
    assert {t.get_text() for t in latency.get_legend().get_texts()} == {"eager (1 thr)", "onnxruntime (1 thr)"}
    assert {t.get_text() for t in latency.texts} == {"a", "b"}
    plt.close(fig)


def test_pareto_keeps_a_small_gap_small_and_marks_the_unfinished_seed():
    import matplotlib.pyplot as plt

    from mobilenets.search.netadapt import MIN_SPAN, pareto_figure

    history = json.loads((Path(__file__).parents[1] / "docs/images/netadapt_fmnist.json").read_text())
    fig = pareto_figure(plt, history)
    search, finished = fig.axes
    low, high = finished.get_ylim()
    assert high - low >= MIN_SPAN  # 91.27-92.12 is not stretched to full height
    seed_ms = history["comparison"]["measured_ms"]["seed"]
    (seed,) = [line for line in finished.get_lines() if line.get_xdata()[0] == seed_ms]
    assert seed.get_markerfacecolor() == "none"
    assert any("not finished" in t.get_text() for t in finished.texts)
    plt.close(fig)
