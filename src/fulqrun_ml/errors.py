"""One exception family, so callers (CLI, server, client SDK) can tell our errors from bugs.

Every message names what is wrong and, where possible, the field, so a user can act on it.
"""


class FulqrunMLError(Exception):
    """Base class of every error this package raises on purpose."""


class DataContractError(FulqrunMLError):
    """CRM tables do not meet the data contract (missing table/column, bad value)."""


class FieldValidationError(FulqrunMLError):
    """A record sent for prediction has a bad field. `field` names it, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field '{field}': {reason}")
        self.field = field
        self.reason = reason


class ExportParityError(FulqrunMLError):
    """The exported graph disagrees with PyTorch beyond the tolerance."""


class RegistryError(FulqrunMLError):
    """A model version is missing, incomplete, or cannot be published."""


class ServingError(FulqrunMLError):
    """The Triton server could not be started, reached, or answered with an error."""
