//! Ctrl-C: the first SIGINT asks `produce` to stop reading and finish what
//! is in flight; a second one exits at once.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGINT from now on. Installed once the
/// producer is ready: before that there is nothing to finish, and the
/// default (the process ends) is right.
pub(super) fn first_interrupt() -> Result<CancellationToken, String> {
    // Registered here, not in the task: a SIGINT right after this returns
    // is already caught.
    let mut interrupts =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot catch SIGINT: {e}"))?;
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        if interrupts.recv().await.is_none() {
            return;
        }
        eprintln!(
            "metaq: interrupted: finishing the sends in flight (interrupt again to exit now)"
        );
        cancel.cancel();
        if interrupts.recv().await.is_some() {
            eprintln!("metaq: interrupted again: exiting without waiting");
            std::process::exit(i32::from(crate::EXIT_INTERRUPTED));
        }
    });
    Ok(stop)
}
