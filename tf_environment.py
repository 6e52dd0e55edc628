"""What TensorFlow reads from the environment when it starts: set here, before anything
imports it. run.py, benchmark.py and the tests import this module first; a variable the
user has set is left as it is."""
import contextlib
import os
import sys

# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512-VNNI, AVX512-BF16
# or AMX. Elsewhere (most laptops: AVX2 and FMA) its built-in kernels, compiled for AVX
# without FMA, run the default train step at half the speed (README, Performance).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# TensorFlow's C++ start-up lines (oneDNN, CPU features, and "failed call to cuInit" on every
# machine without a GPU, which reads as a failure) are silenced unless the user set
# TF_CPP_MIN_LOG_LEVEL. TensorFlow 2.21 logs them through absl before it reads that variable,
# so the level alone does not stop them: native stderr is parked while they are written.
QUIET_NATIVE_LOGS = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_native_logs():
    """Sends what C++ code writes to file descriptor 2 to /dev/null (Python's own errors are
    raised as exceptions and printed after it)."""
    if not QUIET_NATIVE_LOGS:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
