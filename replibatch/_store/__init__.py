"""What replibatch keeps on disk: the result cache, pending markers, the content-addressed file store."""
