"""The Keras digits recipe's own code: a small Keras CNN, its training stage kind, and its datasets (NHWC).

Loaded through the recipe's `plugins: [digits_keras_plugin]`. The data is scikit-learn's bundled 8x8
digits split as digits_plugin.py splits them (the same seed: 1,200 for training and calibration, 597 held
out), laid out N x 8 x 8 x 1, channels last, as Keras convolutions take them. Training is seeded
(`keras.utils.set_random_seed`) with TensorFlow's deterministic ops, so a rerun trains the same weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import keras

TRAIN_COUNT = 1200


def _split() -> tuple[Any, Any, Any, Any]:
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, :, :, None]  # N x 8 x 8 x 1, in [0, 1]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:TRAIN_COUNT], y[:TRAIN_COUNT], x[TRAIN_COUNT:], y[TRAIN_COUNT:]


def calibration(count: int = 300, batch: int = 50) -> Iterator[tuple[dict[str, Any], Any]]:
    """Calibration batches: the first `count` training images (never the held-out ones)."""
    x, y, _, _ = _split()
    for i in range(0, min(count, len(x)), batch):
        yield {"input": x[i : i + batch]}, y[i : i + batch]


def held_out(batch: int = 100) -> Iterator[tuple[dict[str, Any], Any]]:
    """The 597 held-out images with their labels: validation only."""
    _, _, x, y = _split()
    for i in range(0, len(x), batch):
        yield {"input": x[i : i + batch]}, y[i : i + batch]


def digits_keras_net(width: int = 16) -> Any:
    """conv-conv-pool-fc, the torch digits_net's shape in Keras: input `input` (N, 8, 8, 1), output logits."""
    import keras

    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="digits_keras")


class TrainParams(Params):
    epochs: int = Field(15, ge=1, description="passes over the 1,200 training images")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(64, ge=1, description="training batch size")
    seed: int = Field(0, description="keras.utils.set_random_seed (init and shuffling)")
    width: int = Field(16, ge=1, description="channels of the first conv")


class TrainDigitsKeras(Stage[TrainParams]):
    """Train digits_keras_net on scikit-learn's digits; writes a .keras file."""

    kind = "digits.train_keras"
    outputs = {"model": OutputSpec("digits.keras", description="the trained Keras model (Keras 3 format)")}
    own_process = True  # TensorFlow breaks torch's triton and paddle loaded after it in one process
    packages = ("keras", "scikit-learn")
    extra = "tensorflow"

    def unmet(self, params: TrainParams | None = None) -> str | None:
        from stages.frontends.formats import missing_framework

        return super().unmet(params) or missing_framework("tensorflow")

    def run(self, ctx: StageContext[TrainParams]) -> dict:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        p = ctx.params
        keras.utils.set_random_seed(p.seed)
        tf.config.experimental.enable_op_determinism()
        x, y, xt, yt = _split()
        net = digits_keras_net(p.width)
        net.compile(
            optimizer=keras.optimizers.Adam(p.lr),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        progress = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, _: ctx.progress(e + 1, p.epochs, "training"))
        net.fit(x, y, batch_size=p.batch_size, epochs=p.epochs, shuffle=True, verbose=0, callbacks=[progress])
        _, accuracy = net.evaluate(xt, yt, verbose=0)
        save_reproducibly(net, ctx.output("model"))
        return {"held_out_accuracy": round(float(accuracy), 4), "train_images": len(x)}


def save_reproducibly(net: "keras.Model", path: Path) -> None:
    """`net.save(path)` without what changes from one process to the next: the save time (metadata.json's
    `date_saved`, the zip's dates) and the memory addresses Keras writes as `shared_object_id` in config.json
    (numbered here in order of appearance). Otherwise the same weights would give other bytes."""
    import json
    import zipfile

    raw = path.with_name(".unpacked-" + path.name)
    net.save(raw)
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared(json.loads(data), {}), sort_keys=True).encode()
            out.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    raw.unlink()


def _renumber_shared(node: Any, ids: dict[int, int]) -> Any:
    """config.json with each distinct `shared_object_id` (an id() of the saving process) replaced by 1, 2, ...
    in order of appearance: the links between shared objects stay, the addresses go."""
    if isinstance(node, dict):
        return {
            k: ids.setdefault(v, len(ids) + 1) if k == "shared_object_id" else _renumber_shared(v, ids)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared(v, ids) for v in node]
    return node
