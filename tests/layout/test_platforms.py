"""Layout tier: multi-arch images hold the expected platforms, each with the same extension."""


def test_expected_platforms(check_rule):
    check_rule("layout.platforms.expected")


def test_same_extension_on_every_platform(check_rule):
    check_rule("layout.platforms.extension")
