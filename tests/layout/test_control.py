"""Layout tier: control files and scripts as PostgreSQL 18 under CNPG reads them."""


def test_control_file_parses(check_rule):
    check_rule("layout.control.parse")


def test_extension_and_version_names(check_rule):
    check_rule("layout.control.name")


def test_module_pathname_resolves_to_shipped_library(check_rule):
    check_rule("layout.control.module-pathname")


def test_no_absolute_directory(check_rule):
    check_rule("layout.control.directory")


def test_required_extensions_reported(check_rule):
    check_rule("layout.control.requires")


def test_no_libdir_load_in_scripts(check_rule):
    check_rule("layout.scripts.no-libdir-load")
