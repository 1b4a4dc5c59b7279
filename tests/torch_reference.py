"""The published PyTorch models, module for module, for the import tests.

torchvision does not import beside this machine's PyTorch and Hugging Face's transformers
is not a dependency, so their modules are written out here with the same attribute names,
hence the same state-dict names, and the same arithmetic:

- ``DenseNet``: torchvision.models.densenet (``features.conv0`` ... ``features.norm5``,
  ``classifier``), ``ResNet``: torchvision.models.resnet with basic blocks.
- ``DensenetClass``: CellProfiling/densenet ``predict/models.py`` (its ``forward``, its
  Sequentials re-wrapping the trunk's modules, hence names like ``encoder2.0...``).
- ``ViTPoolClassifier``: SubCellPortable ``vit_model.py`` on Hugging Face's ViT modules
  (``embeddings.patch_embeddings.projection``, ``encoder.layer.N.attention.attention.query``
  ...), with the gated attention pooler as subcell-embed trains it (a Dropout first in its
  Sequentials) and the classifiers as trained (Linear, ReLU, Dropout, ...).
"""

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (as the published code spells it)
from torch import nn

# ------------------------------------------------------------------ torchvision DenseNet


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features, growth_rate, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, features):
        new = self.conv1(self.relu1(self.norm1(features)))
        new = self.conv2(self.relu2(self.norm2(new)))
        return torch.cat([features, new], 1)


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate):
        super().__init__()
        for index in range(num_layers):
            layer = _DenseLayer(num_input_features + index * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{index + 1}", layer)

    def forward(self, features):
        for layer in self.values():
            features = layer(features)
        return features


class _Transition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    def __init__(
        self,
        growth_rate=32,
        block_config=(6, 12, 24, 16),
        num_init_features=64,
        bn_size=4,
        num_classes=1000,
        in_channels=3,
    ):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, 2, 1)),
                ]
            )
        )
        features = num_init_features
        for index, count in enumerate(block_config):
            block = _DenseBlock(count, features, bn_size, growth_rate)
            self.features.add_module(f"denseblock{index + 1}", block)
            features += count * growth_rate
            if index != len(block_config) - 1:
                self.features.add_module(
                    f"transition{index + 1}", _Transition(features, features // 2)
                )
                features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(features))
        self.classifier = nn.Linear(features, num_classes)
        self.num_features = features

    def forward(self, images):
        features = F.relu(self.features(images))
        return torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)  # the trunk's pooled features


