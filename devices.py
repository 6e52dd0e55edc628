"""Devices, precision and distribution: which GPUs, which mixed-precision policy, which
tf.distribute strategy, and which process of a cluster writes the outputs."""
import os

import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port

# What the speed depends on (README, Performance): the names /proc/cpuinfo gives them.
CPU_FEATURES = {"AVX2": "avx2", "FMA": "fma", "AVX-512": "avx512f", "AVX512-BF16": "avx512_bf16",
                "AMX": "amx_bf16"}


def cpu_features():
    """The CPU's model name and which of CPU_FEATURES it has (Linux; elsewhere unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown CPU", {}
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines
                      if line.startswith("flags")), []))
    return name, {feature: flag in flags for feature, flag in CPU_FEATURES.items()}


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels (tf_environment.py turns them on)."""
    return _pywrap_util_port.IsMklEnabled()


def bfloat16_is_fast():
    """Whether bfloat16 is fast here: the CPU has AVX512-BF16 or AMX, and oneDNN, whose
    kernels use them, is on and not limited below them (ONEDNN_MAX_CPU_ISA=AVX2, the
    benchmark's AVX2 class, cannot run bfloat16 convolutions at all)."""
    _, features = cpu_features()
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    unlimited = limit in ("ALL", "DEFAULT") or any(isa in limit for isa in ("BF16", "AMX", "AVX10"))
    has_bfloat16 = features.get("AVX512-BF16", False) or features.get("AMX", False)
    return has_bfloat16 and unlimited and onednn_enabled()


def configure_devices(gpus=None, mixed_precision=False):
    """Chooses the devices, the precision policy and the distribution strategy.

    gpus: indices of the GPUs to use (the original hard-coded CUDA_VISIBLE_DEVICES).
    Returns (strategy, policy name).
    """
    physical = tf.config.list_physical_devices("GPU")
    if gpus is not None:
        asked = f"--gpus {','.join(map(str, gpus))}"
        if not physical:
            raise ValueError(f"{asked}: TensorFlow sees no GPU on this machine; leave --gpus out "
                             "to train on the CPU")
        missing = [i for i in gpus if not 0 <= i < len(physical)]
        if missing:
            raise ValueError(f"{asked}: this machine has {len(physical)} GPU(s); pick indices "
                             f"0 to {len(physical) - 1}")
        tf.config.set_visible_devices([physical[i] for i in gpus], "GPU")
    visible = tf.config.get_visible_devices("GPU")
    for gpu in visible:  # the original's allow_growth: take memory as needed, not all at once
        tf.config.experimental.set_memory_growth(gpu, True)
    policy = "float32"
    if mixed_precision:
        if visible:
            policy = "mixed_float16"
        elif bfloat16_is_fast():
            policy = "mixed_bfloat16"
    tf.keras.mixed_precision.set_global_policy(policy)
    if "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(visible) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    return strategy, policy


def is_chief():
    """Only the chief writes pictures, metrics and the checkpoints a user keeps, and locks
    the run folder. Read from TF_CONFIG, as MultiWorkerMirroredStrategy reads it, so it is
    known before the strategy is built; without TF_CONFIG this process is the only one."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)
