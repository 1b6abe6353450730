"""Error types shared by the core, the plugins and the CLI.

Every error the engine raises on purpose derives from :class:`KpodError`. The CLI prints
``Error: <message>`` on one line and exits with :attr:`KpodError.exit_code`; a traceback is
shown only with ``--log-level debug``. Exit codes follow podman: 125 for engine errors, 126
when the container command cannot be invoked, 127 when it is not found.
"""

from __future__ import annotations

EXIT_ENGINE = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class KpodError(Exception):
    """Base of every error kpod reports to its user."""

    exit_code = EXIT_ENGINE

    def __init__(self, message: str = "", *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(KpodError):
    """Bad configuration: a file, a key, a value or a flag."""


class PluginError(KpodError):
    """A driver or plugin is missing, fails to import, or does not match the hook specs."""


class InvalidArgument(KpodError):
    """A malformed user input (name, reference, size, option value...)."""


class NotFound(KpodError):
    """A named object (image, container, pod, layer, network) does not exist."""


class AlreadyExists(KpodError):
    """A name or ID is already taken."""


class InUse(KpodError):
    """An object cannot be removed or changed because something still uses it."""


class StorageError(KpodError):
    """The storage driver or the image/layer store failed."""


class InvalidLayer(StorageError):
    """A layer stream is corrupt, truncated, or hostile (path traversal, bad links...)."""


class DigestMismatch(StorageError):
    """Content did not match the digest it was announced with."""


class ImageError(KpodError):
    """An image cannot be read, written or verified."""


class TransportError(KpodError):
    """An image transport (registry, archive, directory) failed."""


class PolicyDenied(KpodError):
    """The signature policy rejected an image."""


class RuntimeFailure(KpodError):
    """The OCI runtime or conmon failed."""


class ContainerStateError(KpodError):
    """An operation is not valid in the container's current state."""


class NetworkError(KpodError):
    """Network setup or teardown failed."""


class LockTimeout(KpodError):
    """A lock could not be taken in time."""
