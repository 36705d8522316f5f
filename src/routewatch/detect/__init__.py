"""PURE: decide after every run whether a route got worse (STATISTICS.md has the maths).

``baseline`` picks what a run is compared with, ``sigma``, ``paired`` and ``cusum`` are
the detectors, ``budget`` splits the false-alarm budget, and ``findings`` puts them
together; ``dist`` has the distribution functions they use, without ``scipy.stats``.
Everything here takes plain values and returns plain values.
"""
