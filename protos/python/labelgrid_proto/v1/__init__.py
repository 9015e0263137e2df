"""`labelgrid.v1`: generated from protos/labelgrid/v1/*.proto by `make protos`."""
