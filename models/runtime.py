"""TensorFlow inside Spark tasks: one thread per task, configured once per Python worker."""

from __future__ import annotations

_configured = False


def limit_tensorflow_threads() -> None:
    """One thread per task: Spark runs one task per core, and TF must not fight it for them."""
    global _configured
    if _configured:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF already initialised in this process (e.g. the driver): keep it
        pass
    _configured = True
