# The mbd image: every mbd service, and Spark master/workers that can run mbd's Python tasks
# (the executors import streaming/ and models/ and need TensorFlow, so workers use this image).
FROM python:3.11-slim-bookworm
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN python -m venv /app/.venv && /app/.venv/bin/pip install -q --no-cache-dir -e . \
 && /app/.venv/bin/mbd setup
ENV PATH=/app/.venv/bin:$PATH \
    PYSPARK_PYTHON=/app/.venv/bin/python \
    SPARK_HOME=/app/.venv/lib/python3.11/site-packages/pyspark \
    MBD_JARS_DIR=/app/.cache/jars
EXPOSE 8000 8001
CMD ["mbd", "--help"]
