"""The images this repository tests, one fixture each (made by extharness's fixture factories).

Paths are relative to this folder (pytest's rootdir). Any reference ``--ext-image`` takes works
too: ``oci-archive:dist/new.tar``, ``docker-archive:FILE``, ``ghcr.io/<owner>/<name>:<tag>``.
"""

from extharness.fixtures import image_fixture

old = image_fixture("release/1.0")  # the last published release (a release folder)
new = image_fixture("release/1.1")  # the candidate
