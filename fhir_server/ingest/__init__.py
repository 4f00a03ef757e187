"""Ingestion: vendor feeds (``mappings``) reconciled into the store, one practitioner at a time.

``run.py`` maps the bytes and reconciles each practitioner's feed; ``reconcile.py`` writes
one feed in one write transaction; ``report.py`` counts what happened and renders it as an
OperationOutcome. The only package of the server (with the CLI) that imports ``mappings``.
See docs/ingest.md.
"""
