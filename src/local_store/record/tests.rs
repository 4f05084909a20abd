//! The record codec: round trips and every kind of damage.

use proptest::prelude::*;

use super::*;

const MAX: usize = 1 << 20;

fn sample() -> Message {
    Message::new("orders", "hello")
        .with_attribute("tag1")
        .with_key("customer-42")
}

fn encoded(seq: u64, message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(seq, message, &mut out);
    out
}

#[test]
fn round_trip_with_and_without_optional_parts() {
    for message in [
        sample(),
        Message::new("t", ""),
        Message::new("t", vec![0u8; 3]).with_key(Bytes::new()),
        Message::new("t", "x").with_attribute(""),
    ] {
        let bytes = encoded(7, &message);
        assert_eq!(bytes.len(), encoded_len(&message));
        assert_eq!(decode(&bytes, MAX), Ok((7, message, bytes.len())));
    }
}

#[test]
fn layout_is_little_endian_with_magic_first() {
    let bytes = encoded(0x0102, &Message::new("t", "p"));
    assert_eq!(&bytes[..4], &MAGIC.to_le_bytes());
    assert_eq!(u32_at(&bytes, 4) as usize, bytes.len() - HEADER_LEN);
    assert_eq!(&bytes[12..20], &0x0102u64.to_le_bytes());
}

#[test]
fn every_short_prefix_is_short() {
    let bytes = encoded(1, &sample());
    for cut in 0..bytes.len() {
        match decode(&bytes[..cut], MAX) {
            Err(RecordError::Short { have, need }) => {
                assert_eq!(have, cut);
                assert!(need > cut);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn bad_magic_is_detected() {
    let mut bytes = encoded(1, &sample());
    bytes[0] ^= 0xFF;
    assert!(matches!(decode(&bytes, MAX), Err(RecordError::BadMagic(_))));
}

#[test]
fn huge_or_tiny_length_is_refused_before_reading_the_body() {
    let mut bytes = encoded(1, &sample());
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode(&bytes, MAX), Err(RecordError::BadLength(u32::MAX)));
    bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(decode(&bytes, MAX), Err(RecordError::BadLength(3)));
    // Just over the bound given by the caller.
    let len = bytes.len();
    assert!(matches!(
        decode(&encoded(1, &sample()), len - 1),
        Err(RecordError::BadLength(_))
    ));
    assert!(decode(&encoded(1, &sample()), len).is_ok());
}

#[test]
fn every_flipped_bit_after_the_magic_is_caught() {
    let bytes = encoded(9, &sample());
    for at in 4..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1 << bit;
            let result = decode(&damaged, MAX);
            assert!(
                matches!(
                    result,
                    Err(RecordError::BadCrc { .. }
                        | RecordError::BadLength(_)
                        | RecordError::Short { .. })
                ),
                "byte {at} bit {bit}: {result:?}"
            );
        }
    }
}

#[test]
fn a_body_with_a_valid_crc_but_bad_structure_is_malformed() {
    // Re-seal a body after damaging it, as a buggy writer would.
    let reseal = |mut bytes: Vec<u8>| {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes[4..8]);
        hasher.update(&bytes[HEADER_LEN..]);
        let crc = hasher.finalize();
        bytes[8..12].copy_from_slice(&crc.to_le_bytes());
        bytes
    };
    let mut flags = encoded(1, &sample());
    flags[20] = 0x80;
    assert_eq!(
        decode(&reseal(flags), MAX),
        Err(RecordError::Malformed("unknown flag bits"))
    );
    let mut topic = encoded(1, &Message::new("t", "p"));
    topic[23] = 0xFF; // the topic's only byte
    assert_eq!(
        decode(&reseal(topic), MAX),
        Err(RecordError::Malformed("topic is not UTF-8"))
    );
    let mut part = encoded(1, &Message::new("t", "p"));
    let at = 24; // the payload length
    part[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(
        decode(&reseal(part), MAX),
        Err(RecordError::Malformed("a part runs past the end"))
    );
    let mut extra = encoded(1, &Message::new("t", "p"));
    extra.push(0);
    let body_len = (extra.len() - HEADER_LEN) as u32;
    extra[4..8].copy_from_slice(&body_len.to_le_bytes());
    assert_eq!(
        decode(&reseal(extra), MAX),
        Err(RecordError::Malformed("bytes left after the payload"))
    );
}

#[test]
fn errors_describe_themselves() {
    assert_eq!(
        RecordError::Short { have: 3, need: 12 }.to_string(),
        "cut short (3 of 12 bytes)"
    );
    assert!(RecordError::BadMagic(1).to_string().contains("magic"));
}

proptest! {
    #[test]
    fn round_trip(
        seq in any::<u64>(),
        topic in "[A-Za-z0-9_.-]{1,40}",
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        attribute in proptest::option::of("\\PC{0,20}"),
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
    ) {
        let mut message = Message::new(topic, payload);
        if let Some(a) = attribute { message = message.with_attribute(a); }
        if let Some(k) = key { message = message.with_key(k); }
        let bytes = encoded(seq, &message);
        prop_assert_eq!(decode(&bytes, MAX), Ok((seq, message, bytes.len())));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes, MAX);
    }
}
