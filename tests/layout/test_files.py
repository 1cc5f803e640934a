"""Layout tier: the files CloudNativePG needs are where it looks for them."""


def test_control_file_in_share_extension(check_rule):
    check_rule("layout.files.control")


def test_libraries_are_elf_shared_objects(check_rule):
    check_rule("layout.files.library")


def test_default_version_is_installable(check_rule):
    check_rule("layout.files.install-script")
