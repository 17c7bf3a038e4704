"""The one base class of the errors nfinpaint raises for input it cannot use.

Every such error (a bad option, config, image, data folder, checkpoint or
generator file, a method that cannot run here, a training that diverged) is a
:class:`NfinpaintError` subclass defined next to the code that raises it, and
keeps the built-in base it had (``ValueError``, ``RuntimeError``) for callers
that catch those.  Every command prints an ``NfinpaintError`` as one
``error: ...`` line and exits with status 2 (:func:`nfinpaint.cli.main`), so a
command lists no error types of its own.
"""
from __future__ import annotations


class NfinpaintError(Exception):
    """Input or state nfinpaint cannot use, with a message that says what to do (one line first)."""
