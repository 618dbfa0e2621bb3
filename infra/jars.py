"""Fetch the JVM jars named by infra/pom.xml from Maven Central into the jar cache.

Idempotent and free when nothing changed: a stamp file records a hash of the POMs that produced
the cache, and Maven only runs when the stamp is missing or differs.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from pathlib import Path

from common.settings import PROJECT_ROOT, JvmSettings

log = logging.getLogger(__name__)

INFRA_DIR = PROJECT_ROOT / "infra"
POM_FILES = (
    INFRA_DIR / "pom.xml",
    INFRA_DIR / "broker-jars" / "pom.xml",
    INFRA_DIR / "spark-jars" / "pom.xml",
    INFRA_DIR / "maven-settings.xml",
)
STAMP_NAME = ".pom-sha256"


class JarFetchError(RuntimeError):
    """Maven could not resolve the jars; the message carries Maven's own words."""


def pom_digest() -> str:
    digest = hashlib.sha256()
    for pom in POM_FILES:
        digest.update(pom.read_bytes())
    return digest.hexdigest()


def jars_current(jvm: JvmSettings) -> bool:
    stamp = jvm.jars_dir / STAMP_NAME
    return (
        stamp.is_file()
        and stamp.read_text().strip() == pom_digest()
        and any(jvm.broker_jars.glob("kafka_*.jar"))
        and any(jvm.spark_jars.glob("spark-sql-kafka-0-10_*.jar"))
    )


def ensure_jars(jvm: JvmSettings, *, force: bool = False) -> bool:
    """Make the jar cache match the POMs; returns True if Maven had to run."""
    if not force and jars_current(jvm):
        log.debug("jars in %s are current", jvm.jars_dir)
        return False
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError("Maven (mvn) is not on PATH; install it to fetch Kafka and Spark jars")
    # Stale jars of other versions would end up on the class path next to the new ones.
    for folder in (jvm.broker_jars, jvm.spark_jars):
        if folder.exists():
            shutil.rmtree(folder)
    jvm.jars_dir.mkdir(parents=True, exist_ok=True)
    command = [
        mvn, "-q", "-B",
        "-s", str(INFRA_DIR / "maven-settings.xml"),
        "-f", str(INFRA_DIR / "pom.xml"),
        "package",
        f"-Dmbd.jars.dir={jvm.jars_dir.resolve()}",
    ]  # fmt: skip
    log.info("fetching jars: %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
        detail = "\n".join(errors[:5]) or result.stderr.strip() or result.stdout.strip()
        raise JarFetchError(f"mvn exited with {result.returncode}:\n{detail}")
    (jvm.jars_dir / STAMP_NAME).write_text(pom_digest() + "\n")
    return True


def jar_count(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.jar"))
