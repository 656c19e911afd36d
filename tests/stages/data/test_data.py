"""stages.data: every dataset kind, batching with a remainder, labels, preprocessing numbers, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.schema import ModelSpec
from pipeline.stage import DatasetInput
from stages.data import SYNTHETIC_WARNING, open_dataset, warn_if_synthetic

IMG = ModelSpec.model_validate(
    {"tensors": {"x": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 16}}}
)
TWO = ModelSpec.model_validate(
    {
        "tensors": {"a": {"shape": ["batch", 4]}, "b": {"shape": ["batch", "seq"], "dtype": "int64"}},
        "dims": {"batch": {"min": 1, "opt": 2, "max": 8}, "seq": {"min": 2, "opt": 5, "max": 9}},
    }
)


def ds(spec: dict, model: ModelSpec | None = IMG, base: Path = Path("."), name: str = "calib"):
    return open_dataset(DatasetInput(name, spec, base), model)


def sizes(dataset, batch_size: int) -> list[int]:
    return [len(next(iter(inputs.values()))) for inputs, _ in dataset.batches(batch_size)]


def collect(dataset, batch_size: int):
    batches = list(dataset.batches(batch_size))
    inputs = {n: np.concatenate([b[0][n] for b in batches]) for n in batches[0][0]}
    labels = None if batches[0][1] is None else np.concatenate([b[1] for b in batches])
    return inputs, labels


# --- synthetic ---------------------------------------------------------------------------------------------


def test_synthetic_shapes_remainder_and_warning() -> None:
    d = ds({"kind": "synthetic", "count": 10, "seed": 3})
    assert (d.kind, d.count, d.has_labels, d.synthetic) == ("synthetic", 10, False, True)
    assert sizes(d, 4) == [4, 4, 2]
    inputs, labels = next(d.batches(4))
    assert inputs["x"].shape == (4, 3, 8, 8) and inputs["x"].dtype == np.float32 and labels is None
    assert warn_if_synthetic(d) == SYNTHETIC_WARNING
    assert "synthetic" in SYNTHETIC_WARNING and "broken engine" in SYNTHETIC_WARNING


def test_synthetic_sample_i_does_not_depend_on_batch_size_and_seed_matters() -> None:
    d = ds({"kind": "synthetic", "count": 7, "seed": 1, "classes": 5})
    a, la = collect(d, 1)
    b, lb = collect(d, 3)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(la, lb)
    assert la.dtype == np.int64 and la.min() >= 0 and la.max() < 5 and d.has_labels
    other, _ = collect(ds({"kind": "synthetic", "count": 7, "seed": 2}), 7)
    assert not np.allclose(other["x"], a["x"])


def test_synthetic_uniform_point_and_dtypes() -> None:
    d = ds(
        {"kind": "synthetic", "count": 3, "distribution": "uniform", "low": -2, "high": -1, "shape_point": "max"},
        model=TWO,
    )
    inputs, _ = next(d.batches(3))
    assert inputs["a"].shape == (3, 4) and inputs["b"].shape == (3, 9) and inputs["b"].dtype == np.int64
    assert inputs["a"].min() >= -2 and inputs["a"].max() < -1
    assert ds({"kind": "synthetic", "count": 1}, model=TWO).batches(1).__next__()[0]["b"].shape == (1, 5)  # opt


def test_synthetic_needs_tensors() -> None:
    with pytest.raises(ValueError, match=r"data.calib: synthetic data needs model.tensors"):
        ds({"kind": "synthetic"}, model=None)


def test_invalid_spec_names_the_dataset() -> None:
    with pytest.raises(ValueError, match=r"data.val: invalid dataset spec"):
        ds({"kind": "synthetic", "count": 0}, name="val")


# --- npz / npy -----------------------------------------------------------------------------------------------


@pytest.fixture
def digits(tmp_path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"images": rng.standard_normal((11, 3, 8, 8)), "labels": rng.integers(0, 10, 11)}  # float64 on disk
    np.savez(tmp_path / "digits.npz", **arrays)
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    return arrays


@pytest.mark.parametrize("filename", ["digits.npz", "packed.npz"])
def test_npz_inputs_labels_remainder_and_cast(tmp_path: Path, digits: dict, filename: str) -> None:
    d = ds({"kind": "npz", "path": filename, "inputs": {"x": "images"}, "labels": "labels"}, base=tmp_path)
    assert (d.kind, d.count, d.has_labels, d.synthetic) == ("npz", 11, True, False)
    assert warn_if_synthetic(d) is None
    assert sizes(d, 4) == [4, 4, 3]
    inputs, labels = collect(d, 4)
    assert inputs["x"].dtype == np.float32  # cast to the model's dtype
    np.testing.assert_array_equal(inputs["x"], digits["images"].astype(np.float32))
    np.testing.assert_array_equal(labels, digits["labels"])
    assert sizes(ds({"kind": "npz", "path": filename, "inputs": {"x": "images"}, "count": 5}, base=tmp_path), 2) == [
        2,
        2,
        1,
    ]


def test_npz_inputs_are_streamed_not_loaded(tmp_path: Path, digits: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_load(*args, **kwargs):
        raise AssertionError("np.load would read the whole array")

    monkeypatch.setattr(np, "load", no_load)
    d = ds({"kind": "npz", "path": "packed.npz", "inputs": {"x": "images"}}, base=tmp_path)
    np.testing.assert_array_equal(collect(d, 3)[0]["x"], digits["images"].astype(np.float32))


def test_npz_default_names_match_model_inputs(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", a=np.ones((3, 4), np.float32), b=np.arange(15).reshape(3, 5))
    inputs, labels = next(ds({"kind": "npz", "path": "two.npz"}, model=TWO, base=tmp_path).batches(8))
    assert inputs["a"].shape == (3, 4) and inputs["b"].tolist()[2] == [10, 11, 12, 13, 14] and labels is None


def test_npz_errors_name_the_dataset(tmp_path: Path, digits: dict) -> None:
    with pytest.raises(ValueError, match=r"^data.calib: array 'x' not in digits.npz \(has: images, labels\)$"):
        ds({"kind": "npz", "path": "digits.npz"}, base=tmp_path)
    with pytest.raises(ValueError, match=r"data.calib: labels array 'y' not in digits.npz"):
        ds({"kind": "npz", "path": "digits.npz", "inputs": {"x": "images"}, "labels": "y"}, base=tmp_path)
    with pytest.raises(ValueError, match=r"data.calib: no such file 'nope.npz'"):
        ds({"kind": "npz", "path": "nope.npz"}, base=tmp_path)
    np.savez(tmp_path / "short.npz", images=np.zeros((4, 3, 8, 8)), labels=np.zeros(3))
    with pytest.raises(ValueError, match=r"disagree on the sample count: x 4, labels 3"):
        ds({"kind": "npz", "path": "short.npz", "inputs": {"x": "images"}, "labels": "labels"}, base=tmp_path)
    np.savez(tmp_path / "wrong.npz", x=np.zeros((4, 3, 9, 9), np.float32))
    with pytest.raises(
        ValueError,
        match=r"^data.calib: sample 0: input 'x' dim 2 is 9, the model expects 8 \(a sample is \(3, 8, 8\)\)$",
    ):
        next(ds({"kind": "npz", "path": "wrong.npz"}, base=tmp_path).batches(2))
    np.savez(tmp_path / "floats.npz", a=np.zeros((2, 4)), b=np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"input 'b' holds float64, the model takes int64 \(refusing a lossy cast\)"):
        next(ds({"kind": "npz", "path": "floats.npz"}, model=TWO, base=tmp_path).batches(2))


def test_npy_with_labels_file(tmp_path: Path) -> None:
    x = np.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 3, 4]))
    d = ds({"kind": "npy", "path": "x.npy", "labels": "y.npy"}, base=tmp_path)
    assert (d.kind, d.count, d.has_labels) == ("npy", 5, True)
    inputs, labels = collect(d, 2)
    np.testing.assert_array_equal(inputs["x"], x)
    assert labels.tolist() == [0, 1, 2, 3, 4] and sizes(d, 2) == [2, 2, 1]
    with pytest.raises(ValueError, match=r"a .npy file feeds one input, the model takes \['a', 'b'\]"):
        ds({"kind": "npy", "path": "x.npy"}, model=TWO, base=tmp_path)


# --- images --------------------------------------------------------------------------------------------------


def _image(path: Path, w: int, h: int, seed: int, mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return pixels


SMALL = {"resize": 8, "crop": 8}


@pytest.fixture
def imagenet(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for c, cls in enumerate(["cat", "dog"]):
        for i in range(3):
            _image(root / cls / f"{i}.png", 10 + i, 12, seed=10 * c + i)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_imagenet_layout_labels_remainder_and_count(tmp_path: Path, imagenet: Path) -> None:
    d = ds({"kind": "images", "path": "imgs", "preprocess": SMALL}, base=tmp_path)
    assert (d.kind, d.count, d.has_labels, d.synthetic) == ("images", 6, True, False)
    assert sizes(d, 4) == [4, 2]
    inputs, labels = collect(d, 4)
    assert inputs["x"].shape == (6, 3, 8, 8) and inputs["x"].dtype == np.float32
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    swapped = ds({"kind": "images", "path": "imgs", "classes": ["dog", "cat"], "preprocess": SMALL}, base=tmp_path)
    assert collect(swapped, 6)[1].tolist() == [1, 1, 1, 0, 0, 0]
    subset = ds({"kind": "images", "path": "imgs", "count": 3, "preprocess": SMALL}, base=tmp_path)
    assert subset.count == 3
    assert collect(subset, 4)[1].tolist() == [0, 1, 0]  # round-robin over classes: a subset spans them all


def test_flat_folder_with_labels_file(tmp_path: Path) -> None:
    for i in range(3):
        _image(tmp_path / "flat" / f"img {i}.jpg", 9, 9, seed=i)
    (tmp_path / "labels.txt").write_text("# filename label\nimg 2.jpg 7\nimg 0.jpg 3\n\nimg 1.jpg 5\n")
    d = ds({"kind": "images", "path": "flat", "labels": "labels.txt", "preprocess": SMALL}, base=tmp_path)
    assert d.count == 3 and collect(d, 2)[1].tolist() == [3, 5, 7]  # sorted by filename
    (tmp_path / "named.txt").write_text("img 0.jpg dog\nimg 1.jpg cat\n")
    named = ds(
        {"kind": "images", "path": "flat", "labels": "named.txt", "classes": ["cat", "dog"], "preprocess": SMALL},
        base=tmp_path,
    )
    assert collect(named, 8)[1].tolist() == [1, 0]
    unlabelled = ds({"kind": "images", "path": "flat", "preprocess": SMALL}, base=tmp_path)
    assert not unlabelled.has_labels and next(unlabelled.batches(8))[1] is None


def test_image_errors(tmp_path: Path, imagenet: Path) -> None:
    with pytest.raises(ValueError, match=r"data.calib: class folders \['bird'\] not found under 'imgs'"):
        ds({"kind": "images", "path": "imgs", "classes": ["cat", "bird"]}, base=tmp_path)
    (tmp_path / "bad.txt").write_text("0.png\n")
    with pytest.raises(ValueError, match=r"bad.txt line 1: expected 'filename label'"):
        ds({"kind": "images", "path": "imgs/cat", "labels": "bad.txt"}, base=tmp_path)
    (tmp_path / "missing.txt").write_text("0.png 1\n9.png 2\n")
    with pytest.raises(ValueError, match=r"missing.txt line 2: no image '9.png' in 'imgs/cat'"):
        ds({"kind": "images", "path": "imgs/cat", "labels": "missing.txt"}, base=tmp_path)
    (tmp_path / "names.txt").write_text("0.png cat\n")
    with pytest.raises(ValueError, match=r"label 'cat' is not an integer \(give classes: to use names\)"):
        ds({"kind": "images", "path": "imgs/cat", "labels": "names.txt"}, base=tmp_path)
    with pytest.raises(ValueError, match=r"preprocess.mean has 3 values for 1 channel"):
        ds({"kind": "images", "path": "imgs", "preprocess": {"grayscale": True}}, base=tmp_path)
    with pytest.raises(ValueError, match=r"^data.calib: sample 0: input 'x' dim 2 is 5, the model expects 8"):
        next(ds({"kind": "images", "path": "imgs", "preprocess": {"resize": 5, "crop": 5}}, base=tmp_path).batches(2))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data.calib: no images"):
        ds({"kind": "images", "path": "empty"}, base=tmp_path)


def test_preprocessing_numbers_match_numpy(tmp_path: Path) -> None:
    pixels = _image(tmp_path / "one" / "a.png", 10, 6, seed=5)  # w=10, h=6
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    model = ModelSpec.model_validate(
        {"tensors": {"x": {"shape": ["batch", 4, 4, 3]}}, "dims": {"batch": {"min": 1, "opt": 1, "max": 4}}}
    )
    d = ds(
        {
            "kind": "images",
            "path": "one",
            "preprocess": {"resize": None, "crop": 4, "mean": mean, "std": std, "layout": "NHWC"},
        },
        model=model,
        base=tmp_path,
    )
    got = next(d.batches(1))[0]["x"][0]
    # center crop 4 of a 6x10 image: top = round(1.0) = 1, left = round(3.0) = 3
    expected = (pixels[1:5, 3:7].astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)

    raw = ds(
        {"kind": "images", "path": "one", "preprocess": {"resize": None, "crop": 4, "dtype": "uint8"}},
        model=None,
        base=tmp_path,
    )
    x = next(raw.batches(1))[0]["input"][0]  # NCHW, raw pixels, no model: input name "input"
    assert x.dtype == np.uint8 and x.shape == (3, 4, 4)
    np.testing.assert_array_equal(x, pixels[1:5, 3:7].transpose(2, 0, 1))


def test_resize_shorter_side_and_grayscale(tmp_path: Path) -> None:
    from PIL import Image

    pixels = _image(tmp_path / "g" / "a.png", 20, 10, seed=6, mode="L")
    d = ds(
        {
            "kind": "images",
            "path": "g",
            "preprocess": {"resize": 5, "crop": None, "grayscale": True, "mean": [0.5], "std": [0.5]},
        },
        model=None,
        base=tmp_path,
    )
    x = next(d.batches(1))[0]["input"][0]
    assert x.shape == (1, 5, 10)  # shorter side 10 -> 5, longer 20 -> 10
    expected = np.asarray(Image.fromarray(pixels).resize((10, 5), Image.Resampling.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(x[0], (expected - 0.5) / 0.5, atol=1e-6)


# --- python --------------------------------------------------------------------------------------------------

GEN = """
import numpy as np

