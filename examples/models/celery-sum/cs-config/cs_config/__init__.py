"""C/S interface of the cs-examples/Celery-Sum model (see functions.py)."""
