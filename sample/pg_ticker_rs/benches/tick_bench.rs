//! Placeholder benchmark (`cargo bench --bench tick_bench`): it exists so that the manifest's
//! `[[bench]]` target without `path` has its crate root, as pg_trickle's benches do.

fn main() {
    let started = std::time::Instant::now();
    let sum: u64 = (0..1_000_000u64).map(|n| n % 7).sum();
    println!("tick_bench: {sum} in {:?}", started.elapsed());
}
