//! `send_with_timeout`: a send's own budget in place of the producer's
//! `send_timeout`, shorter or longer. Real ZooKeeper, a development broker
//! whose answers are late.

mod producer_support;

use std::time::Duration;

use metaq::{Delivery, Error, Message};
use producer_support::*;
use tokio::time::Instant;

const TOPIC: &str = "timeouts";

/// Against a broker answering 800 ms late: with the producer's 300 ms a
/// send fails as "maybe sent"; the same send given 5 s succeeds; one given
/// 100 ms by a producer whose own timeout is 30 s fails long before that.
/// A zero timeout is refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_keeps_to_its_own_timeout() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let short = producer(&root)
        .send_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    short.publish(TOPIC).await.unwrap();
    b0.faults().delay_responses(Duration::from_millis(800));

    let error = short
        .send(Message::new(TOPIC, "default"))
        .await
        .expect_err("300 ms is too short");
    assert_eq!(error.delivery(), Some(Delivery::MaybeSent), "{error:?}");
    let sent = short
        .send_with_timeout(Message::new(TOPIC, "patient"), Duration::from_secs(5))
        .await
        .expect("5 s is enough");
    assert_eq!(sent.attempts, 1);

    let long = producer(&root)
        .send_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    long.publish(TOPIC).await.unwrap();
    let started = Instant::now();
    let error = long
        .send_with_timeout(Message::new(TOPIC, "hurried"), Duration::from_millis(100))
        .await
        .expect_err("100 ms is too short");
    let took = started.elapsed();
    assert_eq!(error.delivery(), Some(Delivery::MaybeSent), "{error:?}");
    // A bound far above 100 ms and far below the producer's 30 s.
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let before = b0.records(Some(TOPIC)).len();
    let error = long
        .send_with_timeout(Message::new(TOPIC, "never"), Duration::ZERO)
        .await
        .expect_err("a zero timeout");
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    b0.faults().delay_responses(Duration::ZERO);
    long.send(Message::new(TOPIC, "after")).await.unwrap();
    let bodies = bodies(&b0, TOPIC);
    assert_eq!(bodies.len(), before + 1);
    assert!(!bodies.contains(&b"never".to_vec()));
    short.close().await;
    long.close().await;
}
