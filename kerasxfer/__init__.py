"""kerasxfer: train a small CNN from scratch or transfer a pretrained RegNet?

The library runs that study end to end on Keras 3 / TensorFlow and writes run
directories that answer it with measured numbers.  Entry points live in
``experiments/``; nothing in this package reads flags or environment
variables: everything a run needs arrives in an :class:`~kerasxfer.config.Experiment`.
"""

__version__ = "0.1.0"
