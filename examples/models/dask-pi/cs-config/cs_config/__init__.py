"""C/S interface of the cs-examples/Dask-Pi model (see functions.py)."""
