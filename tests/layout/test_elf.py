"""Layout tier: libraries the operand image's loader and PostgreSQL accept."""


def test_architecture_matches_platform(check_rule):
    check_rule("layout.elf.architecture")


def test_glibc_not_newer_than_operand(check_rule):
    check_rule("layout.elf.glibc")


def test_needed_libraries_available(check_rule):
    check_rule("layout.elf.needed")


def test_no_build_machine_rpath(check_rule):
    check_rule("layout.elf.rpath")


def test_module_magic_present(check_rule):
    check_rule("layout.elf.module-magic")
