"""lookinside: sweeps of the Why & When Deep Learning Works studies on Ray, with Arrow results."""
__version__ = "0.1.0"
