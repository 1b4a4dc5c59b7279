"""The HPA's published models, built from Keras layers: the 2018 winner's DenseNet121 and
SubCell's ViT. ``hpa-keras import-model`` fills them with the published PyTorch weights
(:mod:`hpa_keras.models.torch_checkpoints`); ``fit`` can train them like any registry model.

Each computes exactly what its original's ``forward`` does, the original's input scaling
included (``BackbonePreprocessing``), from pixel units (0-255) in the package's channel
order:

- ``hpa_densenet121`` (CellProfiling/densenet, ``predict/models.py``,
  ``class_densenet121_large_dropout``): its RGBY means and stds on pixels / 255; the
  torchvision DenseNet121 trunk with a 4-channel first convolution and a 2x2 max-pooling
  after the stem (``large``); ReLU; global average and max pooling concatenated;
  BatchNorm, dropout, a dense layer of 1024, ReLU, BatchNorm, dropout; the logits. The
  embedding (``predict``'s and ``annotate``'s) is its 1024-d feature, the one its
  ``forward`` returns beside the logits.
- ``subcell_vit`` (CellProfiling/SubCellPortable, ``vit_model.py`` and ``inference.py``):
  min-max scaling of each crop over all its channels; a ViT-B/16 encoder; gated attention
  pooling over all tokens (the 1536-d embedding); the averaged classifiers.
"""

import keras

from hpa_keras.errors import InputError
from hpa_keras.models.densenet import TORCH_BATCH_NORM_EPSILON, densenet_trunk, parse_blocks
from hpa_keras.models.layers import BackbonePreprocessing
from hpa_keras.models.vision_transformer import (
    AveragedClassifiers,
    GatedAttentionPooling,
    vit_encoder,
)


def build_hpa_densenet121(
    input_shape=(1024, 1024, 4),
    num_classes=28,
    weights=None,
    blocks="6,12,24,16",
    growth_rate=32,
    initial_features=64,
    large=True,
    dropout=0.5,
):
    """The 2018 winner's DenseNet121 for pixel inputs (0-255, RGBY), random weights unless
    ``weights`` is a Keras weights file of this build (the published checkpoint goes through
    ``hpa-keras import-model``).

    Args:
        blocks, growth_rate, initial_features: the trunk (DenseNet121's by default; the
            tests build narrow ones of the same layout).
        large: the extra max-pooling after the stem, as the published model
            (``class_densenet121_large_dropout``) has for its 1024 px inputs.
        dropout: before each of the two dense layers, as in training.
    """
    counts = parse_blocks(blocks)
    trunk = densenet_trunk(
        input_shape, counts, growth_rate, initial_features, extra_pool=large, name="backbone"
    )
    layers = keras.layers
    inputs = keras.Input(input_shape, name="images")
    scaled = BackbonePreprocessing("hpa2018", name="preprocessing")(inputs)
    features = layers.Activation("relu", name="relu")(trunk(scaled))
    pooled = layers.Concatenate(name="avg_max_pool")(
        [
            layers.GlobalAveragePooling2D(name="avg_pool")(features),
            layers.GlobalMaxPooling2D(name="max_pool")(features),
        ]
    )
    width = pooled.shape[-1] // 2
    values = layers.BatchNormalization(epsilon=TORCH_BATCH_NORM_EPSILON, momentum=0.9, name="bn1")(
        pooled
    )
    values = layers.Dropout(dropout, name="dropout1")(values)
    values = layers.Dense(width, activation="relu", name="fc1")(values)
    values = layers.BatchNormalization(epsilon=TORCH_BATCH_NORM_EPSILON, momentum=0.9, name="bn2")(
        values
    )
    values = layers.Dropout(dropout, name="dropout2")(values)
    outputs = layers.Dense(num_classes, activation="sigmoid", dtype="float32", name="logit")(values)
    model = keras.Model(inputs, outputs, name="hpa_densenet121")
    if weights is not None:
        model.load_weights(weights)
    return model


def build_subcell_vit(
    input_shape=(448, 448, 4),
    num_classes=31,
    weights=None,
    hidden_size=768,
    layers=12,
    heads=12,
    mlp_size=3072,
    patch_size=16,
    pool_heads=2,
    pool_units=512,
    classifiers=1,
    layer_norm_epsilon=1e-12,
):
    """SubCell's model for single-cell crops in pixel units, its channels in the order its
    encoder reads them (``rybg``: red, yellow, blue, green; or ``rbg``, ``ybg``, ``bg``).

    Args:
        hidden_size, layers, heads, mlp_size, patch_size, layer_norm_epsilon: the ViT
            (SubCell's ``vit_model`` settings; ViT-B/16 by default).
        pool_heads, pool_units: the gated attention pooling (``pool_model``).
        classifiers: classifier MLPs averaged (one per published classifier file).
        weights: ``None``, or a Keras weights file of this build.
    """
    if input_shape[0] is None or input_shape[1] is None:
        raise InputError("subcell_vit takes one crop size (SubCell's: 448 px): give input_size")
    try:
        encoder = vit_encoder(
            input_shape,
            hidden_size=hidden_size,
            layers=layers,
            heads=heads,
            mlp_size=mlp_size,
            patch_size=patch_size,
            epsilon=layer_norm_epsilon,
        )
    except ValueError as error:
        raise InputError(f"subcell_vit: {error}") from None
    tokens = keras.Input(encoder.output.shape[1:])
    pooled = GatedAttentionPooling(pool_heads, pool_units, name="pool_model")(tokens)
    pooler = keras.Model(tokens, pooled, name="pool")
    images = keras.Input(input_shape)
    backbone = keras.Model(images, pooler(encoder(images)), name="backbone")
    inputs = keras.Input(input_shape, name="images")
    scaled = BackbonePreprocessing("min-max", name="preprocessing")(inputs)
    outputs = AveragedClassifiers(num_classes, classifiers, name="classifiers")(backbone(scaled))
    model = keras.Model(inputs, outputs, name="subcell_vit")
    if weights is not None:
        model.load_weights(weights)
    return model
