"""The research-to-production pipeline that ``dvc repro`` runs: the stage runner
(:mod:`~starry_guide.pipeline.stage`), the notebooks' source views and refresh
(:mod:`~starry_guide.pipeline.sources`, :mod:`~starry_guide.pipeline.refresh`), training and
tracking (:mod:`~starry_guide.pipeline.training`, :mod:`~starry_guide.pipeline.tracking`,
:mod:`~starry_guide.pipeline.mlflow_model`), leave-one-station-out
(:mod:`~starry_guide.pipeline.loso`), champion selection
(:mod:`~starry_guide.pipeline.champion`), the registry
(:mod:`~starry_guide.pipeline.registry`) and production data
(:mod:`~starry_guide.pipeline.production`). It never imports the server."""
