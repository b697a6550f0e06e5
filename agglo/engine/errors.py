"""User errors: one line that names the file, row or key, the bad value and what is allowed."""


class UserError(Exception):
    """A mistake in the user's input or configuration; reported without a traceback, exit 2."""
