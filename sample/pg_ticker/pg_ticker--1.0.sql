/* pg_ticker--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_ticker" to load this file. \quit

-- Like pg_trickle, the extension is not relocatable and creates its own schema.
CREATE SCHEMA ticker;

CREATE TABLE ticker.events (
    id      bigint PRIMARY KEY,
    payload text
);
-- User data: pg_dump must dump the rows, not only the extension.
SELECT pg_catalog.pg_extension_config_dump('ticker.events', '');

CREATE VIEW ticker.event_count AS
    SELECT count(*) AS events FROM ticker.events;

CREATE FUNCTION ticker.add(integer, integer) RETURNS integer
    AS 'MODULE_PATHNAME', 'pg_ticker_add'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION ticker.module_version() RETURNS text
    AS 'MODULE_PATHNAME', 'pg_ticker_module_version'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
