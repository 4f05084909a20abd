//! Local transactions, end to end, on a cluster this example starts itself
//! (a real ZooKeeper from the Debian `zookeeper` package and two development
//! brokers, through `metaq_testkit`):
//!
//! 1. a committed transaction: its messages appear together;
//! 2. a rolled-back one: nothing appears;
//! 3. the pinned broker's connection dies mid-transaction: the typed error,
//!    and nothing of that transaction is stored.
//!
//! ```text
//! cargo run --example transaction
//! ```

use metaq::{Error, Message, Producer};
use metaq_testkit::{unique_root, TestBroker, ZkServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let zk = ZkServer::start()?;
    let root = unique_root();
    let brokers = [
        TestBroker::start(&zk, &root, 0, &[("orders", 2)]).await,
        TestBroker::start(&zk, &root, 1, &[("orders", 2)]).await,
    ];
    let producer = Producer::builder(zk.connect_string())
        .root(&root)
        .build()
        .await?;
    producer.publish("orders").await?;
    let stored = |i: usize| brokers[i].records(Some("orders")).len();

    let mut tx = producer.begin_transaction()?;
    for i in 0..3 {
        tx.send(Message::new("orders", format!("committed {i}")))
            .await?;
    }
    let pinned = tx.broker().cloned().expect("pinned after the first send");
    println!(
        "{} pinned to {pinned}; before commit: {} + {} stored",
        tx.key(),
        stored(0),
        stored(1)
    );
    tx.commit().await?;
    println!("after commit: {} + {} stored", stored(0), stored(1));

    let mut tx = producer.begin_transaction()?;
    tx.send(Message::new("orders", "rolled back")).await?;
    tx.rollback().await?;
    println!("after a rollback: {} + {} stored", stored(0), stored(1));

    let mut tx = producer.begin_transaction()?;
    tx.send(Message::new("orders", "doomed")).await?;
    let victim = brokers
        .iter()
        .position(|b| Some(&b.uri()) == tx.broker())
        .expect("pinned to one of ours");
    println!(
        "cutting the connections of broker {victim}, which holds {}",
        tx.key()
    );
    brokers[victim].faults().drop_connections();
    match tx.send(Message::new("orders", "after the crash")).await {
        Err(e @ Error::TransactionFailed { .. }) => println!("send failed as expected: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    match tx.commit().await {
        Err(e) => println!("commit refused: {e}"),
        Ok(()) => println!("unexpected: committed"),
    }
    println!("stored in the end: {} + {}", stored(0), stored(1));
    producer.close().await;
    Ok(())
}
