"""Write-time indexing: the index rows of a resource, written with it; reindexing."""
