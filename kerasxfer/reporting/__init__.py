"""Reporting: every answer kerasxfer writes from finished run directories (no TensorFlow).

* :mod:`~kerasxfer.reporting.runs`: finished run directories loaded for a report (figures recomputed from
  the stored predictions, fold runs pooled, comparability checked);
* :mod:`~kerasxfer.reporting.stats`: McNemar, the paired permutation test and bootstrap interval, Wilson,
  Holm, balanced accuracy, macro-F1, the majority baseline, test images needed;
* :mod:`~kerasxfer.reporting.verdict`: contenders and controls, the decision and its sentences;
* :mod:`~kerasxfer.reporting.folds`: fold runs pooled into out-of-fold predictions;
* :mod:`~kerasxfer.reporting.compare_report`: ``make compare``'s report (tables, sentences, ``summary.json``);
* :mod:`~kerasxfer.reporting.sweep_report`: a sweep's ``sweep.csv``, sentences and curves;
* :mod:`~kerasxfer.reporting.text`: the markdown/CSV helpers and the words both reports share.

The pictures are drawn by :mod:`kerasxfer.figures`.
"""
