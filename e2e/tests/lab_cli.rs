//! `headroom-lab up --with-services` as a user runs it: it prints the
//! kubeconfig, both services are wired in (APIServices Available, the
//! extender answering), and Ctrl-C (SIGINT) stops every process it started.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn children_of(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn up_with_services_then_ctrl_c_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Command::new(env!("CARGO_BIN_EXE_headroom-lab"))
        .args(["up", "--with-services", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(lab.stdout.take().unwrap());
    let mut kubeconfig = None;
    let mut extender = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(p) = line.strip_prefix("kubeconfig: ") {
            kubeconfig = Some(p.trim().to_string());
        }
        if let Some(u) = line.strip_prefix("extender:   ") {
            extender = Some(u.trim().to_string());
        }
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    let kubeconfig = kubeconfig.expect("kubeconfig path printed");
    assert!(std::path::Path::new(&kubeconfig).is_file());
    assert!(extender.is_some(), "extender URL printed");

    let kubectl =
        std::path::PathBuf::from(std::env::var("HEADROOM_CP_BIN_DIR").unwrap_or_else(|_| {
            headroom_e2e::binaries::control_plane_dir()
                .unwrap()
                .display()
                .to_string()
        }))
        .join("kubectl");
    let out = Command::new(&kubectl)
        .args(["get", "apiservice", "v1beta2.custom.metrics.k8s.io", "-o"])
        .arg("jsonpath={.status.conditions[?(@.type==\"Available\")].status}")
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "True");

    let started = children_of(lab.id());
    assert!(
        started.len() >= 7,
        "etcd, apiserver, controller-manager, kwok, scheduler, extender, adapter: {started:?}"
    );
    // Ctrl-C.
    unsafe {
        libc::kill(lab.id() as libc::pid_t, libc::SIGINT);
    }
    let status = lab.wait().unwrap();
    assert!(status.success(), "clean exit after Ctrl-C: {status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<u32> = started.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
}
