//! Prints the MetaQ tree under a ZooKeeper root: every node, its data, and
//! whether it is ephemeral, as a Java MetaQ master leaves it.
//!
//! The ensemble and root come from the arguments, else from `METAQ_ZK` and
//! `METAQ_ROOT` as in the other examples, else `127.0.0.1:2181` and `/meta`:
//!
//! ```text
//! cargo run --example show_registration -- 127.0.0.1:2181 /meta
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta cargo run --example show_registration
//! ```

use std::collections::VecDeque;

use zookeeper_client::Client;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut setting = |name: &str, default: &str| {
        args.next()
            .or_else(|| std::env::var(name).ok())
            .unwrap_or_else(|| default.to_owned())
    };
    let connect = setting("METAQ_ZK", "127.0.0.1:2181");
    let root = metaq::discovery::normalize_root(&setting("METAQ_ROOT", "/meta"));
    let client = Client::connector().connect(&connect).await?;
    let mut queue = VecDeque::from([root]);
    while let Some(path) = queue.pop_front() {
        let (data, stat) = match client.get_data(&path).await {
            Ok(found) => found,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(e.into()),
        };
        let kind = if stat.ephemeral_owner != 0 {
            "ephemeral"
        } else {
            "persistent"
        };
        println!("{path:<60} {kind:<10} {}", String::from_utf8_lossy(&data));
        let mut children = client.list_children(&path).await.unwrap_or_default();
        children.sort();
        queue.extend(children.into_iter().map(|c| format!("{path}/{c}")));
    }
    Ok(())
}
