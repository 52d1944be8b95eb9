"""Getting real data in: station files of every supported format onto the canonical hourly
frame (:mod:`~starry_guide.ingest.stations`, parsing left to :mod:`pvlib.iotools`) and the
pinned, hash-checked packaged station files (:mod:`~starry_guide.ingest.packaged`, the only
download)."""
