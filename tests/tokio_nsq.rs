//! Interop with a real Rust NSQ client: `tokio-nsq` 0.14 (crates.io) against the `ringsq` binary.
//!
//! tokio-nsq is the strictest client we know (NSQ.md §4): it requires a feature-negotiated
//! IDENTIFY response with all 13 fields typed exactly, sends `"client_id":null`-style keys, and
//! pipelines commands. A producer publishes a few thousand messages (PUB, MPUB and one DPUB),
//! a consumer on a fresh channel receives them; every body must arrive at least once and the
//! count of unique bodies must match. Then the same client over TLS with AUTH credentials,
//! against a broker that requires both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth_support;
mod common;
mod tls_support;

use std::collections::HashSet;
use std::time::Duration;

use common::Broker;
use tokio_nsq::{
    NSQChannel, NSQConfigShared, NSQConfigSharedTLS, NSQConsumerConfig, NSQConsumerConfigSources,
    NSQEvent, NSQProducer, NSQProducerConfig, NSQTopic,
};

const SINGLE_PUBS: usize = 1000;
const MPUB_BATCHES: usize = 20;
const MPUB_BATCH_LEN: usize = 100;
/// Messages are acknowledged in windows so the producer's queue never grows without bound.
const PUB_WINDOW: usize = 100;
const OVERALL_TIMEOUT: Duration = Duration::from_secs(120);

async fn wait_healthy(producer: &mut NSQProducer) {
    loop {
        match producer.consume().await {
            Some(NSQEvent::Healthy()) => return,
            Some(NSQEvent::Unhealthy()) | None => {
                panic!("tokio-nsq producer could not connect/IDENTIFY to ringsq")
            }
            Some(_) => {}
        }
    }
}

/// Wait for `n` producer acknowledgements (`OK` frames).
async fn wait_acks(producer: &mut NSQProducer, n: usize) {
    let mut acked = 0;
    while acked < n {
        match producer.consume().await {
            Some(NSQEvent::Ok()) => acked += 1,
            Some(NSQEvent::Unhealthy()) | None => {
                panic!("tokio-nsq producer connection failed after {acked}/{n} acks")
            }
            Some(_) => {}
        }
    }
}

async fn produce(addr: String, topic: &std::sync::Arc<NSQTopic>) -> HashSet<Vec<u8>> {
    let mut producer = NSQProducerConfig::new(addr).build();
    wait_healthy(&mut producer).await;
    let mut sent = HashSet::new();

    for start in (0..SINGLE_PUBS).step_by(PUB_WINDOW) {
        let end = (start + PUB_WINDOW).min(SINGLE_PUBS);
        for i in start..end {
            let body = format!("pub-{i}").into_bytes();
            sent.insert(body.clone());
            producer.publish(topic, body).await.expect("queue PUB");
        }
        wait_acks(&mut producer, end - start).await;
    }
    for b in 0..MPUB_BATCHES {
        let batch: Vec<Vec<u8>> = (0..MPUB_BATCH_LEN)
            .map(|i| format!("mpub-{b}-{i}").into_bytes())
            .collect();
        sent.extend(batch.iter().cloned());
        producer
            .publish_multiple(topic, batch)
            .await
            .expect("queue MPUB");
        wait_acks(&mut producer, 1).await;
    }
    let deferred = b"dpub-0".to_vec();
    sent.insert(deferred.clone());
    producer
        .publish_deferred(topic, deferred, 200)
        .await
        .expect("queue DPUB");
    wait_acks(&mut producer, 1).await;
    sent
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_nsq_producer_and_consumer_round_trip() {
    let broker = Broker::start(&[]);
    let addr = broker.tcp_addr().to_string();
    let topic = NSQTopic::new("tokio_nsq_interop").expect("valid topic");
    let channel = NSQChannel::new("interop").expect("valid channel");

    // Subscribe first so the channel exists; then publish everything.
    let mut consumer = NSQConsumerConfig::new(topic.clone(), channel)
        .set_max_in_flight(200)
        .set_sources(NSQConsumerConfigSources::Daemons(vec![addr.clone()]))
        .build();

    let run = async {
        let sent = produce(addr, &topic).await;
        let mut received: HashSet<Vec<u8>> = HashSet::new();
        while received.len() < sent.len() {
            match consumer.consume().await {
                Some(NSQEvent::Message(m)) => {
                    assert!(m.attempt >= 1, "attempts start at 1, got {}", m.attempt);
                    assert!(
                        sent.contains(&m.body),
                        "received a body that was never published: {:?}",
                        String::from_utf8_lossy(&m.body)
                    );
                    received.insert(m.body.clone());
                    m.finish().await;
                }
                Some(_) => {}
                None => panic!("tokio-nsq consumer stream ended"),
            }
        }
        (sent.len(), received.len())
    };

    let (sent, received) = tokio::time::timeout(OVERALL_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "tokio-nsq round trip did not finish within {OVERALL_TIMEOUT:?}\n--- ringsq output ---\n{}",
                broker.logs()
            )
        });
    assert_eq!(sent, SINGLE_PUBS + MPUB_BATCHES * MPUB_BATCH_LEN + 1);
    assert_eq!(received, sent, "every published message must be consumed");
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_nsq_over_tls_with_auth() {
    const COUNT: usize = 200;
    let pki = tls_support::Pki::new();
    let grants = serde_json::json!([
        {"topic": ".*", "channels": [".*"], "permissions": ["subscribe", "publish"]}
    ]);
    let auth =
        auth_support::AuthServer::start(Box::new(move |_, _| auth_support::grant(3600, &grants)));
    let mut args = pki.server_flags();
    args.extend(["--tls-required=true".to_owned(), auth.flag()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start(&args);
    let addr = broker.tcp_addr().to_string();
    // tokio-nsq's TLS does not verify the server by default; the broker requires TLS, so a
    // plain connection could not publish.
    let shared = NSQConfigShared::new()
        .set_tls(NSQConfigSharedTLS::new("localhost"))
        .set_credentials(b"tokio-secret".to_vec());
    let topic = NSQTopic::new("tokio_nsq_tls").expect("valid topic");
    let mut consumer = NSQConsumerConfig::new(topic.clone(), NSQChannel::new("c").unwrap())
        .set_max_in_flight(100)
        .set_shared(shared.clone())
        .set_sources(NSQConsumerConfigSources::Daemons(vec![addr.clone()]))
        .build();
    let run = async {
        let mut producer = NSQProducerConfig::new(addr).set_shared(shared).build();
        wait_healthy(&mut producer).await;
        for i in 0..COUNT {
            producer
                .publish(&topic, format!("tls-{i}").into_bytes())
                .await
                .expect("queue PUB");
        }
        wait_acks(&mut producer, COUNT).await;
        let mut received = HashSet::new();
        while received.len() < COUNT {
            match consumer.consume().await {
                Some(NSQEvent::Message(m)) => {
                    received.insert(m.body.clone());
                    m.finish().await;
                }
                Some(_) => {}
                None => panic!("tokio-nsq consumer stream ended"),
            }
        }
        received.len()
    };
    let received = tokio::time::timeout(OVERALL_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("tokio-nsq over TLS did not finish\n{}", broker.logs()));
    assert_eq!(received, COUNT);
    let queries = auth.queries();
    assert!(queries.len() >= 2, "{queries:?}");
    assert!(queries
        .iter()
        .all(|q| q["tls"] == "true" && q["secret"] == "tokio-secret"));
}
