/* pg_ticker--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_ticker UPDATE TO '1.1'" to load this file. \quit

ALTER TABLE ticker.events
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT pg_catalog.now();

CREATE INDEX events_created_at_idx ON ticker.events (created_at);

CREATE FUNCTION ticker.mul(integer, integer) RETURNS integer
    AS 'MODULE_PATHNAME', 'pg_ticker_mul'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
