"""The candidate in a real PostgreSQL 18 server, its files mounted the way CNPG mounts them."""


def test_new_release_installs_and_answers(new, new_server):
    version = new.layouts()[0].control.default_version
    with new_server.connect() as conn:
        conn.execute("CREATE EXTENSION pg_ticker")
        installed = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_ticker'").fetchone()
        assert installed == (version,), f"CREATE EXTENSION installed {installed}, the image's default is {version}"
        assert conn.execute("SELECT ticker.add(2, 3), ticker.mul(6, 7)").fetchone() == (5, 42)
