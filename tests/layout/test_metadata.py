"""Layout tier: labels, version and size users and registries see."""


def test_oci_labels_present(check_rule):
    check_rule("layout.metadata.labels")


def test_version_agrees(check_rule):
    check_rule("layout.metadata.version")


def test_image_size_within_limit(check_rule):
    check_rule("layout.metadata.size")
