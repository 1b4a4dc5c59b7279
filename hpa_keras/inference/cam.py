"""Class activation maps: where in the field a model sees each class (Grad-CAM).

Grad-CAM (Selvaraju et al., 2017) works for any model with a convolutional
feature map: the gradient of a class's output with respect to the last 4-D
activation, averaged over the map, weighs each feature channel; the weighted
sum, clipped at zero and scaled to [0, 1], is the map. It is enlarged to the
image's own size, so it lies over the original channels however large they
are (the model may see a smaller version).

The feature layer is found by searching the model backwards, descending into
nested models (the registry's ImageNet backbones pool inside themselves):
the last layer with a 4-D output. To read its activation during a normal
forward pass, its ``call`` is wrapped for the duration of the computation;
the model itself is not rebuilt, so training models (uint8 input,
standardization, augmentation that is inactive at inference) work as saved.
"""

import os
from contextlib import contextmanager

import cv2
import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.data.images import find_sample_files, read_sample, resize_square
from hpa_keras.distributed import backend
from hpa_keras.errors import InputError
from hpa_keras.inference.runs import load_run
from hpa_keras.inference.submission import submission_labels
from hpa_keras.reports.cam import cam_figure
from hpa_keras.reports.figures import save_figure
from hpa_keras.runs.folders import class_names_of, expand_runs


def _output_rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def find_feature_layer(model):
    """The last layer with a 4-D output, searching nested models first (depth first, backwards)."""
    import keras  # lazy: imports TensorFlow

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            if isinstance(layer, keras.Sequential) and not layer.trainable_weights:
                continue  # the augmentation block: it has no features of its own
            found = find_feature_layer(layer)
            if found is not None:
                return found
        if _output_rank(layer) == 4:
            return layer
    return None


@contextmanager
def _recording(layer):
    """Wrap ``layer.call`` to keep its latest output while the context is open."""
    recorded = []
    original = layer.call

    def call(*args, **kwargs):
        output = original(*args, **kwargs)
        recorded.append(output)
        return output

    layer.call = call
    try:
        yield recorded
    finally:
        del layer.call  # the instance attribute; the class's method shows through again


def grad_cam(model, image: np.ndarray, classes, layer=None, output_size=None) -> np.ndarray:
    """Grad-CAM maps ``(len(classes), H, W)`` float32 in [0, 1] for one image.

    Args:
        model: a Keras model with one output of class scores.
        image: one input ``(height, width, channels)`` as the model takes it.
        classes: class indices to explain.
        layer: the feature layer; default :func:`find_feature_layer`.
        output_size: ``(H, W)`` of the maps; default the image's own size.
    A class whose weighted features are nowhere positive gets an all-zero map.
    """
    import tensorflow as tf  # lazy: imports TensorFlow

    if backend() != "tensorflow":
        # keras.ops has no gradient: Grad-CAM needs the backend's own (tf.GradientTape here).
        raise InputError(
            f"Grad-CAM runs on the TensorFlow backend (KERAS_BACKEND={backend()}): run it with "
            "KERAS_BACKEND=tensorflow; the .keras files of any backend load there"
        )
    layer = layer or find_feature_layer(model)
    if layer is None:
        raise InputError(f"model {model.name!r} has no layer with a 4-D output for Grad-CAM")
    classes = [int(index) for index in classes]
    height, width = output_size or image.shape[:2]
    batch = tf.convert_to_tensor(np.asarray(image)[None])
    maps = []
    with _recording(layer) as recorded:
        for index in classes:
            recorded.clear()
            with tf.GradientTape() as tape:
                scores = model(batch, training=False)
                activation = recorded[-1]
                tape.watch(activation)
                score = scores[:, index]
            gradients = tape.gradient(score, activation)
            if gradients is None:
                raise InputError(f"layer {layer.name!r} does not lead to the model's output")
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            heat = tf.nn.relu(tf.reduce_sum(weights * activation, axis=-1))[0].numpy()
            top = heat.max()
            heat = heat / top if top > 0 else np.zeros_like(heat)
            maps.append(
                cv2.resize(heat.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
            )
    return np.clip(np.stack(maps), 0.0, 1.0).astype(np.float32)


def explain_sample(run_folder, images, sample_id, classes=None, max_classes: int = 4):
    """Grad-CAM for one sample of an image folder: ``(image, classes, maps, probabilities)``.

    ``image`` is the sample at its own size (RGBY, the run's pixel type); the
    maps have that size. ``classes`` default to the predicted ones (the run's
    thresholds; the top class if none passes), most probable first, at most
    ``max_classes``. A cv folder explains its ensemble: probabilities and
    maps are the means over the fold models (each model's map scaled to
    [0, 1] first, so each has the same say), and the classes are chosen by
    the out-of-fold thresholds, as ``predict --run CV_DIR`` chooses them.
    """

    folders, ensemble = expand_runs([run_folder])
    runs = [load_run(folder) for folder in folders]
    first = runs[0]
    if first.kind == "cells":
        raise InputError(
            f"{run_folder}: a run of single cells; Grad-CAM here explains a run of whole "
            "fields (predict and annotate take a cell run)"
        )
    files = find_sample_files(images, sample_id)  # errors name the missing file
    image = read_sample(files, None, first.sixteen_bit_rule, first.bit_depth)
    inputs = [
        resize_square(image, run.image_size)[..., [CHANNELS.index(name) for name in run.channels]]
        for run in runs
    ]
    probabilities = np.mean(
        [
            np.asarray(run.model(model_input[None], training=False))[0]
            for run, model_input in zip(runs, inputs, strict=True)
        ],
        axis=0,
    )
    thresholds = ensemble.thresholds if ensemble is not None else first.thresholds
    if classes is None:
        predicted = submission_labels(probabilities[None], thresholds)[0]
        classes = sorted(predicted, key=lambda k: -probabilities[k])[:max_classes]
    for value in classes:
        if not 0 <= int(value) < first.num_classes:
            raise InputError(f"class {value} is out of range 0..{first.num_classes - 1}")
    maps = np.mean(
        [
            grad_cam(run.model, model_input, classes, output_size=image.shape[:2])
            for run, model_input in zip(runs, inputs, strict=True)
        ],
        axis=0,
    ).astype(np.float32)
    return image, list(classes), maps, probabilities


def write_cam(
    run_folder, images, sample_id, out: str | os.PathLike, classes=None, true_labels=None
) -> dict:
    """Draw :func:`explain_sample` into ``out`` (PNG, written atomically); ``true_labels``,
    when known, are named in the title. Classes are named as the run names them."""

    image, classes, maps, probabilities = explain_sample(run_folder, images, sample_id, classes)
    names = class_names_of(expand_runs([run_folder])[0][0])
    title = f"Grad-CAM, sample {sample_id} ({image.shape[1]}x{image.shape[0]})"
    if true_labels is not None:
        title += "\ntrue: " + ", ".join(f"{k} {names[k]}" for k in true_labels)
    figure = cam_figure(image, maps, classes, probabilities, title, class_names=names)
    save_figure(figure, out, dpi=100)
    return {
        "classes": classes,
        "probabilities": probabilities,
        "maps": maps,
        "image": image,
        "class_names": names,
    }
