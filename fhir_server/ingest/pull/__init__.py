"""Pull mode: the server polls the vendors' sources (feed URLs, SAS FHIR APIs) and ingests
them. ``config`` reads the operator's sources file, ``fetch`` reads a source over HTTP
(conditional GET, mTLS, the SAS slot search and its pages), ``state`` keeps each source's
polling state and lease in the database, ``endpoint`` shows each source as a FHIR Endpoint,
``status`` answers ``$pull-status``, ``scheduler`` runs it all. See docs/pull.md.
"""
