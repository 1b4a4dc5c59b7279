"""Where training runs: the Keras backend, one process or several, each process's share.

Keras 3 trains the same models on TensorFlow, JAX or PyTorch; the input
pipeline is tf.data on every backend. Two ways to use more than one device:

- one host, several GPUs: ``strategy: mirrored``, TensorFlow's
  ``MirroredStrategy`` on the TensorFlow backend, ``keras.distribution.DataParallel``
  over the local devices on JAX;
- several hosts (``fit --distributed``): JAX only. Keras 3's distribution API
  runs data-parallel training over all processes' devices
  (``keras.distribution.initialize`` starts ``jax.distributed``); with the
  TensorFlow backend ``MultiWorkerMirroredStrategy`` + ``model.fit`` is broken
  in Keras 3 (keras-team/keras#20585, open), so it is refused with that reason.

In a multi-process run every process reads its own share of the shards
(shard ``i`` goes to process ``i % N``), feeds ``batch_size / N`` samples per
step (Keras assembles the global batch from the processes' local batches),
and joins every collective step; only process 0 writes the run folder, the
others write into a scratch folder that is thrown away.
"""

import contextlib
import dataclasses

import numpy as np

from hpa_keras.errors import InputError

# How cluster schedulers and Keras name the process group; JAX itself also
# detects Slurm, Open MPI, Kubernetes (JobSet) and Cloud TPU VMs when none is set.
ENVIRONMENT_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)

_TENSORFLOW_MULTI_HOST = (
    "multi-host training needs the JAX backend (KERAS_BACKEND=jax, with jax installed: "
    "pip install 'jax[cuda12]' on GPUs, 'jax[cpu]' on CPUs): with TensorFlow, "
    "MultiWorkerMirroredStrategy + model.fit is broken in Keras 3 (keras-team/keras#20585); "
    "on one host use --strategy mirrored"
)


def backend() -> str:
    """The Keras backend of this process: ``tensorflow``, ``jax`` or ``torch``."""
    import keras  # lazy: imports TensorFlow

    return keras.backend.backend()


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run trains: its backend, the processes, and the object that spreads a batch.

    ``strategy`` is a ``tf.distribute`` strategy (TensorFlow backend) and
    ``distribution`` a ``keras.distribution`` one (JAX); at most one is set.
    """

    backend: str
    process_count: int = 1
    process_index: int = 0
    replicas: int = 1
    strategy: object = None
    distribution: object = None

    @property
    def is_chief(self) -> bool:
        """The process that writes the run folder and prints."""
        return self.process_index == 0

    def scope(self):
        """The context to build and compile the model in."""
        if self.strategy is not None:
            return self.strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        return contextlib.nullcontext()


def make_placement(strategy: str = "default", distributed: bool = False) -> Placement:
    """The placement of ``fit``'s settings ``strategy`` and ``distributed``.

    ``distributed`` expects :func:`initialize_processes` to have run (the CLI
    does it from ``--coordinator`` and friends or the scheduler's variables).
    """
    name = backend()
    if distributed:
        if name != "jax":
            raise InputError(f"distributed: {_TENSORFLOW_MULTI_HOST}")
        import jax  # lazy: an optional dependency
        import keras  # lazy: imports TensorFlow

        # (strategy mirrored with distributed is refused by TrainingConfig.validate)
        devices = keras.distribution.list_devices()
        distribution = keras.distribution.DataParallel(devices=devices)
        return Placement(
            name, jax.process_count(), jax.process_index(), len(devices), None, distribution
        )
    if strategy == "default":
        if name == "tensorflow":
            import tensorflow as tf  # lazy: imports TensorFlow

            return Placement(name, strategy=tf.distribute.get_strategy())
        return Placement(name)
    if name == "tensorflow":
        import tensorflow as tf  # lazy: imports TensorFlow

        # Without GPUs: the logical CPU devices (one unless the process configured more).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        mirrored = tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
        return Placement(name, replicas=mirrored.num_replicas_in_sync, strategy=mirrored)
    if name == "jax":
        import jax  # lazy: an optional dependency
        import keras  # lazy: imports TensorFlow

        devices = [f"{device.platform}:{device.id}" for device in jax.local_devices()]
        distribution = keras.distribution.DataParallel(devices=devices)
        return Placement(name, replicas=len(devices), distribution=distribution)
    raise InputError(f"strategy mirrored: not available on the {name} backend; use default")


def initialize_processes(coordinator=None, num_processes=None, process_id=None) -> None:
    """Join the process group (once per interpreter): ``keras.distribution.initialize``.

    Arguments not given come from ``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
    ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``,
    or from JAX's detection of the cluster (Slurm, Open MPI, Kubernetes,
    Cloud TPU). CPU devices of several processes talk through gloo.
    """
    if backend() != "jax":
        raise InputError(f"--distributed: {_TENSORFLOW_MULTI_HOST}")
    import jax  # lazy: an optional dependency
    import keras  # lazy: imports TensorFlow

    if jax.distributed.is_initialized():
        return
    if (num_processes is None) != (process_id is None):
        raise InputError("--num-processes and --process-id: give both or neither")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise InputError(f"--process-id {process_id}: must be in 0..{num_processes - 1}")
    if coordinator is not None and ":" not in coordinator:
        raise InputError(f"--coordinator {coordinator!r}: give HOST:PORT (process 0's address)")
    with contextlib.suppress(AttributeError, ValueError):  # newer JAX: gloo is the default
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(
        job_addresses=coordinator, num_processes=num_processes, process_id=process_id
    )


def process_share(items, process_count: int = 1, process_index: int = 0) -> list:
    """Process ``process_index``'s share of ``items``: every ``process_count``-th from its index."""
    items = list(items)
    if process_count > 1 and len(items) < process_count:
        raise InputError(
            f"{len(items)} shards cannot feed {process_count} processes: remake the records "
            "with at least as many (make-tfrecords --num-shards, or a smaller --shard-size-mb)"
        )
    return items[process_index::process_count]


