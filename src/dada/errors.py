"""The one exception type for errors a user can cause.

A missing file, a corrupt image, a bad config key or a wrong checkpoint raises :class:`DadaError` with a
message that names the file or key and says what to do. The CLI prints it without a traceback and exits
with status 2.
"""


class DadaError(Exception):
    """An error caused by the user's input (files, config, checkpoints), with an actionable message."""
