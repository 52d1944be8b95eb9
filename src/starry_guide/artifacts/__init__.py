"""What the pipeline and the service share, each with one owner: the bundle
(:mod:`~starry_guide.artifacts.bundle` reads and verifies it,
:mod:`~starry_guide.artifacts.onnx_export` writes it), the champion card
(:mod:`~starry_guide.artifacts.champion_card`) and its lineage
(:mod:`~starry_guide.artifacts.lineage`), the serving store's snapshot schema and reader
(:mod:`~starry_guide.artifacts.snapshot`), and stable JSON/CSV files swapped in whole
(:mod:`~starry_guide.artifacts.reports`)."""
