"""What the two gRPC servers (queue and trainer) share and neither owns: the refusal to serve
an open port, TLS credentials, bearer tokens in metadata, and Prometheus metrics.

It sits just above the contract in the layers (tests/test_layers.py): the queue service and
the trainer both import it, it imports neither, and the thin client never loads it.
"""
