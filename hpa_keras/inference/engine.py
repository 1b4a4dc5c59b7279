"""Prediction through an inference engine exported from the run's model: OpenVINO on CPUs.

On a CPU, Keras on TensorFlow predicts at about half of what PyTorch users get, while the
same model exported by Keras (``model.export(format="openvino")``) and run by OpenVINO
predicts faster than either, and faster still in bfloat16 where the CPU has it
(``python benchmarks/bench_engine.py``; docs/results.md). So prediction goes through
OpenVINO where it is installed (``pip install hpa-keras[openvino]``) and the Keras model
otherwise, or where asked (``--engine keras``).

What is exported is exactly what Keras would predict with: the model wrapped in its
dihedral views and tiles (:func:`~hpa_keras.inference.tta.with_tta`), one artifact per
view count, so TTA and tiles stay what they are. The artifact is cached in the run folder
(``engine/views-V/``, with ``engine.json`` saying which model it was made from, by its
digest, and with what precision) and rebuilt when ``model.keras`` changes; a run folder
that cannot be written keeps it in a temporary folder for the process.

Precision: float32, or bfloat16 where the CPU has it and the probabilities stay within
half of :data:`MAX_DIFFERENCE` of the float32 Keras model's on the first
:data:`CHECK_IMAGES` images predicted (:data:`CHECK_MARGIN`: room for the images the
check did not see; the check is made once,
when the engine is exported, and kept in ``engine.json``; a model that fails it predicts
in float32). A model's decisions hang on thresholds, so a
difference that moves a probability across one is a changed label: the benchmark counts
them.
"""

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hpa_keras.atomic import write_text_atomic
from hpa_keras.errors import InputError, warn
from hpa_keras.runs.files import ENGINE_FILE, ENGINE_FOLDER, MODEL_FILE

ENGINES = ("auto", "openvino", "keras")
PRECISIONS = ("auto", "float32", "bfloat16")
# The largest difference from the float32 Keras model's probabilities that bfloat16 may
# make on the check images; beyond it the engine predicts in float32.
MAX_DIFFERENCE = 1e-3
# The images an export is checked on: the first ones predicted.
CHECK_IMAGES = 64
# ``auto`` takes bfloat16 only when the check images' largest difference is under this
# share of MAX_DIFFERENCE: the largest difference over more images than the check's is
# larger (tests/test_engine.py caught a tiny model within the bound on its first batch
# and beyond it on the rest).
CHECK_MARGIN = 0.5
ARTIFACT = "model.xml"  # and model.bin beside it


# The environment variable that sets the engine where none is given (as KERAS_BACKEND sets
# Keras' backend): for a notebook, a cluster job, or a test suite that wants the reference.
ENGINE_VARIABLE = "HPA_KERAS_ENGINE"


def default_engine(engine: str | None = None) -> str:
    """``engine`` when given, else ``$HPA_KERAS_ENGINE`` (checked, the variable named),
    else ``"auto"``."""
    if engine is not None:
        return engine
    given = os.environ.get(ENGINE_VARIABLE) or "auto"
    try:
        parse_engine(given)
    except InputError as error:
        raise InputError(f"${ENGINE_VARIABLE}={given!r}: {error}") from None
    return given


# What each engine predictor of this process ended up using, by (run folder, views): its
# record, or None where the export failed and Keras predicted (engine_description).
_OUTCOMES: dict[tuple[str, int], "EngineRecord | None"] = {}


def openvino_available() -> bool:
    """Whether OpenVINO imports (the ``openvino`` extra)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def parse_engine(spec: str) -> tuple[str, str]:
    """``"auto"``, ``"keras"``, ``"openvino"``, optionally with ``:float32`` or ``:bfloat16``
    (the precision; default ``auto``), as ``(engine, precision)``, checked
    (:func:`check_engine`)."""
    engine, _, precision = str(spec).partition(":")
    precision = precision or "auto"
    check_engine(engine, precision)
    return engine, precision


def check_engine(engine: str, precision: str = "auto") -> None:
    """An engine and precision the user may ask for; InputError naming the option else."""
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if engine == "openvino" and not openvino_available():
        raise InputError(
            "--engine openvino: OpenVINO is not installed; pip install 'hpa-keras[openvino]' "
            "(or --engine keras)"
        )


def uses_openvino(engine: str) -> bool:
    """``engine`` resolved: OpenVINO when asked, or with ``auto`` where it is installed and
    Keras runs on TensorFlow (the export path this package tests)."""
    if engine == "keras":
        return False
    if engine == "openvino":
        return True
    import keras  # lazy: imports TensorFlow

    return keras.backend.backend() == "tensorflow" and openvino_available()


def cpu_has_bfloat16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bfloat16 on this CPU (AVX-512 BF16, AMX)."""
    import openvino  # lazy: the optional extra

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in capabilities


