//! Finding the workspace's binaries from a test of another package.
//!
//! Cargo tells a test where its own package's binaries are
//! (`CARGO_BIN_EXE_<name>`), but the client's tests run `metaq-broker`,
//! which another package builds. `cargo test --workspace` builds every
//! member's binaries into the same directory before any test runs: the
//! profile directory, the parent of the test's own `deps/`.

use std::path::PathBuf;

/// The path of the workspace binary `name` (`metaq-broker`, `metaq`), built
/// into the same target directory and profile as the running test.
///
/// # Panics
///
/// When it is not there, with a message saying how to build it: run the
/// tests with `cargo test --workspace`, or `cargo build -p <package>`
/// first. A test that needs a broker process fails; it never skips.
///
/// # Examples
///
/// ```no_run
/// let broker = metaq_testkit::workspace_binary("metaq-broker");
/// assert!(broker.ends_with("metaq-broker"));
/// ```
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // <target>/<profile>/deps/<test> (tests, doctests) or <target>/<profile>/<bin>.
    let mut dirs = exe.ancestors().skip(1).take(2);
    let found = dirs.find_map(|dir| {
        let candidate = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        candidate.is_file().then_some(candidate)
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} is not built next to {}: run the tests with `cargo test --workspace` \
             (which builds every binary first), or `cargo build -p {package}` before \
             `cargo test -p <package>`",
            exe.display(),
            package = if name == "metaq" { "metaq-cli" } else { name },
        )
    })
}

/// [`workspace_binary`]`("metaq-broker")`: the development broker, for
/// [`BrokerProcess::spawn`](crate::BrokerProcess::spawn).
///
/// # Examples
///
/// ```no_run
/// use metaq_testkit::{broker_binary, BrokerProcess};
/// # let args: Vec<String> = Vec::new();
/// let broker = BrokerProcess::spawn(broker_binary(), &args)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn broker_binary() -> PathBuf {
    workspace_binary("metaq-broker")
}
