"""The shared cache: a remote store on any fsspec filesystem, its index, trust, and moving results to and from it."""
