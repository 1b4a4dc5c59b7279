"""hpa-keras against PyTorch on the same CPU: training and prediction, float32 and bfloat16.

For each architecture both frameworks have (DenseNet121, ResNet50, ResNet34), with 4
input channels and 28 outputs at ``--image-size``, one run prints images per second side
by side:

- train: ``--steps`` optimizer steps (Adam, binary cross-entropy) of ``--batch-size``
  random images after warm-up steps; hpa-keras' model (``build_task_model``, as ``fit``
  builds it) in float32 and under the ``mixed_bfloat16`` policy (``fit
  --mixed-precision`` on a CPU); PyTorch in float32 and under ``torch.autocast`` bfloat16;
- predict: ``--images`` random fields in batches; hpa-keras through Keras and through its
  OpenVINO engine (float32, and bfloat16 where the CPU has it); PyTorch float32 and
  bfloat16 autocast, in ``torch.inference_mode``.

PyTorch's models are torchvision's where it imports, else the same layer structure
written below (torchvision's DenseNet-BC and ResNet definitions: same blocks, widths and
parameter counts, printed beside each). Without PyTorch the PyTorch rows are skipped with
a message.

    python benchmarks/bench_peers.py --image-size 256                     # all three
    python benchmarks/bench_peers.py --models resnet34 --image-size 128   # a quick look
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 28


# ------------------------------------------------------------------ PyTorch's models


def torch_model(name: str):
    """The PyTorch architecture ``name`` with a 4-channel stem and 28 outputs."""
    from torch import nn

    try:
        import torchvision

        builder = {
            "densenet121": torchvision.models.densenet121,
            "resnet50": torchvision.models.resnet50,
            "resnet34": torchvision.models.resnet34,
        }[name]
        model = builder(num_classes=CLASSES)
        if name.startswith("densenet"):
            model.features.conv0 = nn.Conv2d(4, 64, 7, 2, 3, bias=False)
        else:
            model.conv1 = nn.Conv2d(4, 64, 7, 2, 3, bias=False)
        return model, "torchvision"
    except (ImportError, RuntimeError):
        pass
    classes = _torch_classes()
    if name == "densenet121":
        return classes["DenseNet"]((6, 12, 24, 16)), "torchvision's structure, written here"
    block = classes["Basic"] if name == "resnet34" else classes["Bottleneck"]
    return classes["ResNet"](block, (3, 4, 6, 3)), "torchvision's structure, written here"


def _torch_classes() -> dict:
    """torchvision's ResNet and DenseNet-BC modules, written out (PyTorch is optional, so
    they are defined only once it imports)."""
    import torch
    from torch import nn

    class Basic(nn.Module):
        expansion = 1

        def __init__(self, inputs, width, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, width, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inputs, width, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(width * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self, block, layers):
            super().__init__()
            self.inputs = 64
            self.conv1 = nn.Conv2d(4, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._layer(block, 64, layers[0], 1)
            self.layer2 = self._layer(block, 128, layers[1], 2)
            self.layer3 = self._layer(block, 256, layers[2], 2)
            self.layer4 = self._layer(block, 512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * block.expansion, CLASSES)

        def _layer(self, block, width, count, stride):
            downsample = None
            if stride != 1 or self.inputs != width * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inputs, width * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(width * block.expansion),
                )
            layers = [block(self.inputs, width, stride, downsample)]
            self.inputs = width * block.expansion
            layers += [block(self.inputs, width) for _ in range(1, count)]
            return nn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class DenseLayer(nn.Module):
        def __init__(self, inputs, growth=32, bottleneck=4):
            super().__init__()
            self.norm1 = nn.BatchNorm2d(inputs)
            self.conv1 = nn.Conv2d(inputs, bottleneck * growth, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(bottleneck * growth)
            self.conv2 = nn.Conv2d(bottleneck * growth, growth, 3, 1, 1, bias=False)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, features):
            x = torch.cat(features, 1)
            x = self.conv1(self.relu(self.norm1(x)))
            return self.conv2(self.relu(self.norm2(x)))

    class DenseNet(nn.Module):
        def __init__(self, blocks, growth=32, initial=64):
            super().__init__()
            layers = [nn.Conv2d(4, initial, 7, 2, 3, bias=False), nn.BatchNorm2d(initial),
                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]  # fmt: skip
            width = initial
            self.blocks = nn.ModuleList()
            self.transitions = nn.ModuleList()
            self.stem = nn.Sequential(*layers)
            for index, count in enumerate(blocks):
                block = nn.ModuleList(DenseLayer(width + k * growth) for k in range(count))
                self.blocks.append(block)
                width += count * growth
                if index < len(blocks) - 1:
                    self.transitions.append(nn.Sequential(
                        nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                        nn.Conv2d(width, width // 2, 1, bias=False), nn.AvgPool2d(2, 2),
                    ))  # fmt: skip
                    width //= 2
            self.norm = nn.BatchNorm2d(width)
            self.classifier = nn.Linear(width, CLASSES)

        def forward(self, x):
            x = self.stem(x)
            for index, block in enumerate(self.blocks):
                features = [x]
                for layer in block:
                    features.append(layer(features))
                x = torch.cat(features, 1)
                if index < len(self.transitions):
                    x = self.transitions[index](x)
            x = torch.relu(self.norm(x))
            return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return {"Basic": Basic, "Bottleneck": Bottleneck, "ResNet": ResNet, "DenseNet": DenseNet}


def torch_rates(name, image_size, batch_size, steps, count, train=True) -> dict:
    """PyTorch's images per second: train and predict, float32 and bfloat16 autocast; and
    under ``"difference"`` the largest difference of its bfloat16 probabilities from its
    float32 ones on the same fields."""
    import torch

    model, origin = torch_model(name)
    parameters = sum(p.numel() for p in model.parameters())
    images = torch.rand(batch_size, 4, image_size, image_size)
    targets = (torch.rand(batch_size, CLASSES) > 0.9).float()
    rates = {"origin": f"{origin}, {parameters / 1e6:.1f} M parameters"}
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    loss_function = torch.nn.BCEWithLogitsLoss()
    fields = torch.rand(count, 4, image_size, image_size)
    outputs = {}
    for precision in ("float32", "bfloat16"):
        model.train()

        def step(reduced=precision == "bfloat16"):
            optimizer.zero_grad()
            with torch.autocast("cpu", torch.bfloat16, enabled=reduced):
                loss = loss_function(model(images), targets)
            loss.backward()
            optimizer.step()

        if train:
            step()
            started = time.perf_counter()
            for _ in range(steps):
                step()
            rates[f"train {precision}"] = steps * batch_size / (time.perf_counter() - started)
        model.eval()
        with (
            torch.inference_mode(),
            torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16"),
        ):
            torch.sigmoid(model(fields[:batch_size]))
            started = time.perf_counter()
            outputs[precision] = torch.cat([
                torch.sigmoid(model(fields[start : start + batch_size])).float()
                for start in range(0, count, batch_size)
            ])  # fmt: skip
            rates[f"predict {precision}"] = count / (time.perf_counter() - started)
    rates["difference"] = float((outputs["bfloat16"] - outputs["float32"]).abs().max())
    return rates


# ------------------------------------------------------------------ hpa-keras


def keras_rates(name, image_size, batch_size, steps, count, train=True) -> dict:
    """hpa-keras' images per second: train float32 and mixed_bfloat16, predict through
    Keras and the OpenVINO engine; under ``"difference"`` the largest difference of the
    bfloat16 engine's probabilities from Keras' float32 ones."""
    import keras

    from hpa_keras.classes import CLASS_NAMES
    from hpa_keras.inference.engine import cpu_has_bfloat16, openvino_available
    from hpa_keras.inference.runs import Run
    from hpa_keras.models.task import build_task_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, image_size, image_size, 4)).astype(np.uint8)
    targets = (rng.random((batch_size, CLASSES)) > 0.9).astype(np.float32)
    rates = {}
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        if not train:
            break
        keras.config.set_dtype_policy(policy)
        model, _ = build_task_model(
            name, num_classes=CLASSES, channel_mean=[20.0] * 4, channel_std=[40.0] * 4,
            input_size=image_size,
        )  # fmt: skip
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
        model.train_on_batch(images, targets)  # traces the step
        started = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(images, targets)
        rates[f"train {precision}"] = steps * batch_size / (time.perf_counter() - started)
    keras.config.set_dtype_policy("float32")
    model, _ = build_task_model(
        name, num_classes=CLASSES, channel_mean=[20.0] * 4, channel_std=[40.0] * 4,
        input_size=image_size,
    )  # fmt: skip
    rates["parameters"] = model.count_params()
    fields = rng.integers(0, 256, (count, image_size, image_size, 4)).astype(np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "model.keras")
        run = Run(
            folder=Path(folder), model=model, thresholds=np.full(CLASSES, 0.5),
            class_names=CLASS_NAMES, image_size=image_size,
            channels=("red", "green", "blue", "yellow"),
        )  # fmt: skip
        engines = [("keras", "Keras float32")]
        if openvino_available():
            engines.append(("openvino:float32", "OpenVINO float32"))
            if cpu_has_bfloat16():
                engines.append(("openvino:bfloat16-forced", "OpenVINO bfloat16"))
        outputs = {}
        for engine, label in engines:
            predictor = _predictor(run, engine)
            predictor.predict(fields[:batch_size], verbose=0)
            started = time.perf_counter()
            outputs[label] = np.concatenate([
                np.asarray(predictor.predict(fields[start : start + batch_size], verbose=0))
                for start in range(0, count, batch_size)
            ])  # fmt: skip
            rates[f"predict {label}"] = count / (time.perf_counter() - started)
    if "OpenVINO bfloat16" in outputs:
        gap = np.abs(outputs["OpenVINO bfloat16"] - outputs["Keras float32"]).max()
        rates["difference"] = float(gap)
    return rates


def _predictor(run, engine: str):
    """The run's predictor; ``bfloat16-forced``: the float32 export compiled in bfloat16
    whatever its difference (bench_engine's, which this script shares)."""
    if engine != "openvino:bfloat16-forced":
        return run.predictor(1, engine)
    from bench_engine import compiled_engine  # the script beside this one

    return compiled_engine(run, "bfloat16")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["densenet121", "resnet50", "resnet34"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps")
    parser.add_argument("--images", type=int, default=64, help="fields predicted, timed")
    parser.add_argument("--predict-only", action="store_true", help="skip the training rows")
    arguments = parser.parse_args(argv)
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
        print("PyTorch is not installed: its rows are skipped (pip install torch)")
    sizes = (arguments.image_size, arguments.batch_size, arguments.steps, arguments.images)
    print(
        f"images per second, {arguments.image_size} px, 4 channels, {CLASSES} classes, batch "
        f"{arguments.batch_size}; train: {arguments.steps} steps after one, predict: "
        f"{arguments.images} fields after one batch"
    )
    train = not arguments.predict_only
    for name in arguments.models:
        ours = keras_rates(name, *sizes, train=train)
        print(f"\n{name}: hpa-keras {ours.pop('parameters') / 1e6:.1f} M parameters")
        peer = {}
        if torch_version:
            peer = torch_rates(name, *sizes, train=train)
            print(f"  PyTorch {torch_version}: {peer.pop('origin')}")
        print(
            "  largest bfloat16 difference from float32 probabilities: hpa-keras' engine "
            f"{ours.pop('difference', float('nan')):.1e}, PyTorch's autocast "
            f"{peer.pop('difference', float('nan')):.1e}"
        )
        for task in ("train", "predict"):
            best_peer = max((v for k, v in peer.items() if k.startswith(task)), default=None)
            for key, value in {**ours, **{f"{k} (PyTorch)": v for k, v in peer.items()}}.items():
                if key.startswith(task):
                    ratio = f"{value / best_peer:6.2f}x PyTorch's best" if best_peer else ""
                    print(f"  {key:38} {value:7.1f}  {ratio}")


if __name__ == "__main__":
    main()
