//! What the control plane (shard 0) gathers from every shard: the `/stats` picture (also
//! `/metrics` and statsd), health (`/ping`), `nsqd.dat`'s topics and channels, and what to
//! `REGISTER` with nsqlookupd. Each shard answers from its own state on its own thread; the
//! answers are merged here in nsqd's order (topics sorted by name, producers by client id).

use super::stats::{self, ClientStats, Filter, Stats, TopicStats};
use crate::broker::metadata::MetaTopic;
use crate::shard::{owner, Gone, Link};

/// nsqd's `GetStats` over every shard. A `topic=` filter asks only its owner.
pub async fn stats(link: &Link, filter: &Filter) -> Stats {
    let topics = if filter.topic.is_empty() {
        let f = filter.clone();
        let parts = link
            .call_all(move |s| async move { stats::topics_local(&s, &f) })
            .await;
        let mut all: Vec<TopicStats> = parts
            .into_iter()
            .filter_map(Result::ok)
            .flatten()
            .flatten()
            .collect();
        all.sort_by(|a, b| a.topic_name.cmp(&b.topic_name));
        all
    } else {
        let f = filter.clone();
        let shard = owner(&filter.topic, link.place.count);
        match link
            .call(shard, move |s| async move { stats::topics_local(&s, &f) })
            .await
        {
            Ok(Some(topics)) => topics,
            Ok(None) | Err(Gone) => {
                return Stats {
                    topics: None,
                    producers: None,
                }
            }
        }
    };
    let producers = if filter.include_clients {
        let topic = filter.topic.clone();
        let parts = link
            .call_all(move |s| async move { stats::producers_local(&s, &topic) })
            .await;
        let mut all: Vec<(u64, ClientStats)> =
            parts.into_iter().filter_map(Result::ok).flatten().collect();
        all.sort_by_key(|(id, _)| *id);
        let all: Vec<ClientStats> = all.into_iter().map(|(_, c)| c).collect();
        (!all.is_empty()).then_some(all)
    } else {
        None
    };
    Stats {
        topics: Some(topics),
        producers,
    }
}

/// The broker's health over every shard: the first shard's error, if any (a shard that has
/// stopped answers nothing).
pub async fn health(link: &Link) -> Result<(), String> {
    let answers = link.call_all(|s| async move { s.broker.health() }).await;
    answers.into_iter().filter_map(Result::ok).collect()
}

/// Every shard's topics and channels as `nsqd.dat` holds them, sorted by name; `Err` if a shard
/// did not answer (a partial picture must never be written).
pub async fn metadata(link: &Link) -> Result<Vec<MetaTopic>, Gone> {
    let parts = link
        .call_all(|s| async move { s.broker.meta_topics() })
        .await;
    let mut all = Vec::new();
    for part in parts {
        all.extend(part?);
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// Every topic (sorted by name) with its channels, for nsqlookupd's `REGISTER`.
pub async fn registrations(link: &Link) -> Vec<(String, Vec<String>)> {
    let parts = link
        .call_all(|s| async move {
            s.broker
                .topics()
                .iter()
                .map(|t| {
                    let channels = t.channels().iter().map(|c| c.name.clone()).collect();
                    (t.name.clone(), channels)
                })
                .collect::<Vec<_>>()
        })
        .await;
    let mut all: Vec<(String, Vec<String>)> =
        parts.into_iter().filter_map(Result::ok).flatten().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}
