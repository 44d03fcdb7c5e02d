"""Linear and softmax regression, the lesson's models, as importable pieces for the DVC stages."""

from regression import numerics

# Before any module of the package imports torch: see regression.numerics.
numerics.pin()


class PipelineError(Exception):
    """A failure a stage reports in one clear message (no traceback), exiting non-zero."""
