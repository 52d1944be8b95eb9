"""The living documentation: pages generated from the pipeline's outputs
(:mod:`~starry_guide.docs.pages`, the ``docs`` stage) and the MkDocs hook
(:mod:`~starry_guide.docs.hooks`)."""
