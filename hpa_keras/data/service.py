"""Input processing off the trainer: TensorFlow's tf.data service.

A trainer whose CPU cores cannot decode and augment PNG fields as fast as its
accelerator consumes them can hand that work to other machines: a
*dispatcher* hands out work, *workers* (on any machines that reach the
record files) run the pipeline, and the trainer only receives finished
batches over gRPC. ``fit --data-service grpc://HOST:PORT`` (or
``load_dataset(..., data_service=...)``) sends the training pipeline there;
``hpa-keras data-service`` starts a dispatcher and workers.

The job uses dynamic sharding (``ShardingPolicy.DYNAMIC``, TensorFlow's
"distributed_epoch"): the dispatcher hands each worker record files one at
a time, so every worker reads different records and an epoch of the
workers together still holds each record once; with a fixed seed a
``parallel_epochs`` job would have every worker send the same stream.
Evaluation data stays local: its order must be fixed.
"""

import itertools
import time

from hpa_keras.errors import InputError

_JOB_COUNTER = itertools.count()


def distribute_over(dataset, address: str, job_name: str | None = None):
    """``dataset`` produced by the tf.data service at ``address`` (``grpc://HOST:PORT``).

    Every call makes a new job unless ``job_name`` is given; consumers sharing a
    job name share its records (each record goes to one of them).
    """
    import tensorflow as tf  # lazy: imports TensorFlow

    if "://" not in address:
        address = f"grpc://{address}"
    if not address.startswith("grpc://"):
        raise InputError(f"data_service {address!r}: give grpc://HOST:PORT (the dispatcher)")
    name = job_name or f"hpa-keras-{time.time_ns()}-{next(_JOB_COUNTER)}"
    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=address,
            job_name=name,
        )
    )


class LocalService:
    """A dispatcher and ``workers`` workers in this process (tests, one-machine benchmarks,
    or ``hpa-keras data-service``). ``address`` is the ``grpc://HOST:PORT`` to train against.

    With ``dispatcher`` given (``HOST:PORT`` of a dispatcher elsewhere) only workers start.
    """

    def __init__(
        self, workers: int = 2, port: int = 0, dispatcher: str | None = None, worker_port: int = 0
    ):
        import tensorflow as tf  # lazy: imports TensorFlow

        service = tf.data.experimental.service
        if workers < 0 or (workers == 0 and dispatcher is not None):
            raise InputError(f"--workers {workers}: need at least one worker")
        self.dispatcher = None
        if dispatcher is None:
            self.dispatcher = service.DispatchServer(service.DispatcherConfig(port=port))
            dispatcher = self.dispatcher.target
        host_port = dispatcher.split("://")[-1]
        self.address = f"grpc://{host_port}"
        self.workers = [
            service.WorkerServer(
                service.WorkerConfig(
                    dispatcher_address=host_port,
                    port=worker_port + index if worker_port else 0,
                )
            )
            for index in range(workers)
        ]

    def join(self) -> None:
        """Serve until the process is stopped."""
        if self.dispatcher is not None:
            self.dispatcher.join()
        else:
            self.workers[0].join()
