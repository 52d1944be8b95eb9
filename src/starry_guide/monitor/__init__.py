"""Monitoring on production traffic: realised performance, drift, data quality, a verdict.

Inputs are a snapshot of the serving store (:func:`load_production` reads the Parquet files
that ``starry store snapshot`` writes under ``data/production/``) and a *reference*: what the
champion was built and evaluated on (:func:`build_reference`). Everything is computed per
station and per time **chunk** (a week by default, Monday 00:00 UTC), as NannyML does:

* **realised performance** once labels arrived (the observed opaque cover at a prediction's
  target hour is its truth): Brier score, the Brier score the served probabilities *promise*
  (mean p(1 - p), what the Brier score would be if they were calibrated), their difference
  (the *Brier excess*), BSS against calibrated persistence fitted on the training months (the
  champion gate's baseline), reliability, accuracy / precision / recall at the served
  threshold, and the count of labelled predictions;
* **feedback agreement**: users' reports (clear / partly / cloudy) against the sensor's
  category at that hour and against the forecast;
* **data drift** of the served features, and **prediction drift** of the served P(clear):
  the Jensen-Shannon distance of each chunk's histogram (on the reference's deciles, plus a
  bin for missing values) to the whole reference's;
* **data quality** per station, sensor and chunk: missing values and stuck sensors.

No threshold is a fixed band. Each comes from the reference's own chunk-to-chunk variation:
the reference is cut into the same chunks, the statistic computed on each, and an alert needs
``mean + threshold_sigma x std`` of those reference values (NannyML's default rule). Weekly
weather makes single chunks noisy, so an alert also has to be *sustained*: drift in
``drift_consecutive_chunks`` consecutive chunks; the Brier excess averaged over the last
``performance_window_chunks`` chunks (its threshold shrinks with the square root of the
window) above its threshold in ``performance_consecutive_chunks`` consecutive chunks.

The **verdict** ``retrain_recommended`` is driven by realised performance first: a sustained
performance alert recommends retraining, unless a data-quality alert on the label's sensor
explains it (then the sensor needs fixing, not the model). Drift alone is an early warning
(status ``drift``), and drift of features whose sensor has a data-quality alert is attributed
to that sensor.

The wing's modules: :mod:`~starry_guide.monitor.statistics` (chunks, histograms,
thresholds), :mod:`~starry_guide.monitor.reference_period` (the snapshot and the reference),
:mod:`~starry_guide.monitor.checks` (performance, drift, data quality, feedback),
:mod:`~starry_guide.monitor.verdict` (the verdict and the whole run) and
:mod:`~starry_guide.monitor.report` (figures). All but reading the snapshot is pure
computation on data frames.
"""
