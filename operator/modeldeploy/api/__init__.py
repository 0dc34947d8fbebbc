"""The operator's vocabulary, pure values: the typed spec and status, revisions, conditions, labels, names.

Nothing here does I/O or imports kopf or the Kubernetes client; every other layer builds on it.
"""
