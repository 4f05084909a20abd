//! What a producer sends and what it gets back.

use bytes::Bytes;

use crate::cluster::{BrokerUri, Partition};
use crate::error::Error;
use crate::protocol::validate_topic;

/// One message: a topic, a payload, an optional attribute (sent in front of
/// the payload, as MetaQ does) and an optional key (used only to choose a
/// partition; never sent).
///
/// ```
/// use metaq::Message;
/// let m = Message::new("orders", "hello").with_attribute("tag1").with_key("customer-42");
/// assert_eq!(m.topic(), "orders");
/// assert_eq!(m.body_len(), 4 + 4 + 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    topic: String,
    payload: Bytes,
    attribute: Option<String>,
    key: Option<Bytes>,
}

impl Message {
    /// A message for `topic`. An empty payload is allowed.
    ///
    /// The payload is anything that converts to [`Bytes`] (`&'static str`,
    /// `String`, `Vec<u8>`, …), so owned buffers are not copied.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Message;
    /// let m = Message::new("orders", vec![1, 2, 3]);
    /// assert_eq!(m.topic(), "orders");
    /// assert_eq!(m.payload().as_ref(), [1, 2, 3]);
    /// assert_eq!(m.attribute(), None);
    /// ```
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            attribute: None,
            key: None,
        }
    }

    /// Sets the attribute (UTF-8 text stored before the payload; flag bit 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Message;
    /// let m = Message::new("orders", "hello").with_attribute("tag1");
    /// assert_eq!(m.attribute(), Some("tag1"));
    /// assert_eq!(m.payload().as_ref(), b"hello"); // the payload is unchanged
    /// ```
    pub fn with_attribute(mut self, attribute: impl Into<String>) -> Self {
        self.attribute = Some(attribute.into());
        self
    }

    /// Sets the key the key-hash selector uses. A keyed message is never
    /// moved to another partition by retries.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Message;
    /// let m = Message::new("orders", "paid").with_key("customer-42");
    /// assert_eq!(m.key().map(|k| k.as_ref()), Some(&b"customer-42"[..]));
    /// assert_eq!(m.body_len(), 4); // the key is not sent
    /// ```
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The topic.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = metaq::Message::new(String::from("orders"), "hello");
    /// assert_eq!(m.topic(), "orders");
    /// ```
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The payload, without the attribute.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = metaq::Message::new("orders", "hello").with_attribute("tag1");
    /// assert_eq!(m.payload().as_ref(), b"hello");
    /// ```
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The attribute, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Message;
    /// assert_eq!(Message::new("orders", "x").attribute(), None);
    /// assert_eq!(Message::new("orders", "x").with_attribute("tag1").attribute(), Some("tag1"));
    /// ```
    pub fn attribute(&self) -> Option<&str> {
        self.attribute.as_deref()
    }

    /// The key, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Message;
    /// assert!(Message::new("orders", "x").key().is_none());
    /// let keyed = Message::new("orders", "x").with_key(vec![7u8]);
    /// assert_eq!(keyed.key().unwrap().as_ref(), [7]);
    /// ```
    pub fn key(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// Bytes of the body on the wire: attribute block (4 + its length) plus payload.
    ///
    /// This is what the producer's maximum message size is checked against.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Message;
    /// let plain = Message::new("orders", "hello");
    /// assert_eq!(plain.body_len(), 5);
    /// let tagged = plain.with_attribute("tag1");
    /// assert_eq!(tagged.body_len(), 4 + "tag1".len() + 5);
    /// ```
    pub fn body_len(&self) -> usize {
        self.attribute.as_ref().map_or(0, |a| 4 + a.len()) + self.payload.len()
    }

    /// Checks everything that can be checked before choosing a broker.
    pub(crate) fn validate(&self, max_size: usize) -> Result<(), Error> {
        validate_topic(&self.topic).map_err(|e| Error::invalid(&self.topic, e))?;
        if self.body_len() > max_size {
            return Err(Error::MessageTooLarge {
                topic: self.topic.clone(),
                size: self.body_len(),
                max: max_size,
            });
        }
        Ok(())
    }
}

/// Where an acknowledged message went.
///
/// Returned by [`Producer::send`](crate::Producer::send) and
/// [`Transaction::send`](crate::producer::Transaction::send).
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), metaq::Error> {
/// use metaq::{Message, Producer};
/// let producer = Producer::builder("127.0.0.1:2181").build().await?;
/// let sent = producer.send(Message::new("orders", "hello")).await?;
/// assert!(sent.attempts >= 1); // more than 1 if it was retried
/// println!("{} stored it at offset {} (id {})", sent.broker, sent.offset, sent.message_id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendResult {
    /// The partition, `brokerId-index`.
    pub partition: Partition,
    /// The record's offset in the partition log (`-1` inside a transaction).
    pub offset: i64,
    /// The id the broker gave the message (opaque; may be negative).
    pub message_id: i64,
    /// The broker that stored it.
    pub broker: BrokerUri,
    /// How many attempts it took (1 when the first one succeeded).
    pub attempts: u32,
}
