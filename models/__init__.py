"""The activity model: Keras builders, parameter-averaged training on Spark, evaluation, registry.

``build`` makes the models from configuration, ``averaging`` holds the numpy maths of parameter
averaging, ``partial`` is what a Spark task runs, ``runners`` ship it to partitions, ``trainer``
runs the rounds of both phases, ``job`` turns a lake into a registry version, ``schedule``
retrains periodically, and ``registry`` keeps the versions and the promoted pointer.
"""
