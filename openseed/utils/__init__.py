"""utils: small helpers with no dependency on the rest of `openseed` (a leaf of the import graph)."""