# ------------------------------------------------------------------ torchvision ResNet


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem=64, num_classes=1000):
        super().__init__()
        self.inplanes = stem
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for index, (width, count) in enumerate(zip(widths, layers, strict=True)):
            self.add_module(
                f"layer{index + 1}", self._make_layer(width, count, 1 if index == 0 else 2)
            )
        self.fc = nn.Linear(self.inplanes, num_classes)
        self.depth = len(layers)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(self.depth):
            x = getattr(self, f"layer{index + 1}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# ------------------------------------------------------------------ the 2018 winner


class DensenetClass(nn.Module):
    """CellProfiling/densenet predict/models.py, DensenetClass (large=True), its backbone's
    shape an argument (DenseNet121's by default)."""

    def __init__(self, num_classes=28, in_channels=4, large=True, **densenet):
        super().__init__()
        self.in_channels = in_channels
        self.large = large
        self.backbone = DenseNet(**densenet)
        num_features = self.backbone.num_features
        if self.in_channels == 4:
            w = self.backbone.features.conv0.weight
            out = w.shape[0]
            self.backbone.features.conv0 = nn.Conv2d(
                4, out, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False
            )
            self.backbone.features.conv0.weight = torch.nn.Parameter(
                torch.cat((w, w[:, :1, :, :]), dim=1)
            )
        features = self.backbone.features
        self.conv1 = nn.Sequential(features.conv0, features.norm0, features.relu0, features.pool0)
        self.encoder2 = nn.Sequential(features.denseblock1)
        self.encoder3 = nn.Sequential(features.transition1, features.denseblock2)
        self.encoder4 = nn.Sequential(features.transition2, features.denseblock3)
        self.encoder5 = nn.Sequential(features.transition3, features.denseblock4, features.norm5)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        self.bn1 = nn.BatchNorm1d(num_features * 2)
        self.fc1 = nn.Linear(num_features * 2, num_features)
        self.bn2 = nn.BatchNorm1d(num_features)
        self.relu = nn.ReLU(inplace=True)
        self.logit = nn.Linear(num_features, num_classes)

    def forward(self, x):
        mean = [0.074598, 0.050630, 0.050891, 0.076287]  # rgby
        std = [0.122813, 0.085745, 0.129882, 0.119411]
        for i in range(self.in_channels):
            x[:, i, :, :] = (x[:, i, :, :] - mean[i]) / std[i]
        x = self.conv1(x)
        if self.large:
            x = self.maxpool(x)
        e2 = self.encoder2(x)
        e3 = self.encoder3(e2)
        e4 = self.encoder4(e3)
        e5 = self.encoder5(e4)
        e5 = F.relu(e5, inplace=True)
        x = torch.cat((nn.AdaptiveAvgPool2d(1)(e5), nn.AdaptiveMaxPool2d(1)(e5)), dim=1)
        x = x.view(x.size(0), -1)
        x = self.bn1(x)
        x = F.dropout(x, p=0.5, training=self.training)
        x = self.fc1(x)
        x = self.relu(x)
        x = self.bn2(x)
        x = F.dropout(x, p=0.5, training=self.training)
        feature = x.view(x.size(0), -1)
        x = self.logit(feature)
        return x, feature


# ------------------------------------------------------------------ SubCell


class ViTSelfAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads, self.size = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x):
        batch, tokens, _ = x.shape

        def split(values):
            return values.view(batch, tokens, self.heads, self.size).permute(0, 2, 1, 3)

        scores = split(self.query(x)) @ split(self.key(x)).transpose(-1, -2) / math.sqrt(self.size)
        context = scores.softmax(-1) @ split(self.value(x))
        return context.permute(0, 2, 1, 3).reshape(batch, tokens, -1)


class ViTSelfOutput(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x):
        return self.dense(x)


class ViTAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.attention = ViTSelfAttention(hidden, heads)
        self.output = ViTSelfOutput(hidden)

    def forward(self, x):
        return self.output(self.attention(x))


class ViTIntermediate(nn.Module):
    def __init__(self, hidden, mlp):
        super().__init__()
        self.dense = nn.Linear(hidden, mlp)

    def forward(self, x):
        return F.gelu(self.dense(x))


class ViTOutput(nn.Module):
    def __init__(self, hidden, mlp):
        super().__init__()
        self.dense = nn.Linear(mlp, hidden)

    def forward(self, x, residual):
        return self.dense(x) + residual


class ViTLayer(nn.Module):
    def __init__(self, hidden, heads, mlp, eps):
        super().__init__()
        self.attention = ViTAttention(hidden, heads)
        self.intermediate = ViTIntermediate(hidden, mlp)
        self.output = ViTOutput(hidden, mlp)
        self.layernorm_before = nn.LayerNorm(hidden, eps=eps)
        self.layernorm_after = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x):
        x = self.attention(self.layernorm_before(x)) + x
        return self.output(self.intermediate(self.layernorm_after(x)), x)


class ViTPatchEmbeddings(nn.Module):
    def __init__(self, channels, hidden, patch):
        super().__init__()
        self.projection = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.projection(x).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    def __init__(self, channels, hidden, patch, image):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden))
        self.patch_embeddings = ViTPatchEmbeddings(channels, hidden, patch)
        self.position_embeddings = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, hidden))

    def forward(self, x):
        tokens = self.patch_embeddings(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat((cls, tokens), dim=1) + self.position_embeddings


class ViTEncoder(nn.Module):
    def __init__(self, layers, hidden, heads, mlp, eps):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer(hidden, heads, mlp, eps) for _ in range(layers)])

    def forward(self, x):
        for layer in self.layer:
            x = layer(x)
        return x


class ViTInferenceModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.embeddings = ViTEmbeddings(
            config["num_channels"], hidden, config["patch_size"], config["image_size"]
        )
        self.encoder = ViTEncoder(
            config["num_hidden_layers"],
            hidden,
            config["num_attention_heads"],
            config["intermediate_size"],
            eps,
        )
        self.layernorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x):
        return self.layernorm(self.encoder(self.embeddings(x)))


class GatedAttentionPooler(nn.Module):
    """subcell-embed models/attention_pooling.py, as trained (Dropout first)."""

    def __init__(self, dim, int_dim=512, num_heads=1, dropout=0.25):
        super().__init__()
        self.num_heads = num_heads
        self.attention_v = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, int_dim), nn.Tanh())
        self.attention_u = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, int_dim), nn.GELU())
        self.attention = nn.Linear(int_dim, num_heads)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        attn = self.attention(self.attention_v(x) * self.attention_u(x)).permute(0, 2, 1)
        attn = self.softmax(attn)
        return torch.bmm(attn, x).view(x.shape[0], -1), attn


def make_classifier(in_dim, num_classes):
    """A classifier as trained: its Linears at 0, 3 and 6 (SubCellPortable renames them)."""
    return nn.Sequential(
        nn.Linear(in_dim, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Linear(512, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Linear(256, num_classes),
    )


class ViTPoolClassifier(nn.Module):
    """SubCellPortable's model: the encoder, the pooler, the averaged classifiers."""

    def __init__(self, config, classifiers=2):
        super().__init__()
        self.encoder = ViTInferenceModel(config["vit_model"])
        pool = config["pool_model"]
        self.pool_model = GatedAttentionPooler(pool["dim"], pool["int_dim"], pool["num_heads"])
        out_dim = pool["dim"] * pool["num_heads"]
        self.classifiers = nn.ModuleList(
            [make_classifier(out_dim, config["num_classes"]) for _ in range(classifiers)]
        )

    def forward(self, x):
        pool_op, _ = self.pool_model(self.encoder(x))
        probs = torch.stack([torch.sigmoid(head(pool_op)) for head in self.classifiers], dim=1)
        return probs.mean(dim=1), pool_op

    def save_as_published(self, folder):
        """The files SubCellPortable reads: encoder.pth (``encoder.`` and ``pool_model.``
        parameters) and one classifier_sN.pth per classifier."""
        folder = Path(folder)
        encoder = {f"encoder.{name}": value for name, value in self.encoder.state_dict().items()}
        encoder |= {
            f"pool_model.{name}": value for name, value in self.pool_model.state_dict().items()
        }
        torch.save(encoder, folder / "encoder.pth")
        paths = []
        for index, head in enumerate(self.classifiers):
            paths.append(folder / f"classifier_s{index}.pth")
            torch.save(head.state_dict(), paths[-1])
        return folder / "encoder.pth", paths


# SubCell's published model_config.yaml (SubCellPortable, models/rybg/*/model_config.yaml):
# ViT-B/16 on 448 px crops of 4 channels, the gated pooler of two heads, 31 classes.
SUBCELL_VIT_B_CONFIG = {
    "vit_model": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-12,
        "image_size": 448,
        "patch_size": 16,
        "num_channels": 4,
    },
    "pool_model": {"dim": 768, "int_dim": 512, "num_heads": 2},
    "num_classes": 31,
}


def min_max_standardize(im):
    """SubCellPortable inference.py."""
    min_val = torch.amin(im, dim=(1, 2, 3), keepdims=True)
    max_val = torch.amax(im, dim=(1, 2, 3), keepdims=True)
    return (im - min_val) / (max_val - min_val + 1e-6)


def randomize(module, seed=0):
    """Random weights, and BatchNorm statistics away from 0 and 1, so that a mapping
    mistake (a transposed kernel, swapped statistics) shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("weight") and tensor.ndim == 1:
                tensor.copy_(1 + 0.1 * torch.randn(tensor.shape, generator=generator))
            else:
                fan_in = tensor[0].numel() if tensor.ndim > 1 else tensor.numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(fan_in))
    return module.eval()
