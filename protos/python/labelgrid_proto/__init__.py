"""The generated labelgrid contract: protobuf messages and gRPC stubs from `protos/`.

This package sits at the bottom of the layers: every other package imports it and it imports
nothing of ours. Regenerate with `make protos` (never edit by hand).
"""
