"""Layout tier: the release tags name the tested index, and the index carries its version."""


def test_tags_resolve_to_tested_index(check_rule):
    check_rule("layout.tags.same-digest")


def test_version_label_and_index_annotation(check_rule):
    check_rule("layout.tags.version-annotation")
