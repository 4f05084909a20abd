//! The `metrics` feature: sends reported through the [`metrics`] facade,
//! to whatever recorder the application installed (Prometheus, StatsD, …).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `metaq_sent_total` | counter | `topic`, `broker` | sends that succeeded |
//! | `metaq_failed_total` | counter | `topic`, `broker`, `delivery` | sends that failed, by delivery kind (`not_sent`, `maybe_sent`, `rejected`, `other`) |
//! | `metaq_retries_total` | counter | `topic`, `broker` | attempts retried elsewhere after failing on `broker` |
//! | `metaq_send_latency_seconds` | histogram | `topic`, `broker` | from the call to the answer of a send that succeeded, retries included |
//! | `metaq_in_flight` | gauge | `topic`, `broker` | attempts waiting for their answer |
//!
//! `broker` is the broker's address (`meta://host:port`); a failure that
//! reached no broker says `none`. The handles of a topic's brokers are
//! registered when its route changes and kept in the route, so a send
//! reaches them without a registry lookup; failures (already the slow
//! path) look theirs up.
//!
//! Without the feature every type here is empty and every call a no-op the
//! compiler removes.

#[cfg(feature = "metrics")]
pub(crate) use enabled::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::*;

#[cfg(feature = "metrics")]
mod enabled {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use metrics::{Counter, Gauge, Histogram, Label, Unit};

    use crate::cluster::BrokerUri;
    use crate::error::{Delivery, Error};
    use crate::net::Connection;

    /// The handles of one (topic, broker).
    #[derive(Debug)]
    struct SendMetrics {
        sent: Counter,
        retries: Counter,
        latency: Histogram,
        in_flight: Gauge,
    }

    /// One (topic, broker)'s handles, shared by its sends.
    #[derive(Debug, Clone)]
    pub(crate) struct Handles(Arc<SendMetrics>);

    impl Handles {
        /// Registers (or finds) the handles of `topic` on `broker`.
        pub(crate) fn lookup(topic: &str, broker: &BrokerUri) -> Handles {
            let labels = vec![
                Label::new("topic", topic.to_owned()),
                Label::new("broker", broker.to_string()),
            ];
            Handles(Arc::new(SendMetrics {
                sent: metrics::counter!("metaq_sent_total", labels.clone()),
                retries: metrics::counter!("metaq_retries_total", labels.clone()),
                latency: metrics::histogram!("metaq_send_latency_seconds", labels.clone()),
                in_flight: metrics::gauge!("metaq_in_flight", labels),
            }))
        }

        /// An attempt is queued: in flight until the returned guard drops.
        /// Takes the handles, so a send clones their `Arc` once.
        pub(crate) fn attempt(self) -> Attempt {
            self.0.in_flight.increment(1.0);
            Attempt(self)
        }
    }

    /// The handles of a route's brokers, by broker id.
    #[derive(Debug, Default)]
    pub(crate) struct PerBroker(BTreeMap<u32, Handles>);

    impl PerBroker {
        pub(crate) fn new(topic: &str, connections: &BTreeMap<u32, Connection>) -> Self {
            PerBroker(
                connections
                    .iter()
                    .map(|(&id, connection)| (id, Handles::lookup(topic, connection.uri())))
                    .collect(),
            )
        }

        pub(crate) fn get(&self, broker_id: u32) -> Option<Handles> {
            self.0.get(&broker_id).cloned()
        }
    }

    /// One attempt in flight, counted in `metaq_in_flight` until dropped.
    #[derive(Debug)]
    pub(crate) struct Attempt(Handles);

    impl Attempt {
        /// The send succeeded with this attempt, `latency` after its call.
        pub(crate) fn sent(&self, latency: Duration) {
            self.0 .0.sent.increment(1);
            self.0 .0.latency.record(latency.as_secs_f64());
        }

        /// The attempt failed and the send tries another broker.
        pub(crate) fn retried(&self) {
            self.0 .0.retries.increment(1);
        }
    }

    impl Drop for Attempt {
        fn drop(&mut self) {
            self.0 .0.in_flight.decrement(1.0);
        }
    }

    /// A send to `topic` failed with `error` (labelled with the broker of
    /// its last attempt, if it reached one).
    pub(crate) fn count_failure(topic: &str, error: &Error) {
        let delivery = match error.delivery() {
            Some(Delivery::NotSent) => "not_sent",
            Some(Delivery::MaybeSent) => "maybe_sent",
            Some(Delivery::Rejected) => "rejected",
            None => "other",
        };
        let broker = match error {
            Error::NotSent { broker, .. }
            | Error::Timeout { broker, .. }
            | Error::ConnectionLost { broker, .. }
            | Error::Rejected { broker, .. } => broker.to_string(),
            _ => "none".to_owned(),
        };
        let labels = vec![
            Label::new("topic", topic.to_owned()),
            Label::new("broker", broker),
            Label::new("delivery", delivery),
        ];
        metrics::counter!("metaq_failed_total", labels).increment(1);
    }

    /// Describes the metrics to the recorder (units and help texts).
    pub(crate) fn describe() {
        metrics::describe_counter!("metaq_sent_total", "MetaQ sends that succeeded");
        metrics::describe_counter!(
            "metaq_failed_total",
            "MetaQ sends that failed, by delivery kind"
        );
        metrics::describe_counter!(
            "metaq_retries_total",
            "MetaQ send attempts retried on another broker after failing on this one"
        );
        metrics::describe_histogram!(
            "metaq_send_latency_seconds",
            Unit::Seconds,
            "Time from a MetaQ send's call to its broker's answer, retries included (successes only)"
        );
        metrics::describe_gauge!(
            "metaq_in_flight",
            "MetaQ send attempts waiting for their broker's answer"
        );
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::cluster::BrokerUri;
    use crate::error::Error;
    use crate::net::Connection;

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Handles;

    impl Handles {
        pub(crate) fn lookup(_topic: &str, _broker: &BrokerUri) -> Handles {
            Handles
        }

        pub(crate) fn attempt(self) -> Attempt {
            Attempt
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct PerBroker;

    impl PerBroker {
        pub(crate) fn new(_topic: &str, _connections: &BTreeMap<u32, Connection>) -> Self {
            PerBroker
        }

        pub(crate) fn get(&self, _broker_id: u32) -> Option<Handles> {
            Some(Handles)
        }
    }

    #[derive(Debug)]
    pub(crate) struct Attempt;

    impl Attempt {
        pub(crate) fn sent(&self, _latency: Duration) {}

        pub(crate) fn retried(&self) {}
    }

    pub(crate) fn count_failure(_topic: &str, _error: &Error) {}

    pub(crate) fn describe() {}
}
