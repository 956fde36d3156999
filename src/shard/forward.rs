//! Publishing to a topic another shard owns, owner side: one answer per batch (the connection
//! side, which builds the batches and waits for the answers, is `connection::forward`).
//!
//! [`accept`]: a batch is published item by item, in order, as the inbox runs it
//! (so one connection's publishes to a topic are stored in the order it sent them); an item
//! refused at once (`--max-topic-bytes`) ends the batch, as a refused publish ends nsqd's
//! connection (publishes the connection sent to other shards meanwhile may have been stored,
//! like a publish whose `OK` was lost: NSQ is at-least-once). An item
//! whose topic does not exist yet waits, with every later item for that topic, while one task
//! creates it ([`Creating`]); the others go on. The answer is sent once every item's ack policy
//! is met: at once for `Ack::Now`, after the owner's log has written (`--mem-queue-size 0`) or
//! fsynced (`--ack-after-sync`) the records otherwise — the same rule, on the same log, as a
//! local publish.

use super::{Link, Shard};
use crate::broker::topic::{Ack, AckWait, Topic};
use crate::connection::forward::{Failure, Item, Outcome};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::sync::oneshot;

/// Publishes one item on `shard` and waits for its outcome (HTTP `/pub`, `/mpub`).
pub async fn publish(link: &Link, shard: usize, item: Item) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let bytes = item.bytes();
    let sent = link
        .send_bytes(shard, bytes, move |shard| accept(shard, vec![item], tx))
        .await;
    if sent.is_err() {
        return Err(Failure::Exiting);
    }
    rx.await
        .ok()
        .and_then(|mut outcomes| outcomes.pop())
        .unwrap_or(Err(Failure::Exiting))
}

/// Where one item stands on its owner.
#[derive(Debug)]
enum Step {
    Done(Outcome),
    /// Stored; the ack waits for the log.
    Wait(AckWait),
    /// Its topic is being created: the step comes from the creating task.
    Later(oneshot::Receiver<Step>),
}

impl Step {
    fn ready(&self) -> Option<Outcome> {
        match self {
            Self::Done(outcome) => Some(outcome.clone()),
            Self::Wait(..) | Self::Later(_) => None,
        }
    }
}

/// Topics being created for forwarded publishes: the items waiting for each, in order.
#[derive(Debug, Default)]
pub struct Creating(RefCell<HashMap<String, Vec<Waiting>>>);

/// An item waiting for its topic to be created, and where its step goes.
type Waiting = (Item, oneshot::Sender<Step>);

/// Runs a batch on its owner (from the inbox, in arrival order) and answers on `reply` once
/// every item's ack policy is met. After an item is refused, the batch's later items are not
/// published: the connection closes at that error, as nsqd's stops at a failed publish. (An
/// item that waits for its topic's creation is published, or refused, after the batch's other
/// items: a refusal there, which needs a new topic too small for its first publish, cannot
/// hold back what followed it.)
pub fn accept(shard: &Rc<Shard>, items: Vec<Item>, reply: oneshot::Sender<Vec<Outcome>>) {
    let mut refused = false;
    let steps: Vec<Step> = items
        .into_iter()
        .map(|item| {
            if refused {
                return Step::Done(Err(Failure::NotRun));
            }
            let step = step(shard, item);
            refused = matches!(step, Step::Done(Err(_)));
            step
        })
        .collect();
    if let Some(outcomes) = steps.iter().map(Step::ready).collect::<Option<Vec<_>>>() {
        // The publisher may be gone (its connection closed): nothing to tell then.
        let _gone = reply.send(outcomes);
        return;
    }
    crate::broker::spawn(async move {
        let mut outcomes = Vec::with_capacity(steps.len());
        for step in steps {
            outcomes.push(resolve(step).await);
        }
        let _gone = reply.send(outcomes);
    });
}

fn step(shard: &Rc<Shard>, item: Item) -> Step {
    if let Some(waiting) = shard.creating.0.borrow_mut().get_mut(&item.topic) {
        let (tx, rx) = oneshot::channel();
        waiting.push((item, tx));
        return Step::Later(rx);
    }
    if let Some(topic) = shard.broker.get_topic(&item.topic) {
        return publish_now(&topic, &item);
    }
    let (tx, rx) = oneshot::channel();
    let name = item.topic.clone();
    shard
        .creating
        .0
        .borrow_mut()
        .insert(name.clone(), vec![(item, tx)]);
    crate::broker::spawn(create_then_publish(Rc::clone(shard), name));
    Step::Later(rx)
}

/// Creates topic `name` (nsqd creates topics on first publish), then publishes what waited.
async fn create_then_publish(shard: Rc<Shard>, name: String) {
    let created = shard.broker.topic(&name).await;
    let waiting = shard
        .creating
        .0
        .borrow_mut()
        .remove(&name)
        .unwrap_or_default();
    for (item, tx) in waiting {
        let step = match &created {
            Ok(topic) => publish_now(topic, &item),
            Err(e) => Step::Done(Err(Failure::Failed(e.to_string()))),
        };
        let _gone = tx.send(step);
    }
}

fn publish_now(topic: &Topic, item: &Item) -> Step {
    match topic.publish(&item.bodies, item.defer) {
        Ok(Ack::Now) => Step::Done(Ok(())),
        Ok(Ack::Wait(wait)) => Step::Wait(wait),
        Err(e) => Step::Done(Err(Failure::from(&e))),
    }
}

async fn resolve(mut step: Step) -> Outcome {
    loop {
        step = match step {
            Step::Done(outcome) => return outcome,
            Step::Wait(wait) => {
                return wait
                    .wait()
                    .await
                    .map_err(|e| Failure::Failed(e.to_string()));
            }
            Step::Later(rx) => rx
                .await
                .unwrap_or_else(|_| Step::Done(Err(Failure::Exiting))),
        };
    }
}

