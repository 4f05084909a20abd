//! `Producer::send_all`: many messages in one call, one result per message
//! in the order given, with every guarantee of `send` (order per partition,
//! retries, backpressure, cancellation). Real ZooKeeper, development
//! brokers over TCP.

mod producer_support;

use std::time::Duration;

use metaq::{Delivery, Error, Message, Partition};
use producer_support::*;

const TOPIC: &str = "batch";

/// One partition: the results come back in the order given, at increasing
/// offsets, and the broker stored the payloads in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_stored_messages_keep_the_order_given() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();

    let payloads: Vec<String> = (0..5_000).map(|i| format!("ordered-{i:05}")).collect();
    let results = producer
        .send_all(payloads.iter().map(|p| Message::new(TOPIC, p.clone())))
        .await;
    assert_eq!(results.len(), payloads.len());
    let mut last_offset = None;
    for (i, result) in results.iter().enumerate() {
        let sent = result
            .as_ref()
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(sent.partition, Partition::new(0, 0));
        assert!(
            last_offset.is_none_or(|last| sent.offset > last),
            "message {i} at offset {} after {last_offset:?}",
            sent.offset
        );
        last_offset = Some(sent.offset);
    }
    let stored: Vec<Vec<u8>> = bodies(&b0, TOPIC);
    let expected: Vec<Vec<u8>> = payloads.iter().map(|p| p.as_bytes().to_vec()).collect();
    assert_eq!(stored, expected);
    producer.close().await;
}

/// Invalid messages in a batch get their own "not sent" error; the others
/// are sent, round-robin over every partition as single sends would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_fail_alone_and_the_rest_are_spread() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let producer = producer(&root)
        .max_message_size(1024)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;

    let batch = (0..400).map(|i| match i % 100 {
        7 => Message::new("no spaces allowed", "bad topic"),
        8 => Message::new(TOPIC, vec![b'x'; 2048]),
        _ => Message::new(TOPIC, format!("good-{i}")),
    });
    let results = producer.send_all(batch).await;
    let mut per_partition = std::collections::BTreeMap::<Partition, usize>::new();
    for (i, result) in results.iter().enumerate() {
        match (i % 100, result) {
            (7 | 8, Err(error)) => {
                assert_eq!(error.delivery(), Some(Delivery::NotSent), "{i}: {error:?}")
            }
            (7 | 8, Ok(sent)) => panic!("message {i} is invalid but was sent: {sent:?}"),
            (_, Ok(sent)) => *per_partition.entry(sent.partition).or_default() += 1,
            (_, Err(error)) => panic!("message {i}: {error}"),
        }
    }
    assert_eq!(per_partition.len(), 4, "{per_partition:?}");
    for n in per_partition.values() {
        assert!(n.abs_diff(392 / 4) <= 1, "{per_partition:?}");
    }
    assert_eq!(bodies(&b0, TOPIC).len() + bodies(&b1, TOPIC).len(), 392);
    producer.close().await;
}

/// A batch ten times the connection's window: the sends beyond the window
/// wait for room and are sent as room comes, all at once, not one after
/// another behind the first ones. With 50 ms answers, 200 sends and a
/// window of 50 take four rounds; one at a time they would take 7.5 s,
/// past the send timeout, and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_window_go_as_room_comes() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .max_in_flight(50)
        .send_timeout(Duration::from_secs(3))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    b0.faults().delay_responses(Duration::from_millis(50));

    let results = producer
        .send_all((0..200).map(|i| Message::new(TOPIC, format!("windowed-{i:03}"))))
        .await;
    for (i, result) in results.iter().enumerate() {
        result
            .as_ref()
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    let stored = bodies(&b0, TOPIC);
    assert_eq!(stored.len(), 200);
    // Sends that waited for room still leave in the order given.
    let expected: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("windowed-{i:03}").into_bytes())
        .collect();
    assert_eq!(stored, expected);
    producer.close().await;
}

/// A broker cuts its connection while half a batch waits for its answers:
/// those sends are retried on the other broker together, not one after
/// another as the batch reaches them (with 50 ms answers, 500 retries one
/// at a time would take 25 s, past the send timeout). Nothing acknowledged
/// is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_cut_off_mid_batch_are_retried_together() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 1), parts(1, 1)].concat()).await;
    b0.faults().delay_responses(Duration::from_millis(300));
    b1.faults().delay_responses(Duration::from_millis(50));

    let payloads: Vec<String> = (0..1_000).map(|i| format!("cut-{i:04}")).collect();
    let batch = producer.send_all(payloads.iter().map(|p| Message::new(TOPIC, p.clone())));
    let cut = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b0.faults().drop_connections();
    };
    let (results, ()) = tokio::join!(batch, cut);

    let mut retried = 0;
    for (i, result) in results.iter().enumerate() {
        let sent = result
            .as_ref()
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        if sent.attempts > 1 {
            retried += 1;
            assert_eq!(sent.partition, Partition::new(1, 0), "message {i}");
        }
    }
    assert!(retried > 0, "the cut caught no send");
    let mut stored: Vec<Vec<u8>> = bodies(&b0, TOPIC);
    stored.extend(bodies(&b1, TOPIC));
    for payload in &payloads {
        assert!(
            stored.iter().any(|s| s == payload.as_bytes()),
            "{payload} acknowledged but not stored"
        );
    }
    producer.close().await;
}

/// Dropping a batch gives its room on the connection back at once: a send
/// made right after gets room although the dropped requests' answers are
/// still hundreds of milliseconds away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_batch_gives_its_room_back() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .max_in_flight(8)
        .send_timeout(Duration::from_millis(150))
        .retries(0)
        .heartbeat_interval(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    b0.faults().delay_responses(Duration::from_millis(500));
    {
        let mut batch = Box::pin(
            producer.send_all((0..8).map(|i| Message::new(TOPIC, format!("dropped-{i}")))),
        );
        assert!(futures::poll!(batch.as_mut()).is_pending());
    }
    b0.faults().delay_responses(Duration::ZERO);
    let sent = producer
        .send(Message::new(TOPIC, "after"))
        .await
        .expect("the dropped batch's room was given back");
    assert_eq!(sent.attempts, 1);
    producer.close().await;
}

/// An empty batch resolves at once with no results; a batch to a topic no
/// broker serves fails every message with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_unserved_batches() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .publish_timeout(Duration::from_millis(300))
        .send_timeout(Duration::from_millis(600))
        .build()
        .await
        .unwrap();
    assert!(producer.send_all(Vec::new()).await.is_empty());
    let results = producer
        .send_all((0..3).map(|i| Message::new("nobody-serves-this", format!("m{i}"))))
        .await;
    assert_eq!(results.len(), 3);
    for result in results {
        let error = result.expect_err("no broker serves the topic");
        assert!(
            matches!(
                error,
                Error::TopicUnavailable { .. } | Error::NoPartition { .. }
            ),
            "{error:?}"
        );
    }
    producer.close().await;
}
