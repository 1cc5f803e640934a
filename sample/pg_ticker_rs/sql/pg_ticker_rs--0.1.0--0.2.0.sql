-- pg_ticker_rs 0.1.0 -> 0.2.0: adds ticker_rs.mul(integer, integer).
-- cargo pgrx package copies this file next to the generated install script
-- pg_ticker_rs--0.2.0.sql (the same statement pgrx generates for src/lib.rs's mul).
CREATE FUNCTION ticker_rs."mul"(
	"a" INT, /* i32 */
	"b" INT /* i32 */
) RETURNS INT /* i32 */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'mul_wrapper';