@dataclass(frozen=True)
class EngineRecord:
    """An exported engine's ``engine.json``: what it was made from and how it predicts."""

    model_sha256: str
    views: int
    tiles: int
    precision: str  # what it predicts in: float32 or bfloat16
    reason: str  # why that precision
    checked_images: int
    float32_difference: float  # the float32 engine against Keras on the check images
    bfloat16_difference: float | None  # bfloat16 against Keras (None: not tried)
    openvino_version: str

    @classmethod
    def read(cls, path: Path) -> "EngineRecord | None":
        """The record, or None when it is missing or unreadable (the engine is then rebuilt)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def model_digest(run_folder: Path) -> str:
    """The sha256 of the run's ``model.keras``: an engine serves the model it came from."""
    digest = hashlib.sha256()
    with open(run_folder / MODEL_FILE, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EnginePredictor:
    """A compiled OpenVINO model with the one method prediction calls: ``predict``.

    Built lazily: the first ``predict`` exports the engine (or reads the cached one), with
    its first CHECK_IMAGES images as the check images for bfloat16.
    """

    def __init__(
        self, run, views: int, keras_predictor, precision: str = "auto", required: bool = False
    ):
        if run.members:
            raise ValueError("an engine serves one run; predict a cv's folds one by one")
        self.run = run
        self.views = views
        self.keras_predictor = keras_predictor
        self.requested = precision
        self.required = required
        self.compiled = None
        self.record: EngineRecord | None = None

    def predict(self, images, verbose=0) -> np.ndarray:
        """Probabilities of ``images`` (an array, or a tf.data dataset of image batches).

        The first :data:`CHECK_IMAGES` images are the export's check images. Where the
        export fails (a layer OpenVINO cannot convert), an engine chosen by ``auto`` warns
        and predicts with Keras; one asked for by name raises."""
        if self.compiled is False:
            return self.keras_predictor.predict(images, verbose=verbose)
        batches = images.as_numpy_iterator() if hasattr(images, "as_numpy_iterator") else [images]
        outputs, waiting = [], []
        for batch in batches:
            if self.compiled is None:
                waiting.append(batch)
                if sum(map(len, waiting)) < CHECK_IMAGES:
                    continue
                if not self._prepared(np.concatenate(waiting)[:CHECK_IMAGES]):
                    return self.keras_predictor.predict(images, verbose=verbose)
                outputs.extend(self._run(part) for part in waiting)
                waiting = []
                continue
            outputs.append(self._run(batch))
        if waiting:  # fewer images than the check takes: they are the check
            if not self._prepared(np.concatenate(waiting)):
                return self.keras_predictor.predict(images, verbose=verbose)
            outputs.extend(self._run(part) for part in waiting)
        if not outputs:
            return np.zeros((0, self.run.num_classes), np.float32)
        return np.concatenate(outputs)

    def _run(self, batch) -> np.ndarray:
        return np.asarray(self.compiled(batch)[0], dtype=np.float32)

    def _prepared(self, check_images) -> bool:
        """Export or load the engine; False (warned) where an ``auto`` export failed."""
        try:
            self._prepare(check_images)
        except InputError:
            raise
        except Exception as error:
            if self.required:
                raise
            warn(
                f"{self.run.folder}: exporting the model to OpenVINO failed "
                f"({type(error).__name__}: {str(error)[:200]}); predicting with Keras"
            )
            self.compiled = False
            _OUTCOMES[(str(self.run.folder), self.views)] = None
            return False
        _OUTCOMES[(str(self.run.folder), self.views)] = self.record
        return True

    def _prepare(self, check_images: np.ndarray) -> None:
        import openvino  # lazy: the optional extra

        folder = engine_folder(self.run.folder, self.views)
        digest = model_digest(self.run.folder)
        record = EngineRecord.read(folder / ENGINE_FILE)
        usable = (
            record is not None
            and record.model_sha256 == digest
            and record.openvino_version == openvino.__version__
            and (folder / ARTIFACT).is_file()
            and self.requested in ("auto", record.precision)
        )
        if not usable:
            folder, record = export_engine(
                self.run, self.views, self.keras_predictor, check_images, digest, self.requested
            )
        core = openvino.Core()
        hint = "bf16" if record.precision == "bfloat16" else "f32"
        self.compiled = core.compile_model(
            str(folder / ARTIFACT), "CPU", {"INFERENCE_PRECISION_HINT": hint}
        )
        self.record = record


def engine_description(folders, views: int, engine: str | None = None) -> str:
    """What predicted ``folders`` with ``views`` views in this process: ``"Keras"``, or
    ``"OpenVINO (float32: why)"`` from the records their engine predictors kept (a run
    folder that could not be written included)."""
    name, _ = parse_engine(default_engine(engine))
    if not uses_openvino(name):
        return "Keras"
    outcomes = [_OUTCOMES.get((str(folder), views)) for folder in folders]
    if not outcomes or any(outcome is None for outcome in outcomes):
        return "Keras (the OpenVINO export failed)"
    reasons = sorted({f"{outcome.precision}: {outcome.reason}" for outcome in outcomes})
    return f"OpenVINO ({'; '.join(reasons)})"


def engine_folder(run_folder: Path, views: int) -> Path:
    return Path(run_folder) / ENGINE_FOLDER / f"views-{views}"


def _export(predictor, image_shape, dtype, target: Path) -> None:
    import tensorflow as tf  # lazy: imports TensorFlow

    signature = [tf.TensorSpec((None, *image_shape), dtype, name="images")]
    predictor.export(
        str(target / ARTIFACT), format="openvino", input_signature=signature, verbose=False
    )


def export_engine(run, views, keras_predictor, check_images, digest, requested="auto"):
    """Export the run's predictor for ``views`` to OpenVINO, choose its precision on
    ``check_images`` and keep both in the run folder (a temporary folder where the run
    folder cannot be written). Returns ``(folder, record)``."""
    import openvino  # lazy: the optional extra

    check_images = np.asarray(check_images)
    reference = np.asarray(keras_predictor.predict(check_images, verbose=0), np.float64)
    staging = Path(tempfile.mkdtemp(prefix="hpa-keras-engine-"))
    _export(keras_predictor, check_images.shape[1:], check_images.dtype, staging)
    core = openvino.Core()
    differences = {}
    for name, hint in (("float32", "f32"), ("bfloat16", "bf16")):
        if name == "bfloat16" and (requested == "float32" or not cpu_has_bfloat16()):
            continue
        compiled = core.compile_model(
            str(staging / ARTIFACT), "CPU", {"INFERENCE_PRECISION_HINT": hint}
        )
        differences[name] = float(np.abs(np.asarray(compiled(check_images)[0]) - reference).max())
    precision, reason = _choose_precision(requested, differences)
    record = EngineRecord(
        model_sha256=digest,
        views=int(views),
        tiles=int(run.tiles),
        precision=precision,
        reason=reason,
        checked_images=len(check_images),
        float32_difference=differences["float32"],
        bfloat16_difference=differences.get("bfloat16"),
        openvino_version=openvino.__version__,
    )
    write_text_atomic(staging / ENGINE_FILE, json.dumps(asdict(record), indent=1) + "\n")
    folder = engine_folder(run.folder, views)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except OSError:  # a read-only run folder: this process's copy only
        atexit.register(shutil.rmtree, staging, ignore_errors=True)
        return staging, record
    return folder, record


def _choose_precision(requested: str, differences: dict) -> tuple[str, str]:
    if requested == "float32":
        return "float32", "asked for float32"
    if "bfloat16" not in differences:
        if requested == "bfloat16":
            raise InputError("--precision bfloat16: this CPU has no bfloat16 (AVX-512 BF16 or AMX)")
        return "float32", "the CPU has no bfloat16"
    gap = differences["bfloat16"]
    if gap <= MAX_DIFFERENCE * (1.0 if requested == "bfloat16" else CHECK_MARGIN):
        return "bfloat16", f"bfloat16 within {MAX_DIFFERENCE:g} of float32 Keras ({gap:.1e})"
    if requested == "bfloat16":
        raise InputError(
            f"--precision bfloat16: its probabilities differ from the float32 model's by {gap:.1e} "
            f"(more than {MAX_DIFFERENCE:g}) on the first images; use --precision auto or float32"
        )
    limit = MAX_DIFFERENCE * CHECK_MARGIN
    return "float32", f"bfloat16 differed by {gap:.1e}, more than {limit:g} (half the bound)"