#[cfg(test)]
mod tests {
    //! The owner side against a real broker (tokio-uring, a temporary data directory): batches
    //! arrive back to back as the inbox runs them, some while their topic is still being
    //! created, some after a pause. Whatever the interleaving, each topic must hold exactly the
    //! items answered `Ok`, in the order they were sent. With `--max-topic-bytes` (topics
    //! created first: a refusal is then immediate), nothing after a refusal in its batch is
    //! stored. (An item that waits for its topic's creation and is then refused may follow
    //! later items of its batch that were stored: see `accept`.)
    use super::*;
    use crate::app::config::Config;
    use crate::app::fds::Budget;
    use crate::broker::events::Events;
    use crate::broker::message::MessageView;
    use crate::connection::admission::Admission;
    use crate::shard::runner::{self, Start};
    use crate::shard::Mesh;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::Duration;

    const TOPICS: usize = 4;

    /// A batch: (pause before it, its items as (topic, bodies)).
    type Script = Vec<(bool, Vec<(usize, usize)>)>;

    fn script() -> impl Strategy<Value = Script> {
        let item = (0..TOPICS, 1..4usize);
        let batch = (any::<bool>(), prop::collection::vec(item, 1..6));
        prop::collection::vec(batch, 1..10)
    }

    async fn shard(data: &std::path::Path, max_topic_bytes: u64) -> Rc<Shard> {
        let options = crate::options::Options {
            data_path: data.to_owned(),
            mem_queue_size: 0,
            max_topic_bytes,
            ..crate::options::Options::default()
        };
        let config = Config::new(&options, 1, Budget::for_limit(Some(1024)));
        let (mesh, _inboxes) = Mesh::new(1);
        let start = Start {
            index: 0,
            broker: config.broker,
            connection: config.connection,
            mesh,
            events: Events::default(),
            tls: None,
            auth: Arc::new(|| None),
            admission: Admission::new("t", 1),
            start_unix_s: 0,
        };
        runner::open(start).await.expect("open a broker")
    }

    async fn stored(shard: &Shard, topic: &str) -> Vec<Vec<u8>> {
        let Some(t) = shard.broker.get_topic(topic) else {
            return Vec::new();
        };
        let records = t
            .store()
            .read(t.store().first(), 100_000, 64 << 20)
            .await
            .expect("read the log");
        records
            .iter()
            .map(|r| {
                MessageView::parse(&r.data)
                    .expect("a message")
                    .body
                    .to_vec()
            })
            .collect()
    }

    async fn run(data: std::path::PathBuf, script: Script, full: bool) -> Result<(), String> {
        let shard = shard(&data, if full { 1500 } else { 0 }).await;
        if full {
            for t in 0..TOPICS {
                shard
                    .broker
                    .topic(&format!("t{t}"))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut sent = Vec::new();
        let mut answers = Vec::new();
        for (b, (pause, items)) in script.into_iter().enumerate() {
            if pause {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut batch = Vec::new();
            for (i, (topic, n)) in items.into_iter().enumerate() {
                let bodies: Vec<Bytes> = (0..n)
                    .map(|k| Bytes::from(format!("{b}/{i}/{k}/{}", "x".repeat(100))))
                    .collect();
                let topic = format!("t{topic}");
                sent.push((b, topic.clone(), bodies.clone()));
                batch.push((topic, bodies));
            }
            let (tx, rx) = oneshot::channel();
            let items = batch
                .into_iter()
                .map(|(topic, bodies)| Item {
                    topic,
                    bodies,
                    defer: None,
                })
                .collect();
            accept(&shard, items, tx);
            answers.push(rx);
        }
        let mut outcomes = Vec::new();
        for rx in answers {
            outcomes.push(rx.await.map_err(|_| "no answer".to_owned())?);
        }
        check(&shard, &sent, &outcomes).await
    }

    /// `sent`: (batch, topic, bodies) in the order sent.
    async fn check(
        shard: &Shard,
        sent: &[(usize, String, Vec<Bytes>)],
        outcomes: &[Vec<Outcome>],
    ) -> Result<(), String> {
        let mut want: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut index = vec![0usize; outcomes.len()];
        let mut refused_in = vec![false; outcomes.len()];
        for (b, topic, bodies) in sent {
            let outcome = outcomes[*b].get(index[*b]).ok_or("an answer per item")?;
            index[*b] += 1;
            match outcome {
                Ok(()) if refused_in[*b] => return Err(format!("batch {b}: ok after a refusal")),
                Ok(()) => want
                    .entry(topic.clone())
                    .or_default()
                    .extend(bodies.iter().map(|x| x.to_vec())),
                Err(_) => refused_in[*b] = true,
            }
        }
        for (b, answer) in outcomes.iter().enumerate() {
            if answer.len() != index[b] {
                return Err(format!(
                    "batch {b}: {} answers for {} items",
                    answer.len(),
                    index[b]
                ));
            }
        }
        for t in 0..TOPICS {
            let topic = format!("t{t}");
            let got = stored(shard, &topic).await;
            let expected = want.remove(&topic).unwrap_or_default();
            if got != expected {
                return Err(format!(
                    "{topic}: stored {} messages, answered ok {}",
                    got.len(),
                    expected.len()
                ));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn each_topic_holds_what_was_answered_ok_in_the_order_sent(script in script(), full in any::<bool>()) {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let data = dir.path().to_owned();
            let result = crate::shard::runner::run_first(run(data, script, full));
            prop_assert!(result.is_ok(), "{:?}", result);
        }
    }
}
