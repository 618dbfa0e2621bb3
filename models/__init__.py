"""The activity model: Keras builders, parameter-averaging training on Spark, evaluation, registry.

Not built yet (see the training issue); the streaming job writes the lake it will read.
"""
