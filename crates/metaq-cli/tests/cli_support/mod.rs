//! Running the real `metaq` binary from the CLI tests (`tests/cli*.rs`):
//! to the end, or as a child whose standard input stays open while its
//! output is read line by line.

#![allow(dead_code)]

use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Guards every wait on the child: a hang fails the test instead of
/// blocking it. Not a timing assertion: everything waited for is due in
/// well under a second.
pub const HANG: Duration = Duration::from_secs(30);

/// `metaq <args>` with standard input closed and outputs captured.
pub fn metaq(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metaq"));
    command
        .args(args)
        // Only tests that say so take the cluster from the environment.
        .env_remove("METAQ_ZK")
        .env_remove("METAQ_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs it to the end (at most 60 s).
pub async fn run(mut command: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("metaq finished within 60 s")
        .expect("metaq ran")
}

/// Runs it with `input` as standard input, to the end.
pub async fn run_with_input(mut command: Command, input: &[u8]) -> Output {
    command.stdin(Stdio::piped());
    let mut child = command.spawn().expect("metaq starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("metaq finished within 60 s")
        .expect("metaq ran")
}

pub fn json_lines(output: &Output) -> Vec<Value> {
    parse_json_lines(&output.stdout)
}

pub fn parse_json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `metaq` running with a pipe as standard input, kept open until
/// [`Running::close_stdin`]; stdout is read line by line.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Running {
    pub fn start(mut command: Command) -> Running {
        command.stdin(Stdio::piped());
        let mut child = command.spawn().expect("metaq starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Running {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line as JSON.
    pub async fn next_json(&mut self) -> Value {
        let line = tokio::time::timeout(HANG, self.stdout.next_line())
            .await
            .expect("a line on stdout before the hang guard")
            .unwrap()
            .expect("a line, not the end of stdout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Closes stdin and waits for the end: the remaining stdout lines, the
    /// status and stderr.
    pub async fn finish(mut self) -> (Vec<String>, ExitStatus, String) {
        self.close_stdin();
        self.finish_keeping_stdin().await
    }

    /// As [`finish`](Self::finish), but stdin stays open until the child
    /// ended by itself.
    pub async fn finish_keeping_stdin(mut self) -> (Vec<String>, ExitStatus, String) {
        let mut rest = Vec::new();
        let mut stderr = self.child.stderr.take().unwrap();
        let read = async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                rest.push(line);
            }
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
                .await
                .unwrap();
            let status = self.child.wait().await.unwrap();
            (status, text)
        };
        let (status, stderr) = tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("metaq finished within 60 s");
        (rest, status, stderr)
    }
}

/// Sends SIGINT to `pid`, as Ctrl-C in a terminal does.
pub fn interrupt(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -INT {pid}: {status}");
}
