"""Checks for what pip cannot install: system libraries the engine's wheels link against."""

from __future__ import annotations


class SystemLibraryError(RuntimeError):
    pass


def check_system_libraries() -> None:
    """Import open3d once, turning its cryptic loader error into what to install."""
    try:
        import open3d  # noqa: F401
    except ImportError as exc:  # open3d's wheel links libusb-1.0 for RealSense, even when unused
        if "libusb" in str(exc):
            raise SystemLibraryError(
                "open3d needs the system library libusb-1.0, which is missing. Install it with "
                "`sudo apt-get install -y libusb-1.0-0` (Debian/Ubuntu) or your system's package manager."
            ) from exc
        raise


ONNXRUNTIME_BUILDS = ("onnxruntime", "onnxruntime-gpu")


def onnxruntime_builds_problem(installed: set[str] | None = None) -> str | None:
    """A one-line warning when both ONNX Runtime builds are installed (they write the same
    `onnxruntime/` folder, so which one runs depends on install order); None otherwise.

    pip cannot refuse the extras `cpu` and `gpu` together, so the command line says it at start.
    """
    import importlib.metadata

    if installed is None:
        installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions() if d.metadata["Name"]}
    if set(ONNXRUNTIME_BUILDS) <= installed:
        return (
            "both onnxruntime and onnxruntime-gpu are installed and overwrite each other; keep one: "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install -e '.[gpu]' (or '.[cpu]')"
        )
    return None
