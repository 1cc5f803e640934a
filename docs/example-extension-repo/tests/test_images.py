"""Both releases of the extension, in one session: each passes the layout rules, and the
candidate updates from the last release."""


def test_old_release_passes_the_layout_rules(old, layout_check):
    layout_check(old, expect_version="1.0")


def test_new_release_passes_the_layout_rules(new, layout_check):
    layout_check(new, expect_version="1.1")


def test_both_releases_hold_the_same_extension(old, new):
    assert old.name == new.name, f"old holds {old.name}, new holds {new.name}"


def test_new_release_updates_from_the_old_one(old, new):
    old_version = old.layouts()[0].control.default_version
    for layout in new.layouts():  # every platform of the candidate
        new_version = layout.control.default_version
        path = layout.scripts.update_path(old_version, new_version)
        assert path, (
            f"[{layout.platform}] {new.name} {new_version} ships no update path from {old_version}: "
            f"add {new.name}--{old_version}--{new_version}.sql to share/extension"
        )
