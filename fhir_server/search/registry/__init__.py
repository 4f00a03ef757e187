"""The search parameters: the R4 table and those of the installed FHIR packages."""
