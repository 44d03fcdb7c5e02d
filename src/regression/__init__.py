"""Linear and softmax regression, the lesson's models, as importable pieces for the DVC stages."""


class PipelineError(Exception):
    """A failure a stage reports in one clear message (no traceback), exiting non-zero."""
