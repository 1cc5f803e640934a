#!/bin/sh
# Runs once inside the freshly debootstrapped Debian forky root filesystem (chroot, as root)
# before it is imported as the shared base of the offline PostgreSQL 18 stand-in images.
# It must leave nothing UID-specific: the postgres UID is set per image (set-postgres-user.sh).
set -eu

# Installing postgresql-18 created and registered a "main" cluster; the images initdb their own
# PGDATA at start-up, as the official postgres image does, and later package installs (the
# builder's dev packages, extension packages) must not create one either.
rm -rf /etc/postgresql/18 /var/lib/postgresql/18 /var/log/postgresql/postgresql-18-main.log
sed -ri 's/^#?(create_main_cluster)\s*=.*/\1 = false/' /etc/postgresql-common/createcluster.conf
grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf

# Listen on every address by default, so a published port reaches the server (as upstream).
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/18/postgresql.conf.sample
grep -q "^listen_addresses = '\*'" /usr/share/postgresql/18/postgresql.conf.sample

mkdir -p /docker-entrypoint-initdb.d

# The machine's mirror may be a frozen snapshot whose Release files are past Valid-Until
# (debootstrap does not check it, apt-get update does): let apt in these images accept them.
printf 'Acquire::Check-Valid-Until "false";\n' > /etc/apt/apt.conf.d/99extharness-snapshot-mirror

# Keep the image small: no package caches, no package lists (run apt-get update before
# installing), no manual pages. Copyright files stay.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old \
       /usr/share/man/* /usr/share/info/* /var/log/*.log /var/log/apt/* /tmp/* /var/tmp/*
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
# debootstrap copied the build machine's resolver configuration; the engine provides its own.
rm -f /etc/resolv.conf /etc/hostname
