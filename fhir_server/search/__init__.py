"""FHIR search: https://hl7.org/fhir/R4/search.html.

One entry point, ``execute.Searcher.execute``; below it, one subpackage per concern, each
importing only the ones listed after it:

- ``availability``: the per-process agendas that answer the SAS slot search from memory;
- ``query``: the query pipeline (``parse`` -> ``chain`` -> ``plan`` builds SQL, ``run``
  runs what must run first; ``cursor`` pages, ``include`` adds included resources);
- ``indexing``: write-time index rows (``indexer``, ``composites``, ``watch``)
  and ``reindex``;
- ``registry``: the search parameters (R4 table plus the packages' SearchParameters) and
  their FHIRPath expressions (``expressions``).
"""
