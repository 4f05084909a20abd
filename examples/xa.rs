//! XA transactions with two-phase commit: a coordinator stub enlists one
//! branch on every broker that serves the topic, prepares them all, and
//! commits only if every broker voted yes — otherwise it rolls every branch
//! back. A real transaction manager also logs its decision before the
//! commit phase, so that after a crash it can `recover` the prepared
//! branches and finish them the same way.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example xa
//! ```

use metaq::producer::{PrepareVote, XaResource, XaTxId};
use metaq::{Message, Producer};

/// An environment variable, or `default` when it is not set.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// One enlisted broker: its resource and its branch of the transaction.
struct Enlisted {
    resource: XaResource,
    xid: XaTxId,
}

/// Phase one: every branch votes. Returns the branches that must be
/// committed (read-only ones are already finished), or the error that makes
/// the coordinator roll back.
async fn prepare_all(branches: &[Enlisted]) -> metaq::Result<Vec<&Enlisted>> {
    let mut to_commit = Vec::new();
    for branch in branches {
        match branch.resource.prepare(&branch.xid).await? {
            PrepareVote::Ok => to_commit.push(branch),
            PrepareVote::ReadOnly => println!("{}: read-only, finished", branch.xid),
        }
    }
    Ok(to_commit)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let zk = setting("METAQ_ZK", "127.0.0.1:2181");
    let root = setting("METAQ_ROOT", "/meta");
    let topic = setting("METAQ_TOPIC", "demo");

    let producer = Producer::builder(&zk).root(&root).build().await?;
    producer.publish(&topic).await?;

    // The global transaction id is the coordinator's; each broker gets its
    // own branch qualifier.
    let global_id = format!("transfer-{}", std::process::id()).into_bytes();
    let mut branches = Vec::new();
    for (broker_id, uri) in producer.xa_brokers() {
        let resource = producer.xa_resource_on(broker_id)?;
        let xid = resource.xid(1, global_id.clone(), broker_id.to_string().into_bytes());
        let mut branch = resource.start(xid).await?;
        for i in 0..2 {
            let text = format!("xa broker {broker_id} message {i}");
            branch.send(Message::new(topic.clone(), text)).await?;
        }
        let xid = branch.end().await?;
        println!("{xid}: 2 messages held by {uri}");
        branches.push(Enlisted { resource, xid });
    }

    match prepare_all(&branches).await {
        Ok(to_commit) => {
            for branch in to_commit {
                branch.resource.commit(&branch.xid, false).await?;
                println!("{}: committed on {}", branch.xid, branch.resource.broker());
            }
        }
        Err(error) => {
            eprintln!("a branch could not prepare ({error}); rolling back every branch");
            for branch in &branches {
                if let Err(e) = branch.resource.rollback(&branch.xid).await {
                    eprintln!("{}: rollback failed: {e}", branch.xid);
                }
            }
            return Err(error.into());
        }
    }

    // A second transaction, rolled back after prepare: nothing of it is seen.
    let resource = producer.xa_resource()?;
    let xid = resource.xid(1, b"abandoned".to_vec(), b"0".to_vec());
    let mut branch = resource.start(xid).await?;
    branch
        .send(Message::new(topic.clone(), "xa rolled back"))
        .await?;
    let xid = branch.end().await?;
    resource.prepare(&xid).await?;
    resource.rollback(&xid).await?;
    println!("{xid}: rolled back after prepare");

    producer.close().await;
    Ok(())
}
