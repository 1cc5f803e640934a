#!/bin/sh
# set-postgres-user.sh UID GID: give the postgres user and group fixed ids, as the images we
# stand in for do (official postgres: 999:999; CloudNativePG operands: 26:26), and prepare the
# directories the entrypoint needs. Runs at image build time, as root.
set -eu
uid=$1
gid=$2

old_uid=$(id -u postgres)
old_gid=$(getent group postgres | cut -d: -f3)

# Debian's own system groups may already hold the wanted id (lpadmin is 999, tape is 26 in
# forky): move such a group out of the way, to a free system id, keeping its files' group.
free_system_gid() {
  g=990
  while getent group "$g" >/dev/null; do g=$((g - 1)); done
  echo "$g"
}
holder=$(getent group "$gid" | cut -d: -f1 || true)
if [ -n "$holder" ] && [ "$holder" != postgres ]; then
  new=$(free_system_gid)
  groupmod -g "$new" "$holder"
  find / -xdev -group "$gid" -exec chgrp -h "$new" {} +
fi
holder=$(getent passwd "$uid" | cut -d: -f1 || true)
if [ -n "$holder" ] && [ "$holder" != postgres ]; then
  echo "set-postgres-user.sh: uid $uid already belongs to $holder" >&2
  exit 1
fi

if [ "$old_gid" != "$gid" ]; then
  groupmod -g "$gid" postgres
  find / -xdev -group "$old_gid" -exec chgrp -h postgres {} +
fi
if [ "$old_uid" != "$uid" ]; then
  usermod -u "$uid" -g "$gid" postgres
  find / -xdev -user "$old_uid" -exec chown -h postgres {} +
fi

# PGDATA itself is created at start-up by whoever runs the entrypoint: root (then chowned),
# the postgres user, or an arbitrary --user; hence the sticky, world-writable parent (the
# official image does the same with PGDATA itself).
mkdir -p /var/lib/postgresql /var/run/postgresql
chown postgres:postgres /var/lib/postgresql /var/run/postgresql
chmod 1777 /var/lib/postgresql
chmod 3777 /var/run/postgresql
