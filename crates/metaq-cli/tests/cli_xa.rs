//! `metaq xa` against a development broker: a branch prepared by the
//! library is listed by `recover`, finished by `commit`, and gone after;
//! an unknown branch names its XA code; a malformed key is a usage error.

mod cli_support;
#[path = "../../../tests/producer_support/mod.rs"]
mod producer_support;

use cli_support::*;
use metaq::protocol::XaTxId;
use metaq::Message;
use producer_support::*;

const TOPIC: &str = "xa";

/// `metaq xa <action> --server <server>` with extra arguments.
fn xa(action: &str, server: &str, extra: &[&str]) -> tokio::process::Command {
    let mut args = vec!["xa", action, "--server", server];
    args.extend_from_slice(extra);
    metaq(&args)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_branch_is_recovered_and_committed_from_the_shell() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).build().await.expect("producer");
    producer.publish(TOPIC).await.expect("publish");
    wait_partitions(&producer, TOPIC, &parts(0, 1)).await;
    let resource = producer
        .xa_resource_on(0)
        .unwrap()
        .with_unique_qualifier("cli-test")
        .unwrap();
    let xid: XaTxId = resource.xid(1, b"global".to_vec(), b"b0".to_vec());
    let mut branch = resource.start(xid).await.expect("start");
    for text in ["one", "two"] {
        branch
            .send(Message::new(TOPIC, text))
            .await
            .expect("send in branch");
    }
    let xid = branch.end().await.expect("end");
    resource.prepare(&xid).await.expect("prepare");
    let key = xid.to_string();
    let server = format!("meta://{}", b0.local_addr());

    let output = run(xa("recover", &server, &[])).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(stdout(&output), format!("{key}\n"));
    let output = run(xa("recover", &server, &["--qualifier", "other", "--json"])).await;
    let listed = json_lines(&output);
    assert_eq!(listed.len(), 1, "{}", describe(&output));
    assert_eq!(listed[0]["prepared"], serde_json::json!([]));
    assert!(
        bodies(&b0, TOPIC).is_empty(),
        "nothing visible before commit"
    );

    let output = run(xa("commit", &server, &["--xid", &key])).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).starts_with("committed "),
        "{}",
        describe(&output)
    );
    assert_eq!(bodies(&b0, TOPIC), [b"one".to_vec(), b"two".to_vec()]);

    let output = run(xa(
        "recover",
        &server,
        &["--qualifier", "cli-test", "--json"],
    ))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(json_lines(&output)[0]["prepared"], serde_json::json!([]));

    // Committed: the broker no longer knows it.
    let output = run(xa("commit", &server, &["--xid", &key])).await;
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("XAER_NOTA"), "{stderr}");
    assert_eq!(bodies(&b0, TOPIC).len(), 2, "committed once");

    for bad in ["XID:1:zz:00:q", "TX:session:1", "junk"] {
        let output = run(xa("rollback", &server, &["--xid", bad])).await;
        assert!(!output.status.success(), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("invalid value") && stderr.contains("--xid"),
            "{stderr}"
        );
    }
    producer.close().await;
}
