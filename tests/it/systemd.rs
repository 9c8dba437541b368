//! The packaged unit (packaging/kes.service, unchanged) run by a real systemd: start (Type=notify),
//! reload (the check, then SIGHUP), a refused reload, stop, and the sandbox as the server
//! process sees it.
//!
//! The test machines have no systemd as PID 1, so the test boots one: `/lib/systemd/systemd`
//! as PID 1 of new PID, mount and cgroup namespaces (`unshare`), in container mode, loading
//! units only from a directory of the test (the unit, a drop-in that sends its output to a file
//! since no journald runs, and empty targets for its dependencies). Overlays on /etc, /usr/bin
//! and /var/lib, private to those namespaces, hold what the package installs: the `kes` user,
//! /etc/kes (made by packaging/kes-setup), /usr/bin/kes (the debug binary) and
//! /var/lib/kes/keys. Nothing outside the namespaces changes, except a cgroup directory that is
//! removed at the end.
//!
//! It needs root, `unshare`, overlayfs and systemd's binary. Without them it fails saying so,
//! and scripts/test.sh skips it by name (and says that it did not run); tests/it/service.rs checks
//! the notification protocol on a socket everywhere.
//!
//! `KES_SYSTEMD_TEST_BIN=FILE` runs another binary as /usr/bin/kes: packaging/test.sh runs the
//! shipped static build this way (musl and mimalloc make other system calls than the debug
//! build, and the unit's SystemCallFilter= must allow them).

use crate::support;

use crate::support::TempDir;
use crate::support::client::Client;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

const SYSTEMD: &str = "/lib/systemd/systemd";

/// Why this machine cannot run the test, if it cannot.
fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        return Some("not root".into());
    }
    if !Path::new(SYSTEMD).exists() {
        return Some(format!("no {SYSTEMD}"));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.contains("overlay") {
        return Some("no overlayfs".into());
    }
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--cgroup", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Some("unshare --pid --mount --cgroup fails (no CAP_SYS_ADMIN?)".into());
    }
    if !Path::new("/sys/fs/cgroup/unified").is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.procs").exists()
    {
        return Some("neither a hybrid nor a unified cgroup hierarchy".into());
    }
    None
}

/// A uid and gid free on this machine for the `kes` user of the namespaces.
fn free_id() -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let group = std::fs::read_to_string("/etc/group").unwrap();
    let used = |text: &str, id: u32| {
        text.lines()
            .any(|l| l.split(':').nth(2) == Some(id.to_string().as_str()))
    };
    (900..1000)
        .rev()
        .find(|id| !used(&passwd, *id) && !used(&group, *id))
        .expect("a free system uid")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs as PID 1 of the new namespaces: mounts what systemd needs and the installed files, then
/// becomes systemd.
const INNER: &str = r#"set -eu
root=$1
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t proc proc /proc
# The cgroup hierarchy as this cgroup namespace sees it (its root is the test's directory).
if [ -d /sys/fs/cgroup/unified ]; then
    mount -t tmpfs -o mode=0755 tmpfs /sys/fs/cgroup
    mkdir /sys/fs/cgroup/unified /sys/fs/cgroup/systemd
    mount -t cgroup2 none /sys/fs/cgroup/unified
    mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
else
    mount -t cgroup2 none /sys/fs/cgroup
fi
for dir in etc usr/bin var/lib; do
    work=$root/.work-$(echo "$dir" | tr / -)
    mkdir -p "$work"
    mount -t overlay overlay -o "lowerdir=/$dir,upperdir=$root/$dir,workdir=$work" "/$dir"
done
exec env -i container=kes-test "SYSTEMD_UNIT_PATH=$root/units" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=kes-test.target --log-target=console
"#;

/// systemd in its namespaces; killed (and its cgroup removed) on drop.
struct Systemd {
    unshare: Child,
    pid: u32,
    cgroups: Vec<PathBuf>,
}

