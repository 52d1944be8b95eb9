"""The pure core: no files, no network, no registry — arrays and data frames in, numbers out.

:mod:`~starry_guide.core.schema` (the canonical hourly frame), :mod:`~starry_guide.core.astro`
(sun and moon), :mod:`~starry_guide.core.quality` (the one validation policy),
:mod:`~starry_guide.core.features` (the one feature function), :mod:`~starry_guide.core.splits`,
:mod:`~starry_guide.core.models` (the candidates), :mod:`~starry_guide.core.evaluate`,
:mod:`~starry_guide.core.adaptation` (station recalibration), :mod:`~starry_guide.core.gate`
(the champion gate's statistics) and
:mod:`~starry_guide.core.inference` (the one repair -> features -> predict -> adapt chain).
The core imports no other wing (an import-linter contract).
"""
