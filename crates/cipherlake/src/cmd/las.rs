//! `cipherlake las`: the local attestation service (node agent) of simulation mode.

use std::path::PathBuf;

use anyhow::Context;
use cipherlake_attest::attester::DEFAULT_LAS_SOCKET;
use cipherlake_attest::las::{Las, init_key, load_key};
use cipherlake_attest::tpm::device::TpmPath;

/// Serve sim reports to local workloads, measuring each caller's executable.
///
/// A local process connects to the Unix socket and asks for a report binding 64 bytes of report
/// data. The LAS identifies the caller by SO_PEERCRED, hashes its executable (`/proc/PID/exe`,
/// SHA-384) when it accepts the connection and again before signing, and refuses if the
/// executable changed in between (an exec after connecting).
///
/// The socket is created with mode 0660 whatever the umask, before it accepts connections:
/// only the LAS's user and the socket's group can ask for reports, each for its own executable.
/// Give it the workloads' group with --group. Simulation mode has no memory protection; see the
/// threat model in docs/policy.md.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Platform key file, created by `cipherlake las init-key`.
    #[arg(long, value_name = "FILE")]
    platform_key: Option<PathBuf>,
    /// Unix socket to serve on.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_LAS_SOCKET)]
    socket: PathBuf,
    /// Group that may use the socket: a group name or a numeric GID (used as is). The socket
    /// (mode 0660) is given to this group; without --group it stays in the LAS's own group.
    /// The LAS must run as root or as a member of the group.
    #[arg(long, value_name = "NAME|GID")]
    group: Option<String>,
    /// Also serve sim-vtpm reports: HCL reports, as Azure's paravisor makes them, over this
    /// TPM's attestation key (0x81000003) and the user data at its NV index 0x01400002, so
    /// workloads exercise the vTPM path (`/dev/tpmrm0`, or `tcp:HOST:PORT` for swtpm).
    #[arg(long, value_name = "DEVICE|tcp:HOST:PORT")]
    tpm: Option<TpmPath>,
    /// Make sim reports emulate the TEE claims in this JSON file (`{"tdx": {...}, "snp":
    /// {...}, "sgx": {...}, "host_data": HEX, "rtmrs": [HEX...]}`, the claims' own layout), to
    /// test a policy's identity fields end to end. The evidence stays sim.
    #[arg(long, value_name = "FILE")]
    emulate: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a new platform key file (mode 0600) and print its public key (hex), which the
    /// CAS and `evidence verify --platform-key` accept.
    InitKey {
        /// Where to write the key; an existing file is never overwritten.
        file: PathBuf,
    },
}

/// Runs `cipherlake las`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::InitKey { file }) => {
            let public = init_key(&file)?;
            println!("{public}");
            Ok(())
        }
        None => {
            let group = args.group.as_deref().map(resolve_group).transpose()?;
            let key_file = args
                .platform_key
                .context("--platform-key FILE is required to serve (create one with `cipherlake las init-key FILE`)")?;
            let key = load_key(&key_file)?;
            eprintln!(
                "LAS serving on {} with platform key {}",
                args.socket.display(),
                key.public_key()
            );
            let mut las = Las::bind_with_group(key, &args.socket, group)?;
            if let Some(file) = &args.emulate {
                let text =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                let emulated: cipherlake_attest::sim::Emulated = serde_json::from_slice(&text)
                    .with_context(|| format!("{}: not emulated TEE claims", file.display()))?;
                eprintln!(
                    "LAS emulating TEE claims from {} in sim reports",
                    file.display()
                );
                las = las.with_emulated(emulated);
            }
            if let Some(tpm) = args.tpm {
                eprintln!("LAS making sim-vtpm reports over the TPM at {tpm}");
                las = las.with_tpm(tpm);
            }
            las.run().await?;
            Ok(())
        }
    }
}

/// The GID of `group`: a number is taken as the GID, anything else is looked up as a group name
/// in the system's group database.
fn resolve_group(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(group)
        .map_err(|_| anyhow::anyhow!("--group {group:?}: a group name cannot contain NUL"))?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: an all-zero `group` is a valid value of this plain C struct (null pointers,
        // zero ids); getgrnam_r only writes it on success.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `entry`, `buf` (with its true length) and `found`
        // are valid for writes for the duration of the call, which is reentrant.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            anyhow::bail!(
                "--group {group}: looking up the group failed: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        if found.is_null() {
            anyhow::bail!(
                "--group {group}: unknown group (no group of that name in the group database; \
                 give an existing group name or a numeric GID)"
            );
        }
        return Ok(entry.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(clap::Parser)]
    enum Cli {
        Las(super::Args),
    }

    fn parse(args: &[&str]) -> super::Args {
        let Cli::Las(args) =
            Cli::try_parse_from(["cipherlake", "las"].iter().chain(args)).expect("parses");
        args
    }

    /// An unknown group is refused with its name before anything is read or bound.
    #[tokio::test]
    async fn unknown_group_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("las.sock");
        let args = parse(&[
            "--group",
            "no-such-group-cipherlake",
            "--platform-key",
            "/nonexistent/platform.key",
            "--socket",
            socket.to_str().expect("utf-8"),
        ]);
        let error = format!("{:#}", super::run(args).await.expect_err("refused"));
        assert!(
            error.contains("--group no-such-group-cipherlake: unknown group"),
            "{error}"
        );
        assert!(!socket.exists());
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(super::resolve_group("root").expect("root group"), 0);
        assert_eq!(super::resolve_group("4242").expect("numeric"), 4242);
        assert!(super::resolve_group("bad\0name").is_err());
    }
}
