"""Where bytes live: paths, file primitives, the depot, the object store."""
