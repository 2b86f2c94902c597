"""The artifact contract: what the pipeline writes and the server reads, in the one place both import.

``components/`` (the pipeline's steps) writes model folders; ``serving/`` (the model server) reads
them. Neither side may import the other: the server image would otherwise carry pipeline code and
a change to a step could silently change what the server accepts. Whatever both must agree on
lives here, and this package imports neither side (tests/test_layout.py enforces both rules):

- ``contract.files``: the format version, the file names of a model folder, and the helpers that
  read them (feature names from the schema, the model files KServe would take);
- ``contract.modelformat`` / ``contract.trusted_types``: the skops model file and the types it may name;
- ``contract.store``: the MINIO_* object-store settings (the server turns them into kserve_storage's);
- ``contract.settings``: the one boolean parser for settings (0/1/true/false/yes/no/on/off);
- ``contract.errors``: the error base of the project and the object-store errors those raise.
"""