impl Systemd {
    fn boot(root: &Path, log: &Path) -> Systemd {
        let name = format!("kes-systemd-test-{}", std::process::id());
        let cgroups: Vec<PathBuf> = if Path::new("/sys/fs/cgroup/unified").is_dir() {
            vec![
                Path::new("/sys/fs/cgroup/systemd").join(&name),
                Path::new("/sys/fs/cgroup/unified").join(&name),
            ]
        } else {
            vec![Path::new("/sys/fs/cgroup").join(&name)]
        };
        for cg in &cgroups {
            std::fs::create_dir_all(cg).unwrap();
        }
        std::fs::write(root.join("inner.sh"), INNER).unwrap();
        // The shell moves itself into the test's cgroups, then becomes unshare.
        let enter: String = cgroups
            .iter()
            .map(|cg| format!("echo $$ > {}/cgroup.procs; ", cg.display()))
            .collect();
        let unshare = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{enter}exec unshare --pid --fork --mount --cgroup --propagation private sh {}/inner.sh {}",
                root.display(),
                root.display()
            ))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        // systemd is unshare's child.
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            let children = std::fs::read_to_string(format!(
                "/proc/{}/task/{}/children",
                unshare.id(),
                unshare.id()
            ))
            .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                break pid.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "unshare started no child");
            std::thread::sleep(Duration::from_millis(20));
        };
        let systemd = Systemd {
            unshare,
            pid,
            cgroups,
        };
        // Running once the default target is reached.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = systemd.systemctl(&["is-system-running"]);
            if out.1.trim() == "running" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not come up: {out:?}\n{}{}",
                std::fs::read_to_string(log).unwrap_or_default(),
                std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        systemd
    }

    /// `systemctl ARGS` in the namespaces: (exit code, stdout + stderr).
    fn systemctl(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "systemctl"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    }

    /// `COMMAND ARGS` in the namespaces (a PID there is not the same here); its stdout.
    fn run(&self, command: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p"])
            .args(command)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// One property of the kes unit.
    fn property(&self, name: &str) -> String {
        let (_, out) = self.systemctl(&["show", "kes.service", "--value", "-p", name]);
        out.trim().to_string()
    }

    /// Waits until `property` satisfies `check`; returns its value.
    fn wait_for(&self, property: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.property(property);
            if check(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "{property} stayed {value:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        // PID 1 of a PID namespace takes every process of it along.
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.unshare.wait();
        for cg in &self.cgroups {
            // Innermost first (systemd made init.scope, system.slice, kes.service below it).
            let mut dirs = vec![cg.clone()];
            let mut i = 0;
            while i < dirs.len() {
                if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                    for e in entries.flatten() {
                        if e.path().is_dir() {
                            dirs.push(e.path());
                        }
                    }
                }
                i += 1;
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            for dir in dirs.iter().rev() {
                while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// The installed files under `root` (the overlays' upper directories) and the units.
fn install(root: &Path, id: u32, port: u16) {
    // /etc/kes and /var/lib/kes/keys as the package's first install makes them.
    let out = Command::new("sh")
        .arg(repo("packaging/kes-setup"))
        .arg("install")
        .env("KES_SETUP_ROOT", root)
        .env("KES_BIN", env!("CARGO_BIN_EXE_kes"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let config = std::fs::read_to_string(repo("packaging/config.yaml")).unwrap();
    assert!(config.contains("\naddress: 0.0.0.0:7373\n"));
    let config = config.replace(
        "\naddress: 0.0.0.0:7373\n",
        &format!("\naddress: 127.0.0.1:{port}\n"),
    );
    std::fs::write(root.join("etc/kes/config.yaml"), config).unwrap();
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str(&format!(
        "kes:x:{id}:{id}:KES key server:/var/lib/kes:/usr/sbin/nologin\n"
    ));
    std::fs::write(root.join("etc/passwd"), passwd).unwrap();
    let mut group = std::fs::read_to_string("/etc/group").unwrap();
    group.push_str(&format!("kes:x:{id}:\n"));
    std::fs::write(root.join("etc/group"), group).unwrap();
    // Owners as kes-setup sets them on a real install.
    let chown = |spec: &str, path: &str| {
        let status = Command::new("chown")
            .args([spec, root.join(path).to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    chown(&format!("0:{id}"), "etc/kes/server.key");
    chown(&format!("0:{id}"), "etc/kes/kes.env");
    chown(&format!("{id}:{id}"), "var/lib/kes");
    chown(&format!("{id}:{id}"), "var/lib/kes/keys");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    let bin = std::env::var_os("KES_SYSTEMD_TEST_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kes")), PathBuf::from);
    println!("/usr/bin/kes is {}", bin.display());
    std::fs::copy(&bin, root.join("usr/bin/kes")).unwrap();

    let units = root.join("units");
    std::fs::create_dir_all(units.join("kes.service.d")).unwrap();
    std::fs::copy(repo("packaging/kes.service"), units.join("kes.service")).unwrap();
    std::fs::write(
        units.join("kes.service.d/output.conf"),
        format!(
            "# No journald in the test's namespaces.\n[Service]\nStandardOutput=append:{}\nStandardError=inherit\n",
            root.join("kes.log").display()
        ),
    )
    .unwrap();
    for target in [
        "kes-test",
        "sysinit",
        "basic",
        "shutdown",
        "network",
        "network-online",
        "multi-user",
    ] {
        std::fs::write(
            units.join(format!("{target}.target")),
            "[Unit]\nDefaultDependencies=no\n",
        )
        .unwrap();
    }
    std::fs::write(
        units.join("system.slice"),
        "[Unit]\nDefaultDependencies=no\n",
    )
    .unwrap();
}

/// Named `systemd_*`: scripts/test.sh runs it where systemd can be booted in namespaces and
/// otherwise skips it by name and says so; run directly where it cannot, it fails (a test that
/// did not run never passes).
#[test]
fn systemd_the_packaged_unit_under_systemd() {
    if let Some(why) = unavailable() {
        panic!("this test did not run: cannot boot systemd in namespaces here ({why})");
    }
    let started = Instant::now();
    let dir = TempDir::new("systemd");
    let root = dir.join("root");
    let id = free_id();
    let port = free_port();
    install(&root, id, port);
    let systemd = Systemd::boot(&root, &dir.join("systemd.log"));
    println!(
        "systemd up as PID {} in {:?}",
        systemd.pid,
        started.elapsed()
    );
    let log = || std::fs::read_to_string(root.join("kes.log")).unwrap_or_default();

    // Type=notify: `systemctl start` returns once kes has sent READY=1, so the port answers at
    // once (with Type=simple it returned right after the fork).
    let (code, out) = systemd.systemctl(&["start", "kes.service"]);
    assert_eq!(code, Some(0), "systemctl start: {out}\n{}", log());
    let server_cert = CertificateDer::from_pem_file(root.join("etc/kes/server.cert")).unwrap();
    let api_key = std::fs::read_to_string(root.join("etc/kes/admin.key")).unwrap();
    let admin = support::pki::api_key_client(api_key.trim());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = Client::new(addr, &server_cert, Some(&admin));
    assert_eq!(client.get("/version").status, 200, "{}", log());
    let status = systemd.property("StatusText");
    println!("after start: {status}");
    assert_eq!(
        status,
        format!("serving on 127.0.0.1:{port}; keystore filesystem /var/lib/kes/keys")
    );

    // The server process: user kes, CAP_IPC_LOCK only, memory locked, a seccomp filter,
    // /etc/kes as its working directory, /proc without other processes and system files.
    let pid = systemd.property("MainPID");
    let proc_status = systemd.run(&["cat", &format!("/proc/{pid}/status")]);
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(field("Uid:"), id.to_string());
    assert_eq!(field("CapEff:"), "0000000000004000");
    assert_eq!(field("Seccomp:"), "2", "SystemCallFilter= in force");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert!(log().contains("MLock       enabled"), "{}", log());
    assert_eq!(
        systemd
            .run(&["readlink", &format!("/proc/{pid}/cwd")])
            .trim(),
        "/etc/kes"
    );
    let mounts = systemd.run(&["cat", &format!("/proc/{pid}/mountinfo")]);
    let proc_mount = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/proc"))
        .unwrap();
    assert!(
        proc_mount.contains("hidepid=invisible") && proc_mount.contains("subset=pid"),
        "{proc_mount}"
    );
    for (property, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("TasksMax", "256"),
        ("LimitNOFILE", "65536"),
        ("WorkingDirectory", "/etc/kes"),
    ] {
        assert_eq!(systemd.property(property), value, "{property}");
    }

    // A round trip through the sandbox (the keystore is the one writable directory), and the
    // metrics that read /proc/self (ProcSubset=pid) and the certificate.
    assert_eq!(client.post("/v1/key/create/unit-key", "").status, 200);
    assert!(root.join("var/lib/kes/keys/unit-key").is_file());
    assert_eq!(
        client.post("/v1/key/generate/unit-key", "").status,
        200,
        "{}",
        log()
    );
    let metrics = client.get("/v1/metrics").text();
    for family in [
        "kes_server_accept_backlog ",
        "kes_server_certificate_expiry_seconds ",
        "kes_system_num_threads ",
    ] {
        assert!(metrics.contains(family), "no {family}in\n{metrics}");
    }

    // `systemctl reload`: the check passes, SIGHUP reloads, the status says so, and the new
    // policy is in force.
    let config = root.join("etc/kes/config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "\npolicy:\n",
            "\npolicy:\n  unit-test:\n    allow:\n    - /v1/key/list/*\n",
        ),
    )
    .unwrap();
    assert_eq!(client.get("/v1/policy/describe/unit-test").status, 404);
    let (code, out) = systemd.systemctl(&["reload", "kes.service"]);
    assert_eq!(code, Some(0), "systemctl reload: {out}\n{}", log());
    let status = systemd.wait_for("StatusText", |s| s.contains("; reloaded at "));
    println!("after reload: {status}");
    systemd.wait_for("ActiveState", |s| s == "active");
    assert_eq!(client.get("/v1/policy/describe/unit-test").status, 200);
    let reloads = log().matches("SIGHUP: reloading").count();
    assert_eq!(reloads, 1, "{}", log());

    // A misspelt field: the check fails the reload, kes gets no signal and keeps serving.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("    identities:\n", "    identites:\n"),
    )
    .unwrap();
    let (code, out) = systemd.systemctl(&["reload", "kes.service"]);
    println!("refused reload: {code:?} {}", out.trim());
    assert_ne!(code, Some(0), "a reload of a broken file succeeded: {out}");
    assert!(log().contains("unknown field 'identites'"), "{}", log());
    assert_eq!(log().matches("SIGHUP: reloading").count(), 1, "{}", log());
    assert_eq!(systemd.property("ActiveState"), "active");
    assert_eq!(client.get("/version").status, 200);

    // Stop: SIGTERM, STOPPING=1, a clean exit.
    let (code, out) = systemd.systemctl(&["stop", "kes.service"]);
    assert_eq!(code, Some(0), "systemctl stop: {out}");
    assert_eq!(systemd.property("ActiveState"), "inactive");
    assert_eq!(systemd.property("Result"), "success");
    assert!(log().contains("shutting down"), "{}", log());
    println!("kes.log:\n{}", log());
    println!("done in {:?}", started.elapsed());
}
