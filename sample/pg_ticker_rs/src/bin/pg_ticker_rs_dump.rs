//! `pg_ticker_rs_dump`: prints the SQL that recreates `ticker_rs.events` rows from
//! tab-separated `id<TAB>payload` lines on stdin. An extra binary target, like pg_trickle's
//! `pg_trickle_dump`; `cargo pgrx package` does not ship it.

use std::io::{self, BufRead};

fn main() {
    for line in io::stdin().lock().lines().map_while(Result::ok) {
        if let Some((id, payload)) = line.split_once('\t') {
            let id: i64 = match id.trim().parse() {
                Ok(id) => id,
                Err(_) => {
                    eprintln!("pg_ticker_rs_dump: not an id: {id:?}");
                    std::process::exit(2);
                }
            };
            println!("INSERT INTO ticker_rs.events (id, payload) VALUES ({id}, '{}');", payload.replace('\'', "''"));
        }
    }
}
