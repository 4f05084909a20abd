//! `metaq xa`: list and finish the XA branches one broker holds, for
//! operators resolving what a transaction manager left prepared.
//!
//! The broker is named by its address (`--server meta://host:port`): XA
//! branches live on one broker, and its address is what the broker's logs,
//! `metaq routes` and the branch's own producer report. No ZooKeeper is
//! needed, so a broker can be resolved even when its registration is gone.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use metaq::producer::{xa_code, XaResource};
use metaq::protocol::{TxKey, XaTxId};
use metaq::{BrokerUri, Error, Producer};
use serde_json::json;

#[derive(Args)]
pub(crate) struct XaArgs {
    #[command(subcommand)]
    action: Action,
}

/// The broker and output settings every `xa` subcommand shares.
#[derive(Args)]
struct Target {
    /// The broker holding the branches, `meta://host:port` (find it with
    /// `metaq routes`).
    #[arg(long, value_name = "URI", value_parser = parse_server)]
    server: BrokerUri,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// How long to wait for the broker's answer, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

#[derive(Subcommand)]
enum Action {
    /// List the prepared branches' keys, one per line (with --json, one
    /// object with a "prepared" list).
    Recover {
        #[command(flatten)]
        target: Target,
        /// Only the branches of this unique qualifier (the resource
        /// manager's name, the last part of a key); without it, every
        /// qualifier's.
        #[arg(long)]
        qualifier: Option<String>,
    },
    /// Commit a branch (prepared, or with --one-phase one that was not).
    Commit {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        xid: Xid,
        /// Commit in one phase: the branch was ended but not prepared.
        #[arg(long)]
        one_phase: bool,
    },
    /// Roll a branch back: none of its messages become visible.
    Rollback {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        xid: Xid,
    },
    /// Tell the broker to forget a heuristically completed branch.
    Forget {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        xid: Xid,
    },
}

#[derive(Args)]
struct Xid {
    /// The branch key, `XID:<formatId>:<gtridHex>:<bqualHex>:<uniqueQualifier>`,
    /// as `metaq xa recover` lists it.
    #[arg(long, value_name = "KEY", value_parser = parse_xid)]
    xid: XaTxId,
}

fn parse_server(text: &str) -> Result<BrokerUri, String> {
    text.parse()
        .map_err(|e: metaq::discovery::InvalidBrokerUri| e.to_string())
}

fn parse_xid(text: &str) -> Result<XaTxId, String> {
    const FORM: &str = "an XA branch key is XID:<formatId>:<gtridHex>:<bqualHex>:<uniqueQualifier>";
    match text.parse::<TxKey>() {
        Ok(TxKey::Xa(xid)) => Ok(xid),
        Ok(TxKey::Local(_)) => Err(format!("{text:?} is a local transaction key; {FORM}")),
        Ok(TxKey::Null) => Err(format!("\"null\" names no branch; {FORM}")),
        Err(e) => Err(format!("{e}; {FORM}")),
    }
}

pub(crate) async fn run(args: XaArgs) -> Result<ExitCode, String> {
    let target = match &args.action {
        Action::Recover { target, .. }
        | Action::Commit { target, .. }
        | Action::Rollback { target, .. }
        | Action::Forget { target, .. } => target,
    };
    let producer = Producer::builder_for_server(target.server.to_string())
        .transaction_request_timeout(Duration::from_millis(target.timeout_ms.max(1)))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let result = match producer.xa_resource_at(&target.server) {
        Ok(xa) => act(&xa, &args.action).await,
        Err(e) => Err(e.to_string()),
    };
    producer.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn act(xa: &XaResource, action: &Action) -> Result<(), String> {
    let (target, xid, operation, done) = match action {
        Action::Recover { target, qualifier } => return recover(xa, target, qualifier).await,
        Action::Commit {
            target,
            xid,
            one_phase,
        } => (
            target,
            &xid.xid,
            "commit",
            xa.commit(&xid.xid, *one_phase).await,
        ),
        Action::Rollback { target, xid } => {
            (target, &xid.xid, "rollback", xa.rollback(&xid.xid).await)
        }
        Action::Forget { target, xid } => (target, &xid.xid, "forget", xa.forget(&xid.xid).await),
    };
    done.map_err(|e| describe(&e))?;
    let past = match operation {
        "commit" => "committed",
        "rollback" => "rolled back",
        _ => "forgotten",
    };
    if target.json {
        say!(
            "{}",
            json!({
                "broker": xa.broker().to_string(),
                "xid": xid.to_string(),
                "operation": operation,
                "ok": true,
            })
        );
    } else {
        say!("{past} {xid} on {}", xa.broker());
    }
    Ok(())
}

async fn recover(
    xa: &XaResource,
    target: &Target,
    qualifier: &Option<String>,
) -> Result<(), String> {
    let prepared = match qualifier {
        Some(qualifier) => {
            let xa = xa
                .clone()
                .with_unique_qualifier(qualifier.clone())
                .map_err(|e| format!("--qualifier: {e}"))?;
            xa.recover().await
        }
        None => xa.recover_all().await,
    }
    .map_err(|e| describe(&e))?;
    if target.json {
        let keys: Vec<String> = prepared.iter().map(ToString::to_string).collect();
        say!(
            "{}",
            json!({
                "broker": xa.broker().to_string(),
                "qualifier": qualifier,
                "prepared": keys,
            })
        );
    } else {
        for xid in &prepared {
            say!("{xid}");
        }
    }
    Ok(())
}

/// An error on one line, naming the XA code when there is one.
fn describe(error: &Error) -> String {
    match error {
        Error::Xa {
            operation,
            xid,
            broker,
            code,
            reason,
        } => {
            let of = if xid == "null" || xid == "-" {
                String::new()
            } else {
                format!(" of {xid}")
            };
            format!(
                "XA {operation}{of} on {broker} failed: {} ({code}): {reason}",
                xa_code::name(*code)
            )
        }
        other => other.to_string(),
    }
}
