"""The daemon Spark's executors fork their Python workers from: PySpark's own, on a leaner path.

Spark puts ``pyspark.zip``, py4j's source zip and the spark-core jar at the head of its Python
workers' ``PYTHONPATH``, so they import PySpark from those archives. Two costs follow on CPython
3.11: PySpark's worker calls ``importlib.invalidate_caches()`` before every task, and each
``zipimporter`` then reads its archive's whole directory again, once for every package imported
from it (0.11 s a call in a fresh worker; 8.2 s of worker time over three drains of
``bench.streaming``'s topic, profiled with py-spy); and modules imported from an archive are
compiled from source in every new worker, since no ``.pyc`` is kept.

Where PySpark and py4j are installed as packages (the venv, or a cluster node's image) and the
archives are that PySpark's own, this daemon drops them from the path before it starts PySpark's
own daemon, and the workers it forks import the installed packages. Elsewhere the path stays as
Spark set it.
``common.spark`` names this module in ``spark.python.daemon.module``.
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder
from pathlib import PurePath


def is_spark_archive(entry: str) -> bool:
    """A path entry Spark adds for its own Python code: a jar, ``pyspark.zip`` or py4j's zip."""
    name = PurePath(entry).name
    return (
        name.endswith(".jar")
        or name == "pyspark.zip"
        or (name.startswith("py4j-") and name.endswith(".zip"))
    )


def lean_path(path: list[str]) -> list[str]:
    """``path`` without the archives of the PySpark that is also installed as a package.

    Only archives inside that package's own folder go (pip's pyspark keeps its zips and jars
    there), so a node whose ``SPARK_HOME`` is another Spark keeps importing that Spark's PySpark.
    """
    candidates = [entry for entry in path if not is_spark_archive(entry)]
    pyspark = PathFinder.find_spec("pyspark", candidates)
    if pyspark is None or pyspark.origin is None or not PathFinder.find_spec("py4j", candidates):
        return path
    home = PurePath(pyspark.origin).parent
    return [
        entry for entry in path
        if not (is_spark_archive(entry) and PurePath(entry).is_relative_to(home))
    ]  # fmt: skip


def main() -> None:
    lean = lean_path(sys.path)
    for entry in set(sys.path) - set(lean):
        # Importers made for it while this module was found would still be re-read each task.
        sys.path_importer_cache.pop(entry, None)
    sys.path[:] = lean
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
