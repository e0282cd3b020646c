//! CPU time of every process taking part in a run, and of the rest of the machine.

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::process::{machine_busy_seconds, own_cpu_seconds, pid_cpu_seconds};

/// CPU seconds used by the client (this process) and each named child over a run.
/// Also the CPU the rest of the machine used meanwhile (`other_cpu_s`): other
/// people's builds on the same two cores make a run meaningless, and this shows it.
pub struct CpuMeter {
    /// (name, pid, CPU seconds at start).
    processes: Vec<(&'static str, u32, f64)>,
    client0: f64,
    machine0: f64,
    started: Instant,
}

impl CpuMeter {
    /// Starts measuring this process and `processes` (name, pid).
    pub fn start(processes: &[(&'static str, u32)]) -> anyhow::Result<Self> {
        let mut meter = CpuMeter {
            processes: Vec::new(),
            client0: own_cpu_seconds()?,
            machine0: machine_busy_seconds()?,
            started: Instant::now(),
        };
        for (name, pid) in processes {
            meter.processes.push((name, *pid, pid_cpu_seconds(*pid)?));
        }
        Ok(meter)
    }

    /// Also measures a process started after the meter (all its CPU time counts).
    pub fn add_new(&mut self, name: &'static str, pid: u32) {
        self.processes.push((name, pid, 0.0));
    }

    /// `{"client_cpu_s":…, "<name>_cpu_s":…, "other_cpu_s":…, "wall_s":…}` since start.
    pub fn read(&self) -> anyhow::Result<Value> {
        let client = own_cpu_seconds()? - self.client0;
        let mut out = Map::new();
        out.insert("client_cpu_s".into(), json!(client));
        let mut ours = client;
        for (name, pid, base) in &self.processes {
            let used = pid_cpu_seconds(*pid)? - base;
            ours += used;
            out.insert(format!("{name}_cpu_s"), json!(used));
        }
        let machine = machine_busy_seconds()? - self.machine0;
        out.insert("other_cpu_s".into(), json!((machine - ours).max(0.0)));
        out.insert("wall_s".into(), json!(self.started.elapsed().as_secs_f64()));
        Ok(Value::Object(out))
    }
}
