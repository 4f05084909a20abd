//! The wire format alone: encoding a put, decoding a result, the checksum.
//!
//! `cargo bench --bench protocol`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metaq::protocol::{checksum, encode_put, ClientCodec, PutHeader};
use tokio_util::codec::Decoder;

/// Payload sizes of the figures in the README: 100 B and 1 KiB.
const SIZES: [usize; 2] = [100, 1024];

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_put");
    for size in SIZES {
        let payload = vec![b'x'; size];
        let header = PutHeader {
            topic: "bench",
            partition: 3,
            tx_key: None,
            opaque: 123_456,
        };
        // One buffer reused, as a connection's write buffer is.
        let mut buffer = BytesMut::with_capacity(size + 128);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| {
                buffer.clear();
                encode_put(&mut buffer, black_box(&header), None, black_box(payload))
                    .expect("a valid put encodes");
                black_box(buffer.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    // A put's answer as the development broker writes it.
    let answer: &[u8] = b"result 200 24 123456\r\n-5468572396564774912 3 9";
    let mut codec = ClientCodec::default();
    let mut buffer = BytesMut::with_capacity(answer.len());
    c.bench_function("decode_put_result", |b| {
        b.iter(|| {
            buffer.extend_from_slice(black_box(answer));
            let response = codec
                .decode(&mut buffer)
                .expect("a valid answer decodes")
                .expect("a whole frame");
            black_box(response.put_result())
        })
    });
}

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for size in SIZES {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| checksum(black_box(payload)))
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode, crc);
criterion_main!(benches);
