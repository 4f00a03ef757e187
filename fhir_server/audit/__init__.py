"""The audit trail: every access to the API becomes a FHIR AuditEvent (docs/audit.md).

``record.py``: what the HTTP layer hands over per request (a cheap tuple);
``events.py``: that record -> an R4 AuditEvent (pure); ``writer.py``: the per-process
batching writer that stores them through the normal write path, drained at shutdown.
"""
