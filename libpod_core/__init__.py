"""libpod_core: the core of kpod, a daemonless container engine built from plugins.

Plugin authors import :data:`hookimpl` from here; programs use :class:`Runtime`.
Both are resolved lazily so that ``import libpod_core`` costs nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"
API_VERSION = "0.1.0"

__all__ = ["Runtime", "hookimpl", "KpodError", "__version__", "API_VERSION"]


def __getattr__(name: str):
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("kpod")
        globals()["hookimpl"] = marker
        return marker
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    if name == "KpodError":
        from .errors import KpodError

        return KpodError
    raise AttributeError(f"module 'libpod_core' has no attribute {name!r}")
