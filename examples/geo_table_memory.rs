//! Loads a GeoIP database and prints what the flattened table costs:
//! load time, the table's heap bytes, and the process RSS after the load
//! (the file bytes are freed by then) and at its peak (during the load).
//!
//! With RELOADS=N, also the RSS after each of N reloads done as the DNS
//! node does them (KEEP_FREED=1: without handing freed memory back).
//!
//! cargo run --release --example geo_table_memory [FILE.mmdb]
//! (default: data/geoip/GeoLite2-City.mmdb, see scripts/geoip.sh)

use std::path::PathBuf;
use std::time::Instant;

use timepool::shared::geo::GeoTable;

#[path = "support/proc.rs"]
mod proc;

/// This process's memory field of /proc/self/status ("VmRSS", "VmHWM").
fn proc_status(field: &str) -> String {
    match proc::status_value(None, field) {
        Some(kb) => format!("{kb} kB"),
        None => "unknown".to_owned(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data/geoip/GeoLite2-City.mmdb"));
    println!("before load: VmRSS {}", proc_status("VmRSS"));
    let started = Instant::now();
    let table = GeoTable::open(&path)?;
    let load_time = started.elapsed();
    println!("{}", table.description());
    println!("load time: {load_time:?}");
    println!(
        "table heap: {} bytes ({:.1} MiB) for {} networks",
        table.heap_bytes(),
        table.heap_bytes() as f64 / 1_048_576.0,
        table.network_count()
    );
    println!(
        "after load: VmRSS {}, peak VmHWM {}",
        proc_status("VmRSS"),
        proc_status("VmHWM")
    );
    // RELOADS=N: load it N times more as the DNS node reloads it, each on
    // a new thread (tokio's blocking threads come and go), the old table
    // dropped once the new one is in, freed memory handed back as the node
    // does; KEEP_FREED=1 skips that, to see what it saves.
    let reloads: usize = match std::env::var("RELOADS") {
        Ok(text) => text.parse().map_err(|e| format!("RELOADS={text}: {e}"))?,
        Err(_) => 0,
    };
    let keep_freed = std::env::var_os("KEEP_FREED").is_some();
    let mut current = table;
    for reload in 1..=reloads {
        let path = path.clone();
        let loaded = std::thread::spawn(move || GeoTable::open(&path))
            .join()
            .map_err(|_| "the reload thread panicked")??;
        current = loaded;
        if !keep_freed {
            timepool::shared::process::return_freed_memory();
        }
        println!(
            "after reload {reload}{}: VmRSS {}",
            if keep_freed {
                " (freed memory kept)"
            } else {
                ""
            },
            proc_status("VmRSS")
        );
    }
    drop(current);
    Ok(())
}
