#!/usr/bin/env bash
# Entrypoint of the offline stand-ins for postgres:18 and the CloudNativePG operand image.
#
# It behaves like the official postgres image's entrypoint for what the harness and
# testcontainers use:
#   - "postgres ..." or options alone ("-c name=value ...") start the server; anything else
#     is executed as given (e.g. "ls /extensions/x");
#   - started as root, it owns PGDATA to postgres and re-executes itself as that user;
#     started as a non-root user (--user 999, --user 26, ...), it runs as that user;
#   - an empty PGDATA is initialised: POSTGRES_USER (default postgres), POSTGRES_PASSWORD,
#     POSTGRES_DB (default POSTGRES_USER), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD
#     (default scram-sha-256), a "host all all all <method>" line in pg_hba.conf, and the
#     scripts in /docker-entrypoint-initdb.d (*.sh, *.sql);
#   - initialisation runs a temporary server reachable only through its Unix socket, so a
#     TCP client (testcontainers' readiness probe) succeeds only once the real server runs;
#   - finally "exec postgres ...", so -c options reach the server and it is PID 1.
set -Eeo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

wants_help_only() {
	local arg
	for arg; do
		case "$arg" in
			-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

# Options alone mean "postgres with these options".
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi
if [ "$1" != 'postgres' ] || wants_help_only "$@"; then
	exec "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGPORT="${PGPORT:-5432}"

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chmod 00700 "$PGDATA"
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	chown postgres:postgres /var/run/postgresql
	chmod 03777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

mkdir -p "$PGDATA"
# A directory someone else made (a mounted volume) may refuse this; initdb will then say why.
chmod 00700 "$PGDATA" 2>/dev/null || :

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		log 'error: the database is uninitialised and no superuser password is given:' \
			'set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one)'
		exit 1
	fi

	# initdb needs a passwd entry for the current uid; an arbitrary --user has none.
	if ! getent passwd "$(id -u)" >/dev/null; then
		nss_wrapper=$(ls /usr/lib/*/libnss_wrapper.so 2>/dev/null | head -n1 || :)
		if [ -n "$nss_wrapper" ]; then
			NSS_WRAPPER_PASSWD=$(mktemp)
			NSS_WRAPPER_GROUP=$(mktemp)
			printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" >"$NSS_WRAPPER_PASSWD"
			printf 'postgres:x:%s:\n' "$(id -g)" >"$NSS_WRAPPER_GROUP"
			export NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
			export LD_PRELOAD="$nss_wrapper${LD_PRELOAD:+ $LD_PRELOAD}"
		fi
	fi

	log "initialising $PGDATA (superuser $POSTGRES_USER, host auth $POSTGRES_HOST_AUTH_METHOD)"
	initdb_args=(--username="$POSTGRES_USER")
	pwfile=
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		# A private file, not <(...): engines do not always provide /dev/fd.
		pwfile=$(mktemp)
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
		initdb_args+=(--pwfile="$pwfile")
	fi
	# POSTGRES_INITDB_ARGS is word-split on purpose, as upstream does.
	# shellcheck disable=SC2086
	initdb "${initdb_args[@]}" $POSTGRES_INITDB_ARGS
	if [ -n "$pwfile" ]; then rm -f "$pwfile"; fi

	if [ -n "${NSS_WRAPPER_PASSWD:-}" ]; then
		rm -f "$NSS_WRAPPER_PASSWD" "$NSS_WRAPPER_GROUP"
		unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
	fi

	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

	# A temporary server on the Unix socket only, with the user's own options (a
	# shared_preload_libraries given with -c must already apply to the init scripts).
	server_args=("${@:2}" -c "listen_addresses=" -p "$PGPORT")
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w -t 60 -o "$(printf '%q ' "${server_args[@]}")" start
	psql_init=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" --host /var/run/postgresql)
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		exists=$("${psql_init[@]}" --dbname postgres --set db="$POSTGRES_DB" -tA \
			<<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
		if [ -z "$exists" ]; then
			"${psql_init[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
			log "created database $POSTGRES_DB"
		fi
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)
				log "running $f"
				if [ -x "$f" ]; then "$f"; else . "$f"; fi
				;;
			*.sql)
				log "running $f"
				"${psql_init[@]}" --dbname "$POSTGRES_DB" -f "$f"
				;;
			*) if [ -e "$f" ]; then log "ignoring $f"; fi ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	log 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
