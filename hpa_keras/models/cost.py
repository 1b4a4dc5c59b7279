"""What a model costs on paper: multiply-adds, stored activations, parameters.

Used by ``python scripts/estimate_recipe_cost.py`` to put GPU time and
memory on the shipped recipes without a GPU. The counts walk the built
model, descending into nested models (the ImageNet backbones), and count
the layers that do the arithmetic:

- ``Conv2D``: ``H_out * W_out * k_h * k_w * (C_in / groups) * C_out``
  multiply-adds; ``DepthwiseConv2D``: ``H_out * W_out * k_h * k_w * C_in *
  multiplier``; ``SeparableConv2D``: its depthwise and pointwise parts;
- ``Dense``: ``inputs * units`` for each position it is applied at
  (ConvNeXt applies Dense layers to every pixel).

Batch normalization, activations, pooling and additions are left out: a
few percent of the arithmetic, though not of the memory traffic. A
floating-point operation count is twice the multiply-adds.

Activation memory is the sum of every layer's output elements, the tensors
a training step keeps for the backward pass; a framework frees, fuses or
recomputes some and needs workspace besides, so this is an order of
magnitude, not a measurement.
"""

import numpy as np


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _spatial_elements(shape) -> int:
    """Product of the dimensions between batch and channels."""
    return int(np.prod([dimension for dimension in shape[1:-1]])) if len(shape) > 2 else 1


def _layer_macs(layer) -> int:
    import keras  # lazy: imports TensorFlow

    layers = keras.layers
    try:
        output = _shape(layer.output)
        given = layer.input
    except (AttributeError, ValueError):
        return 0
    if isinstance(given, list | tuple):
        return 0
    inputs = _shape(given)
    if isinstance(layer, layers.DepthwiseConv2D):
        kernel_h, kernel_w = layer.kernel_size
        return _spatial_elements(output) * kernel_h * kernel_w * output[-1]
    if isinstance(layer, layers.SeparableConv2D):
        kernel_h, kernel_w = layer.kernel_size
        depthwise_channels = inputs[-1] * layer.depth_multiplier
        depthwise = _spatial_elements(output) * kernel_h * kernel_w * depthwise_channels
        return depthwise + _spatial_elements(output) * depthwise_channels * output[-1]
    if isinstance(layer, layers.Conv2D):
        kernel_h, kernel_w = layer.kernel_size
        per_output = kernel_h * kernel_w * inputs[-1] // layer.groups
        return _spatial_elements(output) * per_output * output[-1]
    if isinstance(layer, layers.Dense):
        return _spatial_elements(output) * inputs[-1] * output[-1]
    return 0


def _walk(model):
    import keras  # lazy: imports TensorFlow

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer)
        else:
            yield layer


def multiply_adds(model) -> int:
    """Multiply-adds of one forward pass of one image (see the module docstring)."""
    return int(sum(_layer_macs(layer) for layer in _walk(model)))


def activation_elements(model) -> int:
    """Output elements of every layer for one image: what a training step keeps."""
    import keras  # lazy: imports TensorFlow

    total = 0
    for layer in _walk(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            outputs = layer.output
        except (AttributeError, ValueError):
            continue
        for tensor in outputs if isinstance(outputs, list | tuple) else [outputs]:
            total += int(np.prod(_shape(tensor)[1:]))
    return total


def training_memory_bytes(model, batch_size: int, mixed_precision: bool) -> dict:
    """Memory of one training step on paper: weights, gradients and Adam's two moments
    in float32 (16 bytes a parameter), and the stored activations of the batch (2 bytes an
    element in mixed precision, else 4)."""
    parameters = model.count_params()
    activations = activation_elements(model) * batch_size * (2 if mixed_precision else 4)
    return {
        "parameters": parameters,
        "weights_and_optimizer": parameters * 16,
        "activations": activations,
        "total": parameters * 16 + activations,
    }
