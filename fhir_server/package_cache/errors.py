"""Errors of the package cache commands: one line each, printed as they are."""

from __future__ import annotations


class InstallError(Exception):
    """A package could not be installed (or a source cannot be used): the message says why."""


class NotHere(Exception):  # an answer, not a failure: the next source is asked
    """This source does not hold the package; the message says what it holds instead."""


class PackageNotFound(InstallError):
    """No source holds the package (rather than a source that failed)."""