def replica_count(model) -> int:
    """How many replicas a model's batches are split over (1 without a strategy)."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        return strategy.num_replicas_in_sync
    if backend() == "jax":
        import keras  # lazy: imports TensorFlow

        distribution = keras.distribution.distribution()
        if distribution is not None:
            return int(np.prod(distribution.device_mesh.shape))
    return 1


def process_count() -> int:
    """The processes of this run (1 unless a JAX process group was joined)."""
    if backend() != "jax":
        return 1
    import jax  # lazy: an optional dependency

    return jax.process_count()


def process_index() -> int:
    """This process's index in the run (0 unless a JAX process group was joined)."""
    if backend() != "jax":
        return 0
    import jax  # lazy: an optional dependency

    return jax.process_index()


def model_scope(model):
    """The context a model was built in, to build more layers around it."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def predict_across_processes(model, dataset):
    """``(labels, scores)`` of every process's share of ``dataset``, gathered on every process.

    ``dataset`` is this process's finite share of ``(images, labels)``
    batches, of known length (``load_dataset(..., training=False)``).
    ``model.predict`` cannot fetch outputs that span other processes'
    devices, so each process predicts its own batches with
    ``predict_on_batch``, as many steps as the longest share needs (shorter
    shares and short batches are padded with zero images, so every step runs
    the same program on every process), and the results are all-gathered in
    process order.
    """
    from jax.experimental import multihost_utils  # lazy: an optional dependency

    def largest(value: int) -> int:
        return int(np.max(multihost_utils.process_allgather(np.asarray([value], np.int64))))

    local_steps = int(dataset.cardinality())
    if local_steps < 0:
        raise ValueError("predict_across_processes needs a dataset of known length")
    iterator = iter(dataset)
    pending = next(iterator, None)
    spec_images, spec_labels = dataset.element_spec[:2]
    steps = largest(local_steps)
    batch_size = largest(1 if pending is None else int(pending[0].shape[0]))
    image_shape = tuple(spec_images.shape[1:])
    num_classes = int(spec_labels.shape[-1])
    scores, labels = [], []
    for _ in range(steps):
        if pending is None:
            images = np.zeros((batch_size, *image_shape), spec_images.dtype.as_numpy_dtype)
            real = 0
        else:
            images, targets = np.asarray(pending[0]), np.asarray(pending[1], np.float32)
            real = len(images)
            labels.append(targets)
            if real < batch_size:
                padding = np.zeros((batch_size - real, *images.shape[1:]), images.dtype)
                images = np.concatenate([images, padding])
        outputs = np.asarray(model.predict_on_batch(images), np.float32)
        scores.append(outputs[:real])
        pending = next(iterator, None)
    local_scores = _rows(scores, num_classes)
    counts = np.asarray(
        multihost_utils.process_allgather(np.asarray([len(local_scores)], np.int64))
    ).reshape(-1)
    return (
        _gather_rows(_rows(labels, num_classes), counts),
        _gather_rows(local_scores, counts),
    )


def _rows(parts, width: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


def _gather_rows(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Every process's ``rows`` (of ``counts`` lengths), concatenated in process order."""
    from jax.experimental import multihost_utils  # lazy: an optional dependency

    padded = np.zeros((int(counts.max()), rows.shape[1]), np.float32)
    padded[: len(rows)] = rows
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return np.concatenate([gathered[index, :size] for index, size in enumerate(counts)])


def barrier(name: str) -> None:
    """Wait until every process of the run reaches this point (no-op in one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils  # lazy: an optional dependency

        multihost_utils.sync_global_devices(name)
