"""extharness: a test harness for PostgreSQL extension images for CloudNativePG.

The package mirrors the flow of a run:

    source/    get the image (release folder, sources, engine image, archive, sample)
    inspect/   read it into a model (OCI reader, control files, ELF summaries)
    checks/    pure checks over that model, producing findings
    postgres/  run it in PostgreSQL 18 (native server, containers)
    kube/      deploy it to Kubernetes with CloudNativePG
"""

__version__ = "0.1.0"
