"""A Vision Transformer in Keras layers, as SubCell's encoder computes it, and its pooling
and classifier heads: registered, so an imported SubCell run loads in safe mode.

SubCell (CellProfiling/SubCellPortable, ``vit_model.py``) is Hugging Face's ViT (pre-norm
blocks, exact GELU, LayerNorm epsilon 1e-12, a class token and learned position
embeddings), a gated attention pooling over all its tokens that gives the cell's
embedding, and small MLP classifiers whose sigmoid outputs are averaged. The layers here
compute the same, parameter for parameter (:mod:`hpa_keras.models.torch_checkpoints`
maps the names), with Keras' own ``MultiHeadAttention``, ``LayerNormalization`` and
``Dense``.
"""

import keras
from keras import ops

from hpa_keras.models.layers import PACKAGE
from hpa_keras.registration import finish_registration


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassTokenAndPositions(keras.layers.Layer):
    """``(batch, patches, width)`` -> ``(batch, 1 + patches, width)``: a learned class token
    first, then a learned position embedding added to every token (ViT's embeddings).
    The number of patches is fixed when the layer is built (a fixed input size)."""

    def build(self, input_shape):
        patches, width = input_shape[1], input_shape[2]
        if patches is None:
            raise ValueError("ClassTokenAndPositions needs a fixed number of patches")
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.class_token = self.add_weight(
            name="class_token", shape=(1, 1, width), initializer=initializer
        )
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(1, patches + 1, width), initializer=initializer
        )

    def call(self, tokens):
        batch = ops.shape(tokens)[0]
        token = ops.cast(self.class_token, tokens.dtype)
        token = ops.broadcast_to(token, (batch, 1, tokens.shape[-1]))
        sequence = ops.concatenate([token, tokens], axis=1)
        return sequence + ops.cast(self.position_embeddings, tokens.dtype)

    def compute_output_shape(self, input_shape):
        patches = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], patches, input_shape[2])


