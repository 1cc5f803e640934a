"""Layout tier: nothing else in the image, and everything readable by postgres (UID 26)."""


def test_only_allowed_top_level_folders(check_rule):
    check_rule("layout.tree.allowed-roots")


def test_no_shell_or_executables(check_rule):
    check_rule("layout.tree.no-executables")


def test_no_setuid_or_setgid(check_rule):
    check_rule("layout.tree.no-setuid")


def test_no_world_writable_entries(check_rule):
    check_rule("layout.tree.no-world-writable")


def test_no_devices_or_fifos(check_rule):
    check_rule("layout.tree.no-special-files")


def test_links_stay_inside_the_image(check_rule):
    check_rule("layout.tree.symlinks")


def test_readable_by_cnpg_postgres_user(check_rule):
    check_rule("layout.tree.readable-by-postgres")


def test_archive_entries_are_well_formed(check_rule):
    check_rule("layout.tree.archive-entries")