def batches(n=10, per=3, labels=True):
    for start in range(0, n, per):
        k = min(per, n - start)
        x = np.arange(start, start + k, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
        yield {"a": x, "b": np.zeros((k, 5), np.int64)}, (list(range(start, start + k)) if labels else None)

def bare():
    yield {"a": np.zeros((2, 4), np.float32), "b": np.zeros((2, 5), np.int64)}

def mixed():
    yield {"a": np.zeros((2, 4), np.float32), "b": np.zeros((2, 5), np.int64)}, [0, 1]
    yield {"a": np.zeros((2, 4), np.float32), "b": np.zeros((2, 5), np.int64)}, None

def broken():
    yield 42
"""


@pytest.fixture
def gen(tmp_path: Path) -> Path:
    (tmp_path / "datagen_t.py").write_text(GEN)
    return tmp_path


def test_python_rebatches_counts_and_labels(gen: Path) -> None:
    d = ds({"kind": "python", "python": "datagen_t.py:batches", "kwargs": {"n": 10, "per": 3}}, model=TWO, base=gen)
    assert (d.kind, d.count, d.has_labels, d.synthetic) == ("python", None, True, False)
    assert sizes(d, 4) == [4, 4, 2]
    inputs, labels = collect(d, 4)
    assert labels.tolist() == list(range(10)) and labels.dtype == np.int64
    assert inputs["a"][:, 0].tolist() == list(range(10))
    limited = ds({"kind": "python", "python": "datagen_t.py:batches", "count": 5}, model=TWO, base=gen)
    assert sizes(limited, 4) == [4, 1]
    module_ref = ds({"kind": "python", "python": "datagen_t:batches", "kwargs": {"labels": False}}, model=TWO, base=gen)
    assert not module_ref.has_labels and next(module_ref.batches(2))[1] is None
    assert not ds({"kind": "python", "python": "datagen_t.py:bare"}, model=TWO, base=gen).has_labels


def test_python_errors(gen: Path) -> None:
    with pytest.raises(ValueError, match=r"data.calib: .*has no attribute 'nope'"):
        ds({"kind": "python", "python": "datagen_t.py:nope"}, model=TWO, base=gen)
    with pytest.raises(ValueError, match=r"some batches have labels and some do not"):
        list(ds({"kind": "python", "python": "datagen_t.py:mixed"}, model=TWO, base=gen).batches(1))
    with pytest.raises(
        ValueError,
        match=r"item 0 from datagen_t.py:broken is a int; "
        r"expected \(inputs dict, labels or None\) or a dict of arrays$",
    ):
        list(ds({"kind": "python", "python": "datagen_t.py:broken"}, model=TWO, base=gen).batches(1))
    with pytest.raises(ValueError, match=r"gives inputs \['a', 'b'\], the model takes \['x'\]"):
        list(ds({"kind": "python", "python": "datagen_t.py:batches"}, model=IMG, base=gen).batches(4))
    # what the function raised, as one line (pipeline.errors.one_line), however many lines it had
    (gen / "raising_t.py").write_text("def fails():\n    raise RuntimeError('cannot open the shard\\n  (3 of 8)')\n")
    with pytest.raises(
        ValueError, match=r"^data.calib: raising_t.py:fails raised RuntimeError: cannot open the shard \(3 of 8\)$"
    ):
        list(ds({"kind": "python", "python": "raising_t.py:fails"}, model=TWO, base=gen).batches(1))


# --- variable shapes: batches of one shape, dims checked per sample ---------------------------------------

TEXT = ModelSpec.model_validate(
    {
        "tensors": {
            "input_ids": {"shape": ["batch", "seq"], "dtype": "int64"},
            "attention_mask": {"shape": ["batch", "seq"], "dtype": "int64"},
        },
        "dims": {"batch": {"min": 1, "opt": 4, "max": 16}, "seq": {"min": 1, "opt": 8, "max": 12}},
    }
)

TEXTGEN = '''
import numpy as np

def lengths(plan=((3, 5), (4, 9), (2, 9), (5, 12)), labels="label", extra=None):
    """Batches of (count, seq length); token i of sample s is s*100 + i, so order is checkable."""
    s = 0
    for count, seq in plan:
        ids = np.array([[k * 100 + i for i in range(seq)] for k in range(s, s + count)], np.int64)
        item = {"input_ids": ids, "attention_mask": np.ones((count, seq), np.int64)}
        if labels:
            item[labels] = np.arange(s, s + count)
        if extra:
            item[extra] = np.zeros(count)
        s += count
        yield item

def unequal():
    yield {"input_ids": np.zeros((2, 5), np.int64), "attention_mask": np.ones((2, 6), np.int64)}

def ragged():
    yield {"input_ids": [[1, 2], [3]], "attention_mask": [[1, 1], [1]]}
'''


@pytest.fixture
def textgen(tmp_path: Path) -> Path:
    (tmp_path / "textgen_t.py").write_text(TEXTGEN)
    return tmp_path


def test_python_dicts_of_several_lengths_come_out_grouped_in_order(textgen: Path) -> None:
    d = ds({"kind": "python", "python": "textgen_t.py:lengths", "labels": "label"}, model=TEXT, base=textgen)
    assert d.has_labels
    for n, expected in (
        (4, [(3, 5), (4, 9), (2, 9), (4, 12), (1, 12)]),  # 4 + 2 of length 9: re-cut within it
        (2, [(2, 5), (1, 5), (2, 9), (2, 9), (2, 9), (2, 12), (2, 12), (1, 12)]),
        (100, [(3, 5), (6, 9), (5, 12)]),
    ):
        batches = list(d.batches(n))
        assert [b[0]["input_ids"].shape for b in batches] == expected, n
        assert all(b[0]["attention_mask"].shape == b[0]["input_ids"].shape for b in batches)
        order = [int(row[0]) // 100 for b in batches for row in b[0]["input_ids"]]
        assert order == list(range(14)) and [int(x) for b in batches for x in b[1]] == list(range(14))


def test_python_dict_keys_are_inputs_or_the_labels_key(textgen: Path) -> None:
    def first(spec: dict) -> None:
        next(ds({"kind": "python", "python": "textgen_t.py:lengths", **spec}, model=TEXT, base=textgen).batches(4))

    with pytest.raises(
        ValueError,
        match=r"^data.calib: item 0 from textgen_t.py:lengths: key 'label' is not a model "
        r"input \(input_ids, attention_mask\); if it holds the labels, set "
        r"`labels: label` on the dataset$",
    ):
        first({})
    with pytest.raises(
        ValueError,
        match=r"^data.calib: item 0 from textgen_t.py:lengths: key 'noise' is not a model "
        r"input \(input_ids, attention_mask\) nor the labels key 'label'$",
    ):
        first({"labels": "label", "kwargs": {"extra": "noise"}})
    with pytest.raises(ValueError, match=r"item 0 from textgen_t.py:lengths: no key 'y' \(the dataset's labels:\)"):
        first({"labels": "y"})
    unlabelled = ds(
        {"kind": "python", "python": "textgen_t.py:lengths", "kwargs": {"labels": None}}, model=TEXT, base=textgen
    )
    assert not unlabelled.has_labels and next(unlabelled.batches(4))[1] is None


def test_a_sample_outside_its_dim_range_is_named(textgen: Path) -> None:
    d = ds(
        {"kind": "python", "python": "textgen_t.py:lengths", "labels": "label", "kwargs": {"plan": [[3, 5], [2, 13]]}},
        model=TEXT,
        base=textgen,
        name="val",
    )
    with pytest.raises(ValueError, match=r"^data.val: sample 3: input '\w+' dim 1 \(seq\) is 13, outside \[1, 12\]$"):
        list(d.batches(2))
    with pytest.raises(
        ValueError,
        match=r"^data.calib: sample 0: input 'attention_mask' dim 1 \(seq\) is 6, "
        r"but input 'input_ids' has seq = 5$",
    ):
        list(ds({"kind": "python", "python": "textgen_t.py:unequal"}, model=TEXT, base=textgen).batches(2))
    with pytest.raises(
        ValueError,
        match=r"^data.calib: item 0 from textgen_t.py:ragged: 'input_ids' is not one "
        r"array \(its samples differ in shape\? yield one batch per shape\)$",
    ):
        list(ds({"kind": "python", "python": "textgen_t.py:ragged"}, model=TEXT, base=textgen).batches(2))


def test_images_of_two_sizes_are_batched_apart(tmp_path: Path) -> None:
    sizes_hw = [(8, 8), (8, 8), (6, 10), (8, 8), (6, 10), (6, 10)]  # (h, w) of 0.png .. 5.png, in name order
    pixels = [_image(tmp_path / "det" / f"{i}.png", w, h, seed=i) for i, (h, w) in enumerate(sizes_hw)]
    model = ModelSpec.model_validate(
        {
            "tensors": {"x": {"shape": ["batch", 3, "h", "w"]}},
            "dims": {
                "batch": {"min": 1, "opt": 2, "max": 8},
                "h": {"min": 4, "opt": 8, "max": 8},
                "w": {"min": 4, "opt": 8, "max": 10},
            },
        }
    )
    d = ds(
        {"kind": "images", "path": "det", "preprocess": {"resize": None, "crop": None, "dtype": "uint8"}},
        model=model,
        base=tmp_path,
    )
    batches = list(d.batches(3))
    assert [b[0]["x"].shape for b in batches] == [(2, 3, 8, 8), (1, 3, 6, 10), (1, 3, 8, 8), (2, 3, 6, 10)]
    got = [sample for b in batches for sample in b[0]["x"]]
    for sample, image in zip(got, pixels):
        np.testing.assert_array_equal(sample, image.transpose(2, 0, 1))
    assert [b[0]["x"].shape[0] for b in d.batches(1)] == [1] * 6
    narrow = model.model_copy(update={"dims": {**model.dims, "w": model.dims["h"]}})
    with pytest.raises(ValueError, match=r"^data.calib: sample 2: input 'x' dim 3 \(w\) is 10, outside \[4, 8\]$"):
        list(
            open_dataset(
                DatasetInput(
                    "calib", {"kind": "images", "path": "det", "preprocess": {"resize": None, "crop": None}}, tmp_path
                ),
                narrow,
            ).batches(3)
        )
