"""What the Trainer takes from where it runs: devices and runtime parameters.

On Vertex AI Training the pipeline asks for a machine, and maybe GPUs
(``vertex.training``); the Trainer's ``custom_config`` carries the number of
GPUs asked for (:data:`GPUS_KEY`). A compiled pipeline takes epochs, learning
rate and batch size at submission without recompiling (``twotower submit
--param epochs=10``); they reach ``run_fn`` as ``fn_args.hyperparameters``.
"""
import tensorflow as tf

from trainer.parameters import RUNTIME_PARAMETERS, check_parameters

GPUS_KEY = "twotower_gpus_requested"


class NoGpuError(RuntimeError):
    """GPUs were asked for but TensorFlow sees none."""


def choose_strategy(gpus_requested=0, visible_gpus=None):
    """The ``tf.distribute`` strategy for the devices this process sees.

    Args:
      gpus_requested: GPUs the pipeline asked for (0 locally).
      visible_gpus: ``tf.config.list_physical_devices('GPU')`` (given in tests).

    Returns:
      ``MirroredStrategy`` over every visible GPU when there are two or more
      (each step's batch is split across them and the gradients summed), else
      the default strategy (one device).

    Raises:
      NoGpuError: GPUs were requested and none is visible: training on the CPU
        of a GPU machine would be slow and billed as GPU time.
    """
    gpus = tf.config.list_physical_devices("GPU") if visible_gpus is None else visible_gpus
    if gpus_requested and not gpus:
        raise NoGpuError(
            f"the Trainer asked for {gpus_requested} GPU(s) (vertex.training.accelerator_count) "
            "but TensorFlow sees none: use an image built from a GPU TensorFlow (twotower "
            "image --gpu), or set vertex.training.accelerator_count: 0")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def apply_runtime(spec, values, learning_rate_ceiling=None):
    """``spec`` with the runtime parameters' values (``fn_args.hyperparameters``).

    Each value is checked by the table validation and ``submit --param`` use
    (:mod:`trainer.parameters`) before anything trains: its type, its range
    and, for ``learning_rate``, ``learning_rate_ceiling`` (the config's, from
    META; None when the config allows risky rates).

    Raises:
      ValueError: naming the parameter and the accepted values.
    """
    values = dict(values or {})
    unknown = sorted(set(values) - set(RUNTIME_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown runtime parameter(s) {unknown}; known: "
                         f"{sorted(RUNTIME_PARAMETERS)}")
    out = {section: dict(part) if isinstance(part, dict) else part
           for section, part in spec.items()}
    typed, refused = check_parameters(values, learning_rate_ceiling)
    if refused:
        name, problem = refused[0]
        raise ValueError(f"runtime parameter {name}: {problem}")
    for name, value in typed.items():
        out["training"][RUNTIME_PARAMETERS[name]["key"]] = value
    return out