@keras.saving.register_keras_serializable(package=PACKAGE)
class GatedAttentionPooling(keras.layers.Layer):
    """Gated attention pooling (Ilse et al. 2018), as SubCell's ``GatedAttentionPooler``:
    for each of ``heads`` heads, a softmax over the tokens of
    ``attention(tanh(V x) * gelu(U x))`` weighs the tokens; the heads' weighted sums are
    concatenated, ``(batch, heads * width)``: SubCell's 1536-d cell embedding.

    Args:
        heads: attention heads (SubCell: 2).
        units: width of the gates V and U (SubCell: 512).
    """

    def __init__(self, heads=2, units=512, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.units = int(units)
        self.attention_v = keras.layers.Dense(self.units, activation="tanh", name="attention_v")
        self.attention_u = keras.layers.Dense(self.units, activation="gelu", name="attention_u")
        self.attention = keras.layers.Dense(self.heads, name="attention")

    def build(self, input_shape):
        self.attention_v.build(input_shape)
        self.attention_u.build(input_shape)
        self.attention.build((*input_shape[:-1], self.units))

    def attention_weights(self, tokens):
        """``(batch, tokens, heads)``: each head's weights over the tokens (sum to 1)."""
        scores = self.attention(self.attention_v(tokens) * self.attention_u(tokens))
        return ops.softmax(scores, axis=1)

    def call(self, tokens):
        weights = self.attention_weights(tokens)
        pooled = ops.einsum("bnh,bnd->bhd", weights, tokens)
        return ops.reshape(pooled, (-1, self.heads * tokens.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.heads * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AveragedClassifiers(keras.layers.Layer):
    """SubCell's classifiers: ``count`` MLPs (``hidden`` ReLU layers, then ``num_classes``),
    each through a sigmoid, their probabilities averaged (SubCellPortable averages the
    classifiers trained with different seeds). Output float32.

    Args:
        num_classes: outputs (SubCell: 31).
        count: classifiers averaged.
        hidden: the hidden layers' widths (SubCell: 512, 256).
    """

    def __init__(self, num_classes=31, count=1, hidden=(512, 256), **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.count = int(count)
        self.hidden = tuple(int(width) for width in hidden)
        self.dense_layers = []
        for classifier in range(self.count):
            for depth, width in enumerate((*self.hidden, self.num_classes)):
                activation = "relu" if depth < len(self.hidden) else None
                self.dense_layers.append(
                    keras.layers.Dense(width, activation=activation, name=f"c{classifier}_{depth}")
                )

    def classifier_layers(self, classifier: int) -> list:
        """The Dense layers of classifier ``classifier``, input to output."""
        depth = len(self.hidden) + 1
        return self.dense_layers[classifier * depth : (classifier + 1) * depth]

    def build(self, input_shape):
        for classifier in range(self.count):
            width = input_shape[-1]
            for layer in self.classifier_layers(classifier):
                layer.build((input_shape[0], width))
                width = layer.units

    def call(self, embedding):
        probabilities = []
        for classifier in range(self.count):
            values = embedding
            for layer in self.classifier_layers(classifier):
                values = layer(values)
            probabilities.append(ops.sigmoid(ops.cast(values, "float32")))
        return ops.mean(ops.stack(probabilities, axis=1), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, embedding):
        return keras.KerasTensor((embedding.shape[0], self.num_classes), dtype="float32")

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "count": self.count,
            "hidden": list(self.hidden),
        }


def transformer_block(tokens, heads: int, mlp_size: int, epsilon: float, name: str):
    """One pre-norm ViT block: LayerNorm, self-attention, residual; LayerNorm, MLP (exact
    GELU), residual. Layer names ``{name}_layernorm_before``, ``{name}_attention``,
    ``{name}_layernorm_after``, ``{name}_intermediate``, ``{name}_output``: Hugging Face's
    module names."""
    layers = keras.layers
    width = tokens.shape[-1]
    normed = layers.LayerNormalization(epsilon=epsilon, name=f"{name}_layernorm_before")(tokens)
    attended = layers.MultiHeadAttention(heads, width // heads, name=f"{name}_attention")(
        normed, normed
    )
    tokens = layers.Add(name=f"{name}_attention_residual")([attended, tokens])
    normed = layers.LayerNormalization(epsilon=epsilon, name=f"{name}_layernorm_after")(tokens)
    hidden = layers.Dense(mlp_size, activation="gelu", name=f"{name}_intermediate")(normed)
    output = layers.Dense(width, name=f"{name}_output")(hidden)
    return layers.Add(name=f"{name}_output_residual")([output, tokens])


def vit_encoder(
    input_shape,
    hidden_size: int = 768,
    layers: int = 12,
    heads: int = 12,
    mlp_size: int = 3072,
    patch_size: int = 16,
    epsilon: float = 1e-12,
    name: str = "encoder",
):
    """Images (already scaled) -> the final LayerNorm's tokens ``(batch, 1 + patches,
    hidden_size)``, as Hugging Face's ``ViTModel`` without its pooler.

    The input's height and width must be multiples of ``patch_size`` (SubCell's crops:
    448 px, 28 x 28 patches of 16 px)."""
    height, width = input_shape[0], input_shape[1]
    if height is None or width is None or height % patch_size or width % patch_size:
        raise ValueError(f"a ViT input must be fixed multiples of {patch_size} px: {input_shape}")
    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} does not split into {heads} heads")
    inputs = keras.Input(input_shape)
    patches = keras.layers.Conv2D(
        hidden_size, patch_size, strides=patch_size, name="patch_embeddings"
    )(inputs)
    tokens = keras.layers.Reshape((-1, hidden_size), name="patches")(patches)
    tokens = ClassTokenAndPositions(name="embeddings")(tokens)
    for index in range(layers):
        tokens = transformer_block(tokens, heads, mlp_size, epsilon, f"layer{index}")
    tokens = keras.layers.LayerNormalization(epsilon=epsilon, name="layernorm")(tokens)
    return keras.Model(inputs, tokens, name=name)


# Last: a registration deferred while this module was being imported (see registration.py)
finish_registration(__name__)
