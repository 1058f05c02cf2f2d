"""Robustness to corrupted and low-resolution crops: the corruptions and the benchmark grid.

The paper claims a small network trained on 160x64 input stays accurate on low-resolution, degraded crops
(Section 5). This package measures it the way the field does, after CIL-ReID ("Benchmarks for Corruption
Invariant Person Re-identification", Chen, Wang, Zheng, NeurIPS 2021 Datasets and Benchmarks): 20 corruptions in
four families at five severities, ImageNet-C style (Hendrycks & Dietterich, ICLR 2019), with corrupted query,
corrupted gallery or both, reporting mean rank-1 / mAP / mINP and relative robustness (corrupted / clean); plus
the paper's own axis, low resolution, as a fifth family.

Its modules, each importing only from the ones before it:

* ``pixels``: the conventions every corruption shares (argument checks, seeded generator, float <-> uint8);
* ``noise``, ``blur``, ``weather``, ``digital``: the corruptions of each family, each a pure function
  ``(image HxWx3 uint8, severity 1..5, seed) -> uint8 image`` with its severity table at its top (ImageNet-C's
  constants, spatial ones halved for 128x64 crops; each table says so);
* ``resolution``: ``low_resolution(image, factor)`` and its severity form;
* ``corruptions``: the registry ``CORRUPTIONS``, ``FAMILIES``, ``BENCHMARK`` and each image's seed;
* ``summary``: ``summarize(cells, clean)``, the benchmark's means, pure;
* ``report``: ``report.md``, ``severity.png``, ``contact_sheet.png``;
* ``features``: what the grid embeds with: a model (``evaluate.FeatureExtractor``, any backend) or a feature
  function, e.g. ``ColourHistogramFeatures``, the colour-histogram baseline;
* ``grid``: ``run_robustness``, the grid itself (resumable).
"""

from .corruptions import BENCHMARK, CORRUPTIONS, FAMILIES, LOW_RESOLUTION, corrupt, family_of, image_seed
from .features import ColourHistogramFeatures, model_features
from .grid import CELLS_FILE, SETTINGS, read_cells, run_robustness
from .report import contact_sheet, format_report, format_summary, plot_severity, write_report
from .resolution import LOW_RESOLUTION_FACTORS, low_resolution
from .summary import METRIC_KEYS, summarize

__all__ = [
    "BENCHMARK",
    "CELLS_FILE",
    "CORRUPTIONS",
    "FAMILIES",
    "LOW_RESOLUTION",
    "LOW_RESOLUTION_FACTORS",
    "METRIC_KEYS",
    "SETTINGS",
    "ColourHistogramFeatures",
    "contact_sheet",
    "corrupt",
    "family_of",
    "format_report",
    "format_summary",
    "image_seed",
    "low_resolution",
    "model_features",
    "plot_severity",
    "read_cells",
    "run_robustness",
    "summarize",
    "write_report",
]
