"""The ``replibatch`` command line."""
