"""The data-side domain error: an input table or index that cannot be used as given."""

from screening.errors import InputError


class DataError(InputError):
    """A source table, class configuration or index is unusable; the message says what to fix."""
