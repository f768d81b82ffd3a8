"""What the pinned chart's hub image (k8s-hub:0.11.1, Python 3.8) gave its z2jh.py that the lab's
Python 3.11 does not: Python 3.8's `collections` aliases of the `collections.abc` classes (removed
in 3.10); z2jh.py does `from collections import Mapping`. On the PYTHONPATH of that image's
containers only (lab.apps.images).
"""
import collections
import collections.abc

for _name in collections.abc.__all__:
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
