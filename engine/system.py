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
