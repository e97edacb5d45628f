"""Domain errors raised by the screening library; the CLI turns each into one line and an exit code."""


class ScreeningError(Exception):
    """Base class of every error the CLI reports as a one-line message."""

    exit_code = 1


class InputError(ScreeningError):
    """The images folder or an option is unusable before any work starts."""

    exit_code = 2


class MetadataError(InputError):
    """The patient metadata CSV cannot be used at all (unreadable, no key column)."""

    exit_code = 2


class OutputError(InputError):
    """The output location cannot be written (folder unwritable, disk full, a planted link)."""

    exit_code = 2


def describe_os_error(error: OSError) -> str:
    """``strerror: filename`` of an OSError, in one line."""
    reason = error.strerror or str(error)
    return f"{reason}: {error.filename}" if error.filename else reason


class BundleError(ScreeningError):
    """The model bundle is missing, malformed, or does not match its manifest."""

    exit_code = 3


class BackendUnavailable(ScreeningError):
    """The requested inference backend cannot run on this machine."""

    exit_code = 4


class OutputLocked(ScreeningError):
    """Another run is writing the same output file."""

    exit_code = 5


class FidelityError(ScreeningError):
    """FP16 engines disagree with the FP32 reference beyond the verification limits."""

    exit_code = 6
