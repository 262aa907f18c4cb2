//! CPU time and memory of the processes under test, read from `/proc` at the
//! edges of the measured window (Linux only), so each figure covers the
//! window and nothing else: not seeding, not start-up.

use std::collections::BTreeMap;
use std::str::FromStr;

/// `name=pid` from `--watch`; `loadgen` itself is always watched.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl FromStr for Watched {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, pid) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not name=pid"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("{pid:?} is not a process id"))?;
        Ok(Self {
            name: name.to_owned(),
            pid,
        })
    }
}

/// CPU seconds (user + system) so far, per watched process.
pub fn cpu_seconds(watched: &[Watched]) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, f64> = watched
        .iter()
        .filter_map(|w| Some((w.name.clone(), process_cpu(&w.pid.to_string())?)))
        .collect();
    if let Some(own) = process_cpu("self") {
        all.insert("loadgen".into(), own);
    }
    all
}

/// `(resident MiB, peak resident MiB)` per watched process.
pub fn memory(watched: &[Watched]) -> BTreeMap<String, (f64, f64)> {
    watched
        .iter()
        .filter_map(|w| {
            let status = std::fs::read_to_string(format!("/proc/{}/status", w.pid)).ok()?;
            let field = |name: &str| -> Option<f64> {
                let line = status.lines().find(|l| l.starts_with(name))?;
                let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib / 1024.0)
            };
            Some((w.name.clone(), (field("VmRSS:")?, field("VmHWM:")?)))
        })
        .collect()
}

fn process_cpu(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after_name = stat.rsplit_once(')')?.1;
    let mut fields = after_name.split_whitespace();
    // utime and stime are fields 14 and 15, i.e. the 12th and 13th after ')'.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, which is 100 on every Linux this runs on; read
/// from `getconf` once rather than binding libc for one number.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_and_memory() {
        let me = Watched {
            name: "me".into(),
            pid: std::process::id(),
        };
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let cpu = cpu_seconds(std::slice::from_ref(&me));
        assert!(cpu["me"] > 0.0, "{cpu:?}");
        assert!(cpu.contains_key("loadgen"));
        let memory = memory(&[me]);
        let (rss, peak) = memory["me"];
        assert!(rss > 0.5 && peak >= rss, "{rss} {peak}");
        assert!("server=12".parse::<Watched>().is_ok());
        assert!("server".parse::<Watched>().is_err());
    }
}
