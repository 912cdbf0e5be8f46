"""Detection and segmentation data: Fashion-MNIST canvases, COCO and VOC loaders, export, augmentation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.ops import box_iou

from mobilenets.cli import main
from mobilenets.data import (
    CanvasGenerator,
    CanvasSpec,
    collate_detection,
    detection_transforms,
    export_canvases,
    load_detection_data,
    load_segmentation_data,
    segmentation_transforms,
)
from mobilenets.data.canvas import _load_pool
from mobilenets.data.classification import FASHION_MNIST_DIR, FASHION_MNIST_LABELS
from mobilenets.io import OutputExistsError

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist")

SPEC = CanvasSpec()


@pytest.fixture(scope="module")
def train_canvases():
    generator = CanvasGenerator(SPEC, "train")
    return [generator(i) for i in range(60)]


def resized_item(split: str, item: int, side: int) -> np.ndarray:
    """The item as the generator must scale it (bilinear, rounded), computed here independently."""
    images, _ = _load_pool(str(FASHION_MNIST_DIR))["train" if split == "train" else "test"]
    x = torch.from_numpy(images[item]).float()[None, None]
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy().round()


# --- the generator -------------------------------------------------------------------


def test_name_spells_the_parameters_and_parses_back():
    assert SPEC.name == "fmnist-det-128-n1to4-s24to64-seed1"
    other = CanvasSpec(task="seg", size=96, min_items=2, max_items=3, min_scale=20, max_scale=40, max_iou=0.3, seed=7)
    assert other.name == "fmnist-seg-96-n2to3-s20to40-iou0.3-seed7"
    assert CanvasSpec.parse(other.name) == other
    assert CanvasSpec.parse("fmnist-det") == SPEC
    assert SPEC.to_dict()["name"] == SPEC.name and SPEC.to_dict()["version"] == "fmnist-canvas-v1"
    with pytest.raises(ValueError, match="not a canvas dataset name"):
        CanvasSpec.parse("fmnist-detection")
    with pytest.raises(ValueError, match="item sizes"):
        CanvasSpec(size=32)


def test_same_seed_same_canvas_in_any_order_and_any_worker():
    a, b = CanvasGenerator(SPEC, "train"), CanvasGenerator(SPEC, "train")
    forward = [a(i) for i in range(6)]
    backward = [b(i) for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
        assert np.array_equal(x.boxes, y.boxes) and np.array_equal(x.labels, y.labels)
    other_seed = CanvasGenerator(SPEC.replace(seed=2), "train")(0)
    assert not np.array_equal(other_seed.image, forward[0].image)
    assert not np.array_equal(CanvasGenerator(SPEC, "val")(0).image, forward[0].image)
    # DataLoader workers (forked, each with its own order of indices) give the same samples as the main process.
    data = load_detection_data("fmnist-det", train_limit=12, val_limit=1, augment="none")
    order = [7, 3, 11, 0, 5, 9, 1, 2]
    alone = [data.train[i] for i in order]
    loader = DataLoader(torch.utils.data.Subset(data.train, order), batch_size=3, num_workers=2,
                        collate_fn=collate_detection)  # fmt: skip
    pooled = [(image, target) for images, targets in loader for image, target in zip(images, targets, strict=True)]
    for (x, t), (y, u) in zip(alone, pooled, strict=True):
        assert torch.equal(x, y) and torch.equal(t["boxes"], u["boxes"]) and torch.equal(t["labels"], u["labels"])


def test_items_come_from_their_split_scaled_and_thresholded(train_canvases):
    val = CanvasGenerator(SPEC, "val")
    for split, canvases in (("train", train_canvases[:20]), ("val", [val(i) for i in range(20)])):
        for c in canvases:
            _, classes = _load_pool(str(FASHION_MNIST_DIR))["train" if split == "train" else "test"]
            assert np.array_equal(c.labels, classes[c.items] + 1)
            for (_, _, fg), item in zip(c.footprints, c.items, strict=True):
                assert SPEC.min_scale <= fg.shape[0] <= SPEC.max_scale
                assert np.array_equal(fg, resized_item(split, item, fg.shape[0]) > SPEC.threshold)


def test_boxes_are_tight_to_their_items_pixels(train_canvases):
    for c in train_canvases:
        assert len(c.boxes) >= 1
        for box, (x0, y0, fg) in zip(c.boxes.astype(int), c.footprints, strict=True):
            pixels = np.zeros_like(c.mask, dtype=bool)
            pixels[y0 : y0 + fg.shape[0], x0 : x0 + fg.shape[1]] = fg
            x1, y1, x2, y2 = box
            assert pixels[:, x1].any() and pixels[:, x2 - 1].any() and pixels[y1].any() and pixels[y2 - 1].any()
            inside = np.zeros_like(pixels)
            inside[y1:y2, x1:x2] = True
            assert not (pixels & ~inside).any()


def test_masks_agree_with_boxes_labels_and_image(train_canvases):
    for c in train_canvases:
        union = np.zeros_like(c.mask, dtype=bool)
        for x0, y0, fg in c.footprints:
            union[y0 : y0 + fg.shape[0], x0 : x0 + fg.shape[1]] |= fg
        assert np.array_equal(c.mask > 0, union)
        assert set(np.unique(c.mask)) - {0} <= set(c.labels.tolist())
        x0, y0, fg = c.footprints[-1]  # the last item is on top of all others
        assert (c.mask[y0 : y0 + fg.shape[0], x0 : x0 + fg.shape[1]][fg] == c.labels[-1]).all()
        for box, label in zip(c.boxes.astype(int), c.labels, strict=True):
            outside = np.ones_like(union)
            x1, y1, x2, y2 = box
            for b, lab in zip(c.boxes.astype(int), c.labels, strict=True):
                if lab == label:
                    outside[b[1] : b[3], b[0] : b[2]] = False
            assert not (c.mask[outside] == label).any()
        assert (c.image[c.mask > 0] > SPEC.threshold).all()


def test_overlap_limit_and_item_counts(train_canvases):
    counts = []
    for c in train_canvases:
        counts.append(len(c.labels))
        iou = box_iou(torch.from_numpy(c.boxes), torch.from_numpy(c.boxes)).fill_diagonal_(0)
        assert iou.max() <= SPEC.max_iou + 1e-6
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) >= 3


def test_loaders_give_the_sample_contract():
    det = load_detection_data("fmnist-det", train_limit=4, val_limit=2, seed=3)
    assert det.name == "fmnist-det-128-n1to4-s24to64-seed3" and det.to_dict()["canvas"]["seed"] == 3
    assert det.labels == ["background", *FASHION_MNIST_LABELS] and (len(det.train), len(det.val)) == (4, 2)
    image, target = det.val[0]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    seg = load_segmentation_data("fmnist-seg", train_limit=4, val_limit=2, seed=3, resolution=64, in_chans=1)
    image, mask = seg.val[0]
    assert image.shape == (1, 64, 64) and mask.shape == (64, 64) and mask.dtype == torch.int64
    # The same generator: the seg mask's classes are the det canvas's labels.
    assert set(load_segmentation_data("fmnist-seg", seed=3).val[0][1].unique().tolist()) - {0} == set(
        target["labels"].tolist()
    )
    with pytest.raises(ValueError, match="give fmnist-det"):
        load_detection_data("fmnist-seg")


def test_augmentation_moves_boxes_and_masks_with_the_image():
    from torchvision import tv_tensors

    image = torch.zeros(3, 100, 100, dtype=torch.uint8)
    image[:, 10:30, 5:25] = 255
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[5.0, 10, 25, 30]]), format="XYXY", canvas_size=(100, 100))
    torch.manual_seed(0)
    for _ in range(10):
        out, target = detection_transforms(50, train=True, recipe="ssdlite")(
            tv_tensors.Image(image), {"boxes": boxes, "labels": torch.tensor([4])}
        )
        assert out.shape == (3, 50, 50) and out.dtype == torch.float32
        assert len(target["boxes"]) == len(target["labels"])
        for x1, y1, x2, y2 in target["boxes"].round().int().tolist():
            assert out[0, y1:y2, x1:x2].mean() > 0.7  # the box still frames the bright square
    mask = tv_tensors.Mask((image[0] > 0).to(torch.uint8))
    sizes = set()
    for _ in range(10):
        out, m = segmentation_transforms(40, train=True, recipe="scale")(tv_tensors.Image(image), mask)
        assert out.shape == (3, 40, 40) and m.shape == (40, 40)
        assert ((out[0] > 0.5) == (m == 1)).float().mean() > 0.95
        sizes.add(int((m == 255).sum() > 0))
    assert sizes == {0, 1}  # padding appears (as ignore) when zoomed out, not otherwise


def test_collate_drops_undecodable_samples():
    sample = (torch.zeros(3, 8, 8), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)})
    images, targets = collate_detection([sample, None, sample])
    assert images.shape == (2, 3, 8, 8) and len(targets) == 2


# --- export and read back ------------------------------------------------------------------


def test_coco_export_round_trip(tmp_path):
    spec = CanvasSpec(seed=5)
    export_canvases(spec, tmp_path / "coco", train=6, val=3)
    doc = json.loads((tmp_path / "coco/annotations/instances_val.json").read_text())
    assert [c["id"] for c in doc["categories"]] == list(range(1, 11))
    assert [c["name"] for c in doc["categories"]] == FASHION_MNIST_LABELS
    data = load_detection_data(tmp_path / "coco", resolution=128, augment="none")
    assert data.labels == ["background", *FASHION_MNIST_LABELS] and data.skipped_total == {}
    for split, n in (("train", 6), ("val", 3)):
        generator, dataset = CanvasGenerator(spec, split), getattr(data, split)
        assert len(dataset) == n
        for i in range(n):
            c, (image, target) = generator(i), dataset[i]
            assert torch.equal(target["boxes"], torch.from_numpy(c.boxes))
            assert torch.equal(target["labels"], torch.from_numpy(c.labels))
            assert torch.equal((image[0] * 255).round().to(torch.uint8), torch.from_numpy(c.image))


def test_voc_export_round_trip(tmp_path):
    spec = CanvasSpec(task="seg", seed=5)
    export_canvases(spec, tmp_path / "voc", train=5, val=3)
    assert (tmp_path / "voc/ImageSets/Segmentation/val.txt").read_text().split() == [f"val_{i:06d}" for i in range(3)]
    assert Image.open(tmp_path / "voc/SegmentationClass/val_000000.png").mode == "P"
    data = load_segmentation_data(tmp_path / "voc", resolution=128, augment="none")
    assert data.labels == ["background", *FASHION_MNIST_LABELS] and data.skipped_total == {}
    for split, n in (("train", 5), ("val", 3)):
        generator, dataset = CanvasGenerator(spec, split), getattr(data, split)
        assert len(dataset) == n
        for i in range(n):
            c, (image, mask) = generator(i), dataset[i]
            assert torch.equal(mask, torch.from_numpy(c.mask).long())
            assert torch.equal((image[0] * 255).round().to(torch.uint8), torch.from_numpy(c.image))


def test_export_refuses_a_non_empty_directory_and_leaves_it_untouched(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not an empty directory"):
        export_canvases("fmnist-det", out, train=2, val=1)
    assert main(["data", "export", "fmnist-seg", "-o", str(out), "--train", "2", "--val", "1"]) == 2
    assert "nothing was written" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary sibling left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "export", "fmnist-det", "-o", str(empty), "--train", "2", "--val", "1", "--size", "64"]) == 0
    assert sorted(p.name for p in empty.iterdir()) == ["annotations", "mobilenets-data.json", "train", "val"]
    info = json.loads((empty / "mobilenets-data.json").read_text())
    assert info["name"] == "fmnist-det-64-n1to4-s24to64-seed1"


def test_show_draws_a_grid_and_keeps_existing_files(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "fmnist-det", "-o", str(out), "--count", "4"]) == 0
    assert Image.open(out).size == (4 + 4 * 260, 4 + 260)  # 128 px canvases drawn at 256 px, 4 px apart
    before = out.read_bytes()
    assert main(["data", "show", "fmnist-seg", "-o", str(out), "--count", "4"]) == 2
    assert out.read_bytes() == before
    assert main(["data", "show", "fmnist-seg", "-o", str(out), "--count", "4", "--overwrite"]) == 0
    assert out.read_bytes() != before


# --- a user's COCO data ----------------------------------------------------------------------


def png(path: Path, width: int = 40, height: int = 30) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(path)


def write_coco(root: Path, split: str, images: list[dict], annotations: list[dict], categories=None) -> None:
    categories = categories or [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 90, "name": "fox"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


def good_val(root: Path) -> None:
    png(root / "val" / "v.png")
    write_coco(root, "val", [{"id": 1, "file_name": "v.png", "width": 40, "height": 30}],
               [{"id": 1, "image_id": 1, "category_id": 90, "bbox": [1, 2, 10, 10]}])  # fmt: skip


def test_coco_maps_sparse_ids_and_skips_bad_input_with_warnings(tmp_path, caplog):
    root = tmp_path / "coco"
    for name in ("a.png", "b.png", "big.png"):
        png(root / "train" / name)
    (root / "train" / "broken.png").write_bytes(b"not an image at all")
    images = [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png"},  # no width/height: taken from the file
        {"id": 3, "file_name": "gone.png", "width": 40, "height": 30},
        {"id": 4, "file_name": "broken.png", "width": 40, "height": 30},
        {"id": 5, "file_name": "big.png", "width": 80, "height": 60},
    ]
    box = {"image_id": 1, "category_id": 3}
    annotations = [
        {**box, "id": 1, "bbox": [5, 5, 10, 8]},
        {**box, "id": 2, "category_id": 7, "bbox": [30, 20, 20, 20]},  # partly outside: clipped to 40x30
        {**box, "id": 3, "bbox": [-20, 5, 10, 10]},  # wholly outside
        {**box, "id": 4, "bbox": [5, 5, 0, 10]},  # zero area
        {**box, "id": 5, "category_id": 4, "bbox": [5, 5, 10, 10]},  # unknown category
        {**box, "id": 6, "image_id": 99, "bbox": [5, 5, 10, 10]},  # unknown image
        {**box, "id": 7, "iscrowd": 1, "bbox": [5, 5, 10, 10]},  # crowd
        {**box, "id": 8, "bbox": [5, 5, 10]},  # malformed
        {**box, "id": 9, "image_id": 2, "category_id": 90, "bbox": [0, 0, 40, 30]},
        {**box, "id": 10, "image_id": 3, "bbox": [5, 5, 10, 10]},  # on the missing image: goes with it
    ]
    write_coco(root, "train", images, annotations)
    good_val(root)
    with caplog.at_level(logging.WARNING, logger="mobilenets.data"):
        data = load_detection_data(root, resolution=40, augment="none")
    assert data.labels == ["background", "cat", "dog", "fox"]
    assert data.skipped["train"] == {
        "missing_image": 1, "unreadable_image": 1, "size_mismatch": 1, "outside_image": 1, "zero_area": 1,
        "unknown_category": 1, "unknown_image": 1, "crowd": 1, "malformed": 1,
    }  # fmt: skip
    assert data.details["clipped"] == {"train": 1, "val": 0}
    for reason in data.skipped["train"]:
        assert any("skipped 1" in r.message and r.levelno == logging.WARNING for r in caplog.records), reason
    messages = " ".join(r.message for r in caplog.records)
    for words in ("does not exist", "cannot be read", "differs from the JSON", "wholly outside", "zero width",
                  "category_id is not", "image_id is not", "crowd", "bbox of 4 numbers",
                  "clipped 1 boxes"):  # fmt: skip
        assert words in messages
    assert len(data.train) == 2
    records = {r.path.name: r for r in data.train.records}
    assert records["a.png"].boxes.tolist() == [[5, 5, 15, 13], [30, 20, 40, 30]]
    assert records["a.png"].labels.tolist() == [1, 2]
    assert records["b.png"].labels.tolist() == [3]
    assert data.val[0][1]["labels"].tolist() == [3]


def test_coco_image_truncated_after_its_header_is_dropped_with_a_warning(tmp_path, caplog):
    root = tmp_path / "coco"
    png(root / "train" / "a.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "cut.png")
    (root / "train" / "cut.png").write_bytes((root / "cut.png").read_bytes()[:400])
    box = {"category_id": 3, "bbox": [1, 1, 5, 5]}
    write_coco(root, "train", [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "cut.png"}],
               [{**box, "id": 1, "image_id": 1}, {**box, "id": 2, "image_id": 2}])  # fmt: skip
    good_val(root)
    data = load_detection_data(root, resolution=32, augment="none")
    assert len(data.train) == 2  # the header reads: only decoding finds the damage
    with caplog.at_level(logging.WARNING, logger="mobilenets.data"):
        images, targets = collate_detection([data.train[0], data.train[1]])
    assert images.shape == (1, 3, 32, 32) and len(targets) == 1
    assert "cut.png" in caplog.text  # counted by the pass that reads the batch (the report), once


def test_coco_empty_split_is_an_error_naming_it(tmp_path):
    root = tmp_path / "coco"
    png(root / "train" / "a.png")
    write_coco(root, "train", [{"id": 1, "file_name": "a.png"}], [{"id": 1, "image_id": 1, "category_id": 3,
                                                                    "bbox": [1, 1, 5, 5]}])  # fmt: skip
    write_coco(root, "val", [{"id": 1, "file_name": "missing.png"}], [])
    (root / "val").mkdir()
    with pytest.raises(ValueError, match="the val split has no usable images .*1 missing image.*fix the files"):
        load_detection_data(root)
    good_val(root)
    write_coco(root, "train", [{"id": 1, "file_name": "a.png"}], [])
    with pytest.raises(ValueError, match="train split has no usable boxes"):
        load_detection_data(root)
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["images"].append("b.png"), r"images\[1\] is a string, expected an object with id, file_name"),
        (lambda d: d["images"].append({"file_name": "b.png"}), r"images\[1\] has no 'id'"),
        (lambda d: d["images"][0].update(width=-4), r"images\[0\].width is a number \(-4\), expected a whole"),
        (lambda d: d["annotations"].append(5), r"annotations\[1\] is a number, expected an object with image_id"),
        (lambda d: d["annotations"][0].update(image_id=[1]), r"annotations\[0\].image_id is a list"),
        (lambda d: d["annotations"][0].update(category_id=[90]), r"annotations\[0\].category_id is a list"),
        (lambda d: d["categories"].append("owl"), r"categories\[3\] is a string"),
        (lambda d: d["categories"][0].update(id="3"), r"categories\[0\].id is a string"),
    ],
)
def test_malformed_coco_json_is_one_line_naming_file_and_entry(tmp_path, capsys, edit, message):
    import re

    root = tmp_path / "coco"
    png(root / "train" / "a.png")
    good_val(root)
    doc = {"images": [{"id": 1, "file_name": "a.png"}], "categories": None,
           "annotations": [{"id": 1, "image_id": 1, "category_id": 90, "bbox": [1, 1, 5, 5]}]}  # fmt: skip
    write_coco(root, "train", doc["images"], doc["annotations"])
    path = root / "annotations" / "instances_train.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        load_detection_data(root)
    assert main(["data", "info", str(root)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err) and str(path) in err, err


def test_coco_json_that_is_not_utf8_is_named(tmp_path, capsys):
    root = tmp_path / "coco"
    good_val(root)
    png(root / "train" / "a.png")
    write_coco(root, "train", [{"id": 1, "file_name": "a.png"}],
               [{"id": 1, "image_id": 1, "category_id": 90, "bbox": [1, 1, 5, 5]}])  # fmt: skip
    path = root / "annotations" / "instances_train.json"
    path.write_bytes(path.read_bytes().replace(b'"fox"', b'"f\xf6x"'))  # Latin-1, not UTF-8
    assert main(["data", "info", str(root)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{path} is not UTF-8 JSON" in err, err
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b'"f\xf6x"', b'"fox"'))  # a BOM is fine
    assert load_detection_data(root).labels == ["background", "cat", "dog", "fox"]


# --- a user's VOC data ----------------------------------------------------------------------


def write_pair(root: Path, stem: str, mask: np.ndarray | None, image_size=(12, 10), mode: str = "L") -> None:
    png(root / "JPEGImages" / f"{stem}.png", *image_size)
    if mask is not None:
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(mask.astype(np.uint8))
        (picture.convert("RGB") if mode == "RGB" else picture).save(root / "SegmentationClass" / f"{stem}.png")


def test_voc_skips_bad_masks_with_warnings_and_counts_them(tmp_path, caplog):
    root = tmp_path / "voc"
    good = np.zeros((10, 12), np.uint8)
    good[2:5, 3:6], good[0, 0] = 2, 255
    write_pair(root, "good", good)
    write_pair(root, "small", np.zeros((5, 6)))  # size differs from its image
    write_pair(root, "beyond", np.full((10, 12), 3))  # 3 classes: values 0..2 (and 255)
    write_pair(root, "colour", good, mode="RGB")
    write_pair(root, "nomask", None)
    write_pair(root, "badmask", None)
    (root / "SegmentationClass" / "badmask.png").write_bytes(b"\x89PNG broken")
    write_pair(root, "v", good)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = ["good", "small", "beyond", "colour", "nomask", "badmask", "noimage"]
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("v\n")
    (root / "labels.txt").write_text("background\nsquare\ndisc\n")
    with caplog.at_level(logging.WARNING, logger="mobilenets.data"):
        data = load_segmentation_data(root, resolution=16, augment="none")
    assert data.labels == ["background", "square", "disc"]
    assert data.skipped["train"] == {"size_mismatch": 1, "bad_mask_value": 1, "mask_not_indexed": 1,
                                     "missing_mask": 1, "unreadable_mask": 1, "missing_image": 1}  # fmt: skip
    messages = " ".join(r.message for r in caplog.records)
    for words in ("size differs", "beyond the class count", "not index images", "without a mask", "cannot be read",
                  "images that do not exist"):  # fmt: skip
        assert words in messages
    assert len(data.train) == 1
    image, mask = data.train[0]
    assert mask.shape == (16, 16)  # nearest-resized: no value invented
    assert set(mask.unique().tolist()) == {0, 2, 255}
    # An empty split is an error naming it.
    (root / "ImageSets/Segmentation/val.txt").write_text("nomask\n")
    with pytest.raises(ValueError, match="the val split has no usable image and mask pairs .*missing_mask"):
        load_segmentation_data(root)


def test_voc_16bit_index_masks_are_named_as_such_not_as_colour(tmp_path, caplog):
    root = tmp_path / "voc"
    good = np.zeros((10, 12), np.uint8)
    good[2:5, 3:6] = 1
    write_pair(root, "good", good)
    write_pair(root, "wide", None)
    Image.fromarray(good.astype(np.uint16)).save(root / "SegmentationClass" / "wide.png")  # a 16-bit index PNG
    assert Image.open(root / "SegmentationClass" / "wide.png").mode.startswith("I")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("good\nwide\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("good\n")
    with caplog.at_level(logging.WARNING, logger="mobilenets.data"):
        data = load_segmentation_data(root, resolution=16, augment="none")
    assert data.skipped["train"] == {"mask_16bit": 1}
    warning = next(r.message for r in caplog.records if "wide.png" in r.message)
    assert "16-bit" in warning and "8-bit index PNGs" in warning and "colour" not in warning


@pytest.mark.parametrize("name", ["labels.txt", "ImageSets/Segmentation/train.txt"])
def test_voc_text_files_that_are_not_utf8_are_named(tmp_path, capsys, name):
    root = tmp_path / "voc"
    write_pair(root, "good", np.zeros((10, 12), np.uint8))
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split in ("train", "val"):
        (root / f"ImageSets/Segmentation/{split}.txt").write_text("good\n")
    (root / "labels.txt").write_text("background\nsquare\n")
    (root / name).write_bytes((root / name).read_bytes() + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_segmentation_data(root)
    assert main(["data", "info", str(root)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{root / name} is not UTF-8 text" in err, err


def test_voc_split_folders_layout(tmp_path):
    root = tmp_path / "seg"
    for split in ("train", "val"):
        png(root / "images" / split / "x.jpg", 16, 16)
        (root / "masks" / split).mkdir(parents=True)
        Image.fromarray(np.eye(16, dtype=np.uint8) * 4).save(root / "masks" / split / "x.png")
    data = load_segmentation_data(root, resolution=16, augment="none")
    assert data.labels == ["background", "1", "2", "3", "4"] and len(data.train) == len(data.val) == 1
    assert torch.equal(data.val[0][1], torch.eye(16, dtype=torch.long) * 4)


def test_train_flip_mirrors_boxes_with_the_image():
    plain = load_detection_data("fmnist-det", train_limit=16, val_limit=1, augment="none").train
    flipped = load_detection_data("fmnist-det", train_limit=16, val_limit=1, augment="flip").train
    torch.manual_seed(0)
    mirrored = 0
    for i in range(16):
        (x, t), (y, u) = plain[i], flipped[i]
        if torch.equal(x, y):
            assert torch.equal(t["boxes"], u["boxes"])
        else:
            assert torch.equal(x.flip(-1), y)
            width = x.shape[-1]
            assert torch.equal(u["boxes"], torch.stack([width - t["boxes"][:, 2], t["boxes"][:, 1],
                                                        width - t["boxes"][:, 0], t["boxes"][:, 3]], 1))  # fmt: skip
            mirrored += 1
        assert torch.equal(t["labels"], u["labels"])
    assert 0 < mirrored < 16


def test_bad_options_fail_before_any_file_is_read(tmp_path):
    with pytest.raises(ValueError, match="unknown detection augmentation 'scale'; choose one of ssdlite"):
        load_detection_data(tmp_path / "nowhere", augment="scale")
    with pytest.raises(ValueError, match="too small"):
        load_segmentation_data("fmnist-seg", resolution=8)
    assert main(["data", "export", "fmnist-det", "-o", str(tmp_path / "x"), "--size", "32"]) == 2
    assert not (tmp_path / "x").exists()
