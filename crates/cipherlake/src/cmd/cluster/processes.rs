//! The cluster's background processes: started detached (own process group, logs in
//! `workdir/logs/`), listed in `workdir/cluster.json`, and stopped with SIGTERM (SIGKILL after a
//! grace period). A listed process is only signalled while one of its arguments is a path in
//! the (canonical) workdir, as every process `up` starts has, so a recycled PID is not hit.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

const LIST: &str = "cluster.json";
/// How long a process has to exit after SIGTERM.
const GRACE: Duration = Duration::from_secs(15);

/// One started process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    /// `las`, `cas`, `worker-N`.
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// A worker's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The processes of a cluster, in start order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Processes {
    processes: Vec<Process>,
}

impl Processes {
    /// The list in `workdir`, if there is one.
    pub fn load(workdir: &Path) -> anyhow::Result<Option<Self>> {
        let file = workdir.join(LIST);
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a cluster process list", file.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }

    /// Whether a listed process still runs for `workdir`.
    pub fn any_alive(&self, workdir: &Path) -> bool {
        self.processes.iter().any(|p| p.pid_alive_for(workdir))
    }

    /// Stops the processes in reverse start order, then removes the list; returns how many
    /// were running.
    pub fn stop(&self, workdir: &Path) -> anyhow::Result<usize> {
        let mut stopped = 0;
        for process in self.processes.iter().rev() {
            if !process.pid_alive_for(workdir) {
                continue;
            }
            stopped += 1;
            signal(process.pid, libc::SIGTERM);
            let deadline = Instant::now() + GRACE;
            while process.pid_alive_for(workdir) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if process.pid_alive_for(workdir) {
                eprintln!(
                    "{} (pid {}) ignored SIGTERM for {GRACE:?}: killing it",
                    process.name, process.pid
                );
                signal(process.pid, libc::SIGKILL);
            }
        }
        std::fs::remove_file(workdir.join(LIST))
            .with_context(|| format!("removing {}", workdir.join(LIST).display()))?;
        Ok(stopped)
    }
}

impl Process {
    /// Whether the PID runs a process (not a zombie) with an argument that is a path inside
    /// `workdir`.
    fn pid_alive_for(&self, workdir: &Path) -> bool {
        let proc = PathBuf::from(format!("/proc/{}", self.pid));
        let running = std::fs::read_to_string(proc.join("stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
        running
            && std::fs::read(proc.join("cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|&b| b == 0)
                    .any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)).starts_with(workdir))
            })
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a positive PID only sends a signal; it touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Processes being started by `cluster up`; on failure they are all killed.
pub struct Launched {
    workdir: PathBuf,
    children: Vec<Child>,
    list: Processes,
}

impl Launched {
    /// Nothing started yet.
    pub fn new(workdir: &Path) -> Self {
        Launched {
            workdir: workdir.to_owned(),
            children: Vec::new(),
            list: Processes::default(),
        }
    }

    /// Starts `exe ARGS` detached from the terminal (its own process group), stderr to
    /// `logs/NAME.log`, stdout to `logs/NAME.out` (returned).
    pub fn spawn(&mut self, name: &str, exe: &Path, args: &[&str]) -> anyhow::Result<PathBuf> {
        use std::os::unix::process::CommandExt;
        let logs = self.workdir.join("logs");
        let out = logs.join(format!("{name}.out"));
        let err = logs.join(format!("{name}.log"));
        let create = |p: &Path| {
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))
        };
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(create(&out)?)
            .stderr(create(&err)?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        self.list.processes.push(Process {
            name: name.to_owned(),
            pid: child.id(),
            url: None,
        });
        self.children.push(child);
        Ok(out)
    }

    /// Records a worker's URL.
    pub fn set_url(&mut self, name: &str, url: &str) {
        if let Some(p) = self.list.processes.iter_mut().find(|p| p.name == name) {
            p.url = Some(url.to_owned());
        }
    }

    /// Waits until the process `name` writes a line starting with `prefix` to `out`; returns
    /// the rest of the line. Fails when it exits first (pointing at its log) or on timeout.
    pub fn wait_for_line(
        &mut self,
        name: &str,
        out: &Path,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let index = self
            .list
            .processes
            .iter()
            .position(|p| p.name == name)
            .context("no such process")?;
        loop {
            if let Ok(text) = std::fs::read_to_string(out)
                && let Some(line) = text.lines().find_map(|l| l.strip_prefix(prefix))
            {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.children[index].try_wait()? {
                anyhow::bail!(
                    "the {name} exited ({status}): {}",
                    last_line(&self.workdir.join(format!("logs/{name}.log")))
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!("the {name} did not start within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `cluster.json`.
    pub fn save(&self) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(&self.list)?;
        crate::cmd::demo::write_atomically(&self.workdir.join(LIST), &text, 0o644)
    }

    /// Kills everything started (a failed `up`).
    pub fn stop_all(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last line of a log file, or where to look.
fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("see {}", log.display()))
}

/// Waits until `ready` holds, at most `timeout`.
pub fn wait_until(what: &str, timeout: Duration, ready: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            anyhow::bail!("{what} did not come up within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
